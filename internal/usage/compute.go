package usage

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
)

// Source is where the meters come from.
type Source struct {
	// StoreURL is the metrics store's base URL (VictoriaMetrics single-node:
	// http://host:8428; a cluster's select path: http://host:8481/select/0/prometheus).
	StoreURL string
	// TenantLabel is the label the gateway's exporter has the store put on
	// every series (tenant_id).
	TenantLabel string
	// VMLabel is the label of the VM identity the gateway stamps from the
	// credential on every resource (host.id; default).
	VMLabel string
	// EventsURL is the event store's base URL (VictoriaLogs), where the
	// read path records each query it answers; empty: no read meters.
	EventsURL string
	// EventsHeaders are sent with every event-store query: the event-store
	// tenant (AccountID, ProjectID) the read path writes its records to,
	// apart from the customers' own logs.
	EventsHeaders map[string]string
	// Client makes the store's requests, EventsClient the event store's
	// (default http.DefaultClient).
	Client, EventsClient *http.Client
	// Concurrency is the number of queries in flight at once (default 2):
	// usage is hourly work and must not crowd the store.
	Concurrency int
	// Provisioning returns the VMs the provider provisioned, by the
	// identity the gateway stamps: their tenant and GPUs. nil, or a VM
	// missing from it: the GPUs the VM reported itself.
	Provisioning func() map[string]VM
}

// VM is what the provider's provisioning record says of one VM.
type VM struct {
	Tenant string
	GPUs   int
}

// Hour is one hour's computation: the records of the tenants whose meters
// could be computed, and the tenants whose could not (a query the store
// refused for that tenant alone): they are computed again later, and the
// others are billed meanwhile.
type Hour struct {
	Hour     time.Time
	Records  []Record
	Deferred map[string]error
}

// ReadEventsStream is the event-store stream the read path writes its query
// records to; ReadEventsStreamFields is the ingest parameter that makes it one.
const (
	ReadEventsStream       = `{source="tenant_query"}`
	ReadEventsStreamFields = "source"
	ReadEventsSource       = "tenant_query"
)

// DefaultVMLabel is the label of the gateway-stamped VM identity.
const DefaultVMLabel = "host.id"

// meterValues is one tenant's meters.
type meterValues map[Meter]int64

// job is one query giving one or more meters, for every tenant at once
// (tenant == "") or for one tenant.
type job struct {
	name string
	run  func(ctx context.Context, hour time.Time, tenant string) (map[string]meterValues, error)
}

// Compute is every tenant's usage in the hour starting at hour: revision 0
// records, ordered (Sort). Each meter is one query for all tenants
// (grouped by the tenant label); a query that fails is asked again per
// tenant, and a tenant whose own query fails is deferred (Hour.Deferred)
// while the others are billed. The error is for what holds every tenant:
// the tenant list, or a store that answers nobody. The answer depends only
// on the stores' content, so computing an hour twice gives the same
// records.
func (s *Source) Compute(ctx context.Context, hour time.Time) (*Hour, error) {
	if err := s.check(hour); err != nil {
		return nil, err
	}
	tenants, err := s.storeTenants(ctx, hour)
	if err != nil {
		return nil, err
	}
	return s.compute(ctx, hour.UTC(), tenants, true)
}

// ComputeTenants is Compute for the named tenants only, one query per
// tenant and meter: what a deferred tenant is computed with again.
func (s *Source) ComputeTenants(ctx context.Context, hour time.Time, tenants []string) (*Hour, error) {
	if err := s.check(hour); err != nil {
		return nil, err
	}
	return s.compute(ctx, hour.UTC(), tenants, false)
}

func (s *Source) check(hour time.Time) error {
	if !hour.Truncate(time.Hour).Equal(hour) {
		return fmt.Errorf("usage: %s is not on the hour", hour)
	}
	if s.TenantLabel == "" {
		return errors.New("usage: the store's tenant label is not set")
	}
	return nil
}

func (s *Source) jobs() []job {
	jobs := []job{
		{"data_points", s.dataPoints},
		{"active_series", s.seriesAndVMs},
		{"gpu_minutes", s.gpuMinutes},
	}
	if s.EventsURL != "" {
		jobs = append(jobs, job{"read", s.readMeters})
	}
	return jobs
}

func (s *Source) compute(ctx context.Context, hour time.Time, tenants []string, grouped bool) (*Hour, error) {
	known := make(map[string]bool, len(tenants))
	for _, t := range tenants {
		known[t] = true
	}
	values := map[string]meterValues{}
	deferred := map[string]error{}
	var mu sync.Mutex
	merge := func(got map[string]meterValues, only string) {
		mu.Lock()
		defer mu.Unlock()
		for t, mv := range got {
			if (only != "" && t != only) || tenantid.Validate(t) != nil {
				continue
			}
			if !known[t] {
				// A tenant seen only by one meter's query (reads by a
				// tenant that stored nothing in the hour): billed too.
				if only != "" {
					continue
				}
				known[t] = true
			}
			if values[t] == nil {
				values[t] = meterValues{}
			}
			for m, v := range mv {
				values[t][m] += v
			}
		}
	}
	fail := func(tenant string, j job, err error) {
		mu.Lock()
		defer mu.Unlock()
		if deferred[tenant] == nil {
			deferred[tenant] = fmt.Errorf("usage: %s of tenant %s, hour %s: %w", j.name, tenant, hour.Format(HourLayout), err)
		}
	}

	conc := s.Concurrency
	if conc <= 0 {
		conc = 2
	}
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	perTenant := func(j job) {
		for _, t := range tenants {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				got, err := j.run(ctx, hour, t)
				if err != nil {
					fail(t, j, err)
					return
				}
				merge(got, t)
			}()
		}
	}
	var groupedErrs []error
	for _, j := range s.jobs() {
		if !grouped {
			perTenant(j)
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			got, err := j.run(ctx, hour, "")
			<-sem
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				mu.Lock()
				groupedErrs = append(groupedErrs, fmt.Errorf("%s: %w", j.name, err))
				mu.Unlock()
				// One tenant's data can fail a query of all (a store
				// limit): ask each tenant on its own.
				perTenant(j)
				return
			}
			merge(got, "")
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(tenants) > 0 && len(deferred) == len(tenants) && len(groupedErrs) > 0 {
		// Nobody could be computed: the store, not a tenant.
		return nil, fmt.Errorf("usage: hour %s: %w", hour.Format(HourLayout), errors.Join(groupedErrs...))
	}

	out := &Hour{Hour: hour, Deferred: deferred}
	meters := StoreMeters
	if s.EventsURL != "" {
		meters = AllMeters
	}
	for tenant, v := range values {
		if deferred[tenant] != nil {
			continue
		}
		any := false
		for _, x := range v {
			if x != 0 {
				any = true
			}
		}
		if !any {
			continue
		}
		for _, m := range meters {
			out.Records = append(out.Records, Record{
				ID: RecordID(tenant, m, hour, 0), Tenant: tenant, Meter: m, Hour: hour,
				Value: v[m], Total: v[m],
			})
		}
	}
	Sort(out.Records)
	return out, nil
}

// The hour [H, H+1h) as the store's rollup windows see it: a window [d] at
// time t covers (t-d, t], and timestamps are milliseconds, so evaluating
// [1h] at H+1h-1ms covers exactly [H, H+1h).
func hourEnd(hour time.Time) time.Time { return hour.Add(time.Hour - time.Millisecond) }

// selector is the series a meter counts: every series of the tenant (or of
// every tenant) but the usage job's own.
func (s *Source) selector(tenant string, extra string) string {
	t := s.TenantLabel + `!=""`
	if tenant != "" {
		t = s.TenantLabel + "=" + strconv.Quote(tenant)
	}
	if extra == "" {
		extra = `__name__!~` + strconv.Quote(regexpQuote(MetricPrefix)+".*")
	}
	return "{" + t + "," + extra + "}"
}

func (s *Source) vmLabel() string {
	if s.VMLabel == "" {
		return DefaultVMLabel
	}
	return s.VMLabel
}

// dataPoints: the samples each tenant stored in the hour.
func (s *Source) dataPoints(ctx context.Context, hour time.Time, tenant string) (map[string]meterValues, error) {
	q := fmt.Sprintf("sum(count_over_time(%s[1h])) by (%s)", s.selector(tenant, ""), s.TenantLabel)
	rows, err := s.instantRows(ctx, q, hourEnd(hour))
	if err != nil {
		return nil, err
	}
	out := map[string]meterValues{}
	for _, r := range rows {
		out[r.labels[s.TenantLabel]] = meterValues{DataPoints: int64(r.value)}
	}
	return out, nil
}

// seriesAndVMs: one row per tenant and VM with its number of series.
func (s *Source) seriesAndVMs(ctx context.Context, hour time.Time, tenant string) (map[string]meterValues, error) {
	q := fmt.Sprintf("count(count_over_time(%s[1h])) by (%s, %s)", s.selector(tenant, ""), s.TenantLabel, s.vmLabel())
	rows, err := s.instantRows(ctx, q, hourEnd(hour))
	if err != nil {
		return nil, err
	}
	out := map[string]meterValues{}
	for _, r := range rows {
		t := r.labels[s.TenantLabel]
		if out[t] == nil {
			out[t] = meterValues{}
		}
		out[t][ActiveSeries] += int64(r.value)
		if r.labels[s.vmLabel()] != "" {
			out[t][VMs]++
		}
	}
	return out, nil
}

// gpuMinutes: per VM, the minutes of the hour in which it delivered data
// times its provisioned GPUs; for a VM the provisioning record does not
// name for this tenant, the GPUs it reported in each minute (hw.status
// series without hw.parent, one per GPU). Each is one instant query with a
// subquery over the hour's 60 minutes: the store places a subquery's
// points on multiples of its step (H, H+1m, ..., H+59m), and the inner
// window shifted by a minute less a millisecond, (t-1ms, t+1m-1ms], is the
// minute [t, t+1m) exactly. One value per VM comes back, not 60.
func (s *Source) gpuMinutes(ctx context.Context, hour time.Time, tenant string) (map[string]meterValues, error) {
	by := s.TenantLabel + ", " + s.vmLabel()
	const minute = "[1m] offset -59999ms"
	minutes, err := s.instantRows(ctx, fmt.Sprintf("count_over_time((count(count_over_time(%s%s)) by (%s))[1h:1m])",
		s.selector(tenant, ""), minute, by), hourEnd(hour))
	if err != nil {
		return nil, err
	}
	reported, err := s.instantRows(ctx, fmt.Sprintf("sum_over_time((count(count(count_over_time(%s%s)) by (%s, hw.id)) by (%s))[1h:1m])",
		s.selector(tenant, `__name__="hw.status",hw.parent=""`), minute, by, by), hourEnd(hour))
	if err != nil {
		return nil, err
	}
	var prov map[string]VM
	if s.Provisioning != nil {
		prov = s.Provisioning()
	}
	type key struct{ tenant, vm string }
	reportedBy := map[key]int64{}
	for _, r := range reported {
		reportedBy[key{r.labels[s.TenantLabel], r.labels[s.vmLabel()]}] += int64(r.value)
	}
	out := map[string]meterValues{}
	for _, r := range minutes {
		k := key{r.labels[s.TenantLabel], r.labels[s.vmLabel()]}
		if out[k.tenant] == nil {
			out[k.tenant] = meterValues{}
		}
		if vm, ok := prov[k.vm]; ok && k.vm != "" && vm.Tenant == k.tenant {
			out[k.tenant][GPUMinutes] += int64(vm.GPUs) * int64(r.value)
			continue
		}
		out[k.tenant][GPUMinutes] += reportedBy[k]
	}
	return out, nil
}

// storeTenants lists the tenants with series in the hour (the store's
// index answers by day, so this may list tenants that sent nothing in the
// hour: they get no records).
func (s *Source) storeTenants(ctx context.Context, hour time.Time) ([]string, error) {
	body, err := s.labelValues(ctx, s.TenantLabel, hour, hourEnd(hour))
	if err != nil {
		return nil, fmt.Errorf("usage: listing tenants: %w", err)
	}
	out := body[:0]
	for _, t := range body {
		if tenantid.Validate(t) == nil {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out, nil
}

func regexpQuote(s string) string {
	out := make([]byte, 0, len(s)+4)
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(out)
}
