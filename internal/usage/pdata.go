package usage

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// Attributes of a record's data point besides its value (the hour's total).
const (
	AttrRecordID = "usage.record_id"
	AttrRevision = "usage.revision"
	// AttrAmount is this record's amount: the hour's value for revision 0,
	// the change since the previous revision for an adjustment.
	AttrAmount = "usage.amount"
	// AttrTenant is the resource attribute naming the record's tenant (what
	// tenant_otlp_http's route_by: attribute reads).
	AttrTenant = "tenant.id"
)

// Metrics turns records into the data points the tenant_usage receiver
// emits: one resource per tenant (its tenant.id), one metric per meter (a
// delta sum over the hour, valued at the hour's total), one data point per
// record, carrying its id, revision and amount.
func Metrics(recs []Record, scope string) pmetric.Metrics {
	recs = slices.Clone(recs)
	Sort(recs)
	byTenant := map[string][]Record{}
	var order []string
	for _, rec := range recs {
		if _, ok := byTenant[rec.Tenant]; !ok {
			order = append(order, rec.Tenant)
		}
		byTenant[rec.Tenant] = append(byTenant[rec.Tenant], rec)
	}
	sort.Strings(order)
	md := pmetric.NewMetrics()
	for _, tenant := range order {
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr(AttrTenant, tenant)
		sm := rm.ScopeMetrics().AppendEmpty()
		sm.Scope().SetName(scope)
		metrics := map[Meter]pmetric.NumberDataPointSlice{}
		for _, rec := range byTenant[tenant] {
			dps, ok := metrics[rec.Meter]
			if !ok {
				m := sm.Metrics().AppendEmpty()
				m.SetName(rec.Meter.MetricName())
				m.SetUnit(rec.Meter.Unit())
				m.SetDescription(rec.Meter.Description())
				// The hour's amount: a delta sum over [hour, hour+1h).
				s := m.SetEmptySum()
				s.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
				dps = s.DataPoints()
				metrics[rec.Meter] = dps
			}
			dp := dps.AppendEmpty()
			dp.SetStartTimestamp(pcommon.NewTimestampFromTime(rec.Hour))
			dp.SetTimestamp(pcommon.NewTimestampFromTime(rec.Hour.Add(time.Hour)))
			dp.SetIntValue(rec.Total)
			dp.Attributes().PutStr(AttrRecordID, rec.ID)
			dp.Attributes().PutInt(AttrRevision, int64(rec.Revision))
			dp.Attributes().PutInt(AttrAmount, rec.Value)
		}
	}
	return md
}

// Records reads records back from data points Metrics made (what the
// usage_cloudevents exporter sends). A point that is not a usage record is
// an error naming it.
func Records(md pmetric.Metrics) ([]Record, error) {
	var out []Record
	var errs []error
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		rm := rms.At(i)
		tv, ok := rm.Resource().Attributes().Get(AttrTenant)
		if !ok || tv.Str() == "" {
			errs = append(errs, fmt.Errorf("resource %d has no %s", i, AttrTenant))
			continue
		}
		tenant := tv.Str()
		sms := rm.ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				m := ms.At(k)
				meter, err := ParseMeter(trimPrefix(m.Name(), MetricPrefix))
				if err != nil || m.Type() != pmetric.MetricTypeSum {
					errs = append(errs, fmt.Errorf("metric %q of tenant %s is not a usage record", m.Name(), tenant))
					continue
				}
				dps := m.Sum().DataPoints()
				for p := 0; p < dps.Len(); p++ {
					dp := dps.At(p)
					if dp.ValueType() != pmetric.NumberDataPointValueTypeInt {
						errs = append(errs, fmt.Errorf("a %s point of tenant %s is not an integer", m.Name(), tenant))
						continue
					}
					id, ok1 := dp.Attributes().Get(AttrRecordID)
					rev, ok2 := dp.Attributes().Get(AttrRevision)
					amount, ok3 := dp.Attributes().Get(AttrAmount)
					if !ok1 || !ok2 || !ok3 {
						errs = append(errs, fmt.Errorf("a %s point of tenant %s lacks %s, %s or %s", m.Name(), tenant, AttrRecordID, AttrRevision, AttrAmount))
						continue
					}
					out = append(out, Record{
						ID: id.Str(), Tenant: tenant, Meter: meter, Hour: dp.StartTimestamp().AsTime().UTC(),
						Revision: int(rev.Int()), Value: amount.Int(), Total: dp.IntValue(),
					})
				}
			}
		}
	}
	return out, errors.Join(errs...)
}

func trimPrefix(s, p string) string {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return ""
}
