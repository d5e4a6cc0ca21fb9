// Package usage computes the billable usage of each tenant, per hour, from
// the store after deduplication (the source of truth for what was stored)
// and from the read path's query records in the event store: the meters of
// ../../docs/billing.md, "Meters". The tenant_usage receiver runs it on
// a schedule and cmd/usage prints it as CSV; both get the same records, with
// the same ids, from the same data.
package usage

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Meter is one billable quantity, counted per tenant and hour.
type Meter string

// The meters, in the order records are produced and printed.
const (
	// DataPoints is the number of samples stored in the hour (one per
	// series and millisecond, after the store's deduplication).
	DataPoints Meter = "data_points"
	// ActiveSeries is the number of distinct series with at least one
	// sample in the hour.
	ActiveSeries Meter = "active_series"
	// GPUMinutes is GPU time monitored, in whole GPU-minutes: per VM, its
	// GPUs times the minutes of the hour in which the gateway received its
	// data (VMMinutesMetric: the credential's gpus, on the gateway's clock);
	// for a VM whose credential says nothing of its GPUs, the GPUs it
	// reported itself (hw.status series without hw.parent, per minute).
	GPUMinutes Meter = "gpu_minutes"
	// VMs is the number of distinct VMs delivering data in the hour, by the
	// identity the gateway stamps from the credential (host.id).
	VMs Meter = "vms"
	// ReadQueries is the number of read-path queries answered 200 in the
	// hour.
	ReadQueries Meter = "read_queries"
	// ReadSeries is the number of series those answers held.
	ReadSeries Meter = "read_series"
	// ReadSeriesFetched is the number of series the store fetched to
	// answer them (its stats: the work, not the answer's size).
	ReadSeriesFetched Meter = "read_series_fetched"
	// ReadExecMs is the store's execution time for them, in milliseconds.
	ReadExecMs Meter = "read_exec_ms"
)

// StoreMeters are computed from the metrics store; ReadMeters from the
// read path's records in the event store.
var (
	StoreMeters = []Meter{DataPoints, ActiveSeries, GPUMinutes, VMs}
	ReadMeters  = []Meter{ReadQueries, ReadSeries, ReadSeriesFetched, ReadExecMs}
	AllMeters   = append(append([]Meter(nil), StoreMeters...), ReadMeters...)
)

// MetricPrefix starts the name of every usage metric written to the store
// (usage.data_points, ...); the meters leave those series out. The gateway
// reserves it: a customer's metric under it is renamed (the tenant
// processor's reserved_prefixes), so only the usage job writes here.
const MetricPrefix = "usage."

// VMMinutesMetric is the metric the gateway adds for each VM, once per
// minute in which it received the VM's data (the tenant processor's
// vm_minutes_metric), valued at the VM's provisioned GPUs; GPU-minutes are
// billed from it. GPUsFromAttribute says where the value comes from:
// GPUsFromProvisioning (the credential's gpus) or GPUsFromAgent (the
// credential says nothing; the VM's reported GPUs are billed instead).
const (
	VMMinutesMetric      = MetricPrefix + "vm_minutes"
	GPUsFromAttribute    = "gpus_from"
	GPUsFromProvisioning = "provisioning"
	GPUsFromAgent        = "agent"
)

// MetricName is the meter's metric in the store.
func (m Meter) MetricName() string { return MetricPrefix + string(m) }

// Unit is the meter's unit (UCUM, as OpenTelemetry writes units).
func (m Meter) Unit() string {
	switch m {
	case DataPoints:
		return "{data_point}"
	case ActiveSeries, ReadSeries, ReadSeriesFetched:
		return "{series}"
	case ReadExecMs:
		return "ms"
	case GPUMinutes:
		return "min"
	case VMs:
		return "{vm}"
	case ReadQueries:
		return "{query}"
	}
	return "1"
}

// Description says what the meter counts, for the metric's description.
func (m Meter) Description() string {
	switch m {
	case DataPoints:
		return "Samples stored in the hour, after the store's deduplication."
	case ActiveSeries:
		return "Distinct series with at least one sample in the hour (a series-hour each)."
	case GPUMinutes:
		return "GPU-minutes monitored: per VM, its GPUs times the minutes of the hour in which it delivered data."
	case VMs:
		return "Distinct VMs (by their credential's identity) delivering data in the hour."
	case ReadQueries:
		return "Read-path queries answered in the hour."
	case ReadSeries:
		return "Series returned by the read path in the hour."
	case ReadSeriesFetched:
		return "Series the store fetched to answer the read path's queries in the hour."
	case ReadExecMs:
		return "The store's execution time for the read path's queries in the hour."
	}
	return ""
}

// ParseMeter is the meter of a name.
func ParseMeter(s string) (Meter, error) {
	for _, m := range AllMeters {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown meter %q (one of %s)", s, meterNames())
}

func meterNames() string {
	s := make([]string, len(AllMeters))
	for i, m := range AllMeters {
		s[i] = string(m)
	}
	return strings.Join(s, ", ")
}

// HourLayout is how an hour is written in ids, CSV and events.
const HourLayout = "2006-01-02T15Z"

// Record is one meter of one tenant for one hour, in whole units. Revision 0
// is the hour's value when the hour closed; a later revision is an
// adjustment: Value is the change since the previous revision (late data),
// Total the hour's value after it. Summing the Values of an id's hour gives
// its Total.
type Record struct {
	ID       string    `json:"id"`
	Tenant   string    `json:"tenant"`
	Meter    Meter     `json:"meter"`
	Hour     time.Time `json:"hour"` // the hour's start, UTC
	Revision int       `json:"revision"`
	Value    int64     `json:"value"`
	Total    int64     `json:"total"`
}

// RecordID is the id of a record: derived from the tenant, the meter, the
// hour and the revision. The usage job writes each record to its ledger
// before it sends it, and sends it from there, so an id carries one value
// forever; a new value for an hour is a new revision. The tenant grammar
// (internal/tenantid) has no ':' so ids cannot collide.
func RecordID(tenant string, m Meter, hour time.Time, revision int) string {
	id := tenant + ":" + string(m) + ":" + hour.UTC().Format(HourLayout)
	if revision > 0 {
		id += ":r" + strconv.Itoa(revision)
	}
	return id
}

// ParseHour reads an hour written as HourLayout, RFC 3339 or a date and
// hour ("2026-12-01T10"); it must be on the hour.
func ParseHour(s string) (time.Time, error) {
	for _, layout := range []string{HourLayout, time.RFC3339, "2006-01-02T15", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			t = t.UTC()
			if !t.Truncate(time.Hour).Equal(t) {
				return time.Time{}, fmt.Errorf("%q is not on the hour", s)
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an hour (write it as 2026-12-01T10Z)", s)
}

// FormatValue writes a meter value the same way everywhere (CSV, events).
func FormatValue(v int64) string { return strconv.FormatInt(v, 10) }

// Sort orders records by hour, tenant, meter (AllMeters order), revision.
func Sort(recs []Record) {
	order := map[Meter]int{}
	for i, m := range AllMeters {
		order[m] = i
	}
	sort.SliceStable(recs, func(i, j int) bool {
		a, b := recs[i], recs[j]
		if !a.Hour.Equal(b.Hour) {
			return a.Hour.Before(b.Hour)
		}
		if a.Tenant != b.Tenant {
			return a.Tenant < b.Tenant
		}
		if a.Meter != b.Meter {
			return order[a.Meter] < order[b.Meter]
		}
		return a.Revision < b.Revision
	})
}

// CSVHeader is the first line of a usage report.
const CSVHeader = "tenant,meter,hour,value,record_id"

// CSVLine is a record as a report line (no newline). Tenant ids and meters
// need no quoting.
func (r Record) CSVLine() string {
	return r.Tenant + "," + string(r.Meter) + "," + r.Hour.UTC().Format(HourLayout) + "," + FormatValue(r.Value) + "," + r.ID
}
