package usage

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
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
// (set == nil) or for the tenants in set.
type job struct {
	name string
	run  func(ctx context.Context, hour time.Time, set []string) (map[string]meterValues, error)
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
	hour = hour.UTC()
	tenants, err := s.storeTenants(ctx, hour)
	if err != nil {
		return nil, err
	}
	p, err := s.runJobs(ctx, hour, tenants, s.jobs(), nil, false)
	if err != nil {
		return nil, err
	}
	return s.records(hour, p), nil
}

// ComputeTenants is Compute for the named tenants only, one query per
// tenant and meter: what a deferred tenant is computed with again.
func (s *Source) ComputeTenants(ctx context.Context, hour time.Time, tenants []string) (*Hour, error) {
	if err := s.check(hour); err != nil {
		return nil, err
	}
	hour = hour.UTC()
	p, err := s.runJobs(ctx, hour, tenants, s.jobs(), nil, true)
	if err != nil {
		return nil, err
	}
	return s.records(hour, p), nil
}

// Recheck is Compute for an hour already billed (billed: each tenant's
// totals so far), computing again in full only where late data arrived:
// the data points of every tenant and the read meters are asked first
// (a sample more or less changes the data points: any other store meter
// can change only with them), then the other store meters for the
// tenants whose data points changed, in one query per meter for all of
// them. The others keep their billed store meters.
func (s *Source) Recheck(ctx context.Context, hour time.Time, billed map[string]map[Meter]int64) (*Hour, error) {
	if err := s.check(hour); err != nil {
		return nil, err
	}
	hour = hour.UTC()
	tenants, err := s.storeTenants(ctx, hour)
	if err != nil {
		return nil, err
	}
	for t := range billed {
		if !slices.Contains(tenants, t) {
			tenants = append(tenants, t)
		}
	}
	sort.Strings(tenants)
	var first, rest []job
	for _, j := range s.jobs() {
		if j.name == "data_points" || j.name == "read" {
			first = append(first, j)
		} else {
			rest = append(rest, j)
		}
	}
	p, err := s.runJobs(ctx, hour, tenants, first, nil, false)
	if err != nil {
		return nil, err
	}
	var changed []string
	for _, t := range tenants {
		if p.deferred[t] == nil && p.values[t][DataPoints] != billed[t][DataPoints] {
			changed = append(changed, t)
		}
	}
	for t, v := range p.values {
		if p.deferred[t] != nil || slices.Contains(changed, t) {
			continue
		}
		for _, m := range StoreMeters {
			if m != DataPoints && billed[t][m] != 0 {
				v[m] = billed[t][m]
			}
		}
	}
	if len(changed) > 0 {
		q, err := s.runJobs(ctx, hour, changed, rest, changed, false)
		if err != nil {
			return nil, err
		}
		for t, err := range q.deferred {
			p.deferred[t] = err
		}
		for t, v := range q.values {
			if p.values[t] == nil {
				p.values[t] = meterValues{}
			}
			for m, x := range v {
				p.values[t][m] = x
			}
		}
	}
	return s.records(hour, p), nil
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

// pass is what a run of queries found: each tenant's meters, and the
// tenants whose own queries failed.
type pass struct {
	values   map[string]meterValues
	deferred map[string]error
}

// runJobs runs jobs for the tenants, each job starting with one query for
// start (nil: every tenant at once), or with perTenant one query for each.
func (s *Source) runJobs(ctx context.Context, hour time.Time, tenants []string, jobs []job, start []string, perTenant bool) (*pass, error) {
	known := make(map[string]bool, len(tenants))
	for _, t := range tenants {
		known[t] = true
	}
	values := map[string]meterValues{}
	deferred := map[string]error{}
	var mu sync.Mutex
	// merge takes a query's answer; set (nil: every tenant) is whom it
	// asked about.
	merge := func(got map[string]meterValues, set []string) {
		only := map[string]bool{}
		for _, t := range set {
			only[t] = true
		}
		mu.Lock()
		defer mu.Unlock()
		for t, mv := range got {
			if (set != nil && !only[t]) || tenantid.Validate(t) != nil {
				continue
			}
			if !known[t] {
				// A tenant seen only by one meter's query (reads by a
				// tenant that stored nothing in the hour): billed too.
				if set != nil {
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
	var groupedErrs []error
	fail := func(set []string, j job, err error) {
		mu.Lock()
		defer mu.Unlock()
		if set == nil || len(set) > 1 {
			groupedErrs = append(groupedErrs, fmt.Errorf("%s: %w", j.name, err))
			return
		}
		if deferred[set[0]] == nil {
			deferred[set[0]] = fmt.Errorf("usage: %s of tenant %s, hour %s: %w", j.name, set[0], hour.Format(HourLayout), err)
		}
	}

	conc := s.Concurrency
	if conc <= 0 {
		conc = 2
	}
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	// run asks one meter's query for a set of tenants (nil: all of them
	// at once). A store limit that some tenants' data exceeds fails the
	// query for all it covers: the set is halved and each half asked
	// again, down to single tenants, so the cost of one tenant beyond the
	// store's limits is a few queries, and only that tenant is deferred.
	var run func(j job, set []string)
	run = func(j job, set []string) {
		defer wg.Done()
		sem <- struct{}{}
		got, err := j.run(ctx, hour, set)
		<-sem
		if err == nil {
			merge(got, set)
			return
		}
		if ctx.Err() != nil {
			return
		}
		fail(set, j, err)
		switch {
		case set != nil && len(set) <= 1, set == nil && len(tenants) == 0:
			return
		case set == nil && len(tenants) == 1:
			// All at once failed, and there is one tenant: ask for it.
			wg.Add(1)
			go run(j, tenants)
			return
		case set == nil:
			set = tenants
		}
		half := len(set) / 2
		wg.Add(2)
		go run(j, set[:half:half])
		go run(j, set[half:])
	}
	for _, j := range jobs {
		if perTenant {
			for _, t := range tenants {
				wg.Add(1)
				go run(j, []string{t})
			}
			continue
		}
		wg.Add(1)
		go run(j, start)
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if start == nil && len(tenants) > 0 && len(deferred) == len(tenants) && len(groupedErrs) > 0 {
		// Nobody could be computed: the store, not a tenant. (A run over
		// a chosen set, a recheck's changed tenants, defers them instead.)
		return nil, fmt.Errorf("usage: hour %s: %w", hour.Format(HourLayout), errors.Join(groupedErrs...))
	}
	return &pass{values: values, deferred: deferred}, nil
}

// records are the revision-0 records of a pass: a tenant appears when any
// of its meters is not zero, with all of its meters.
func (s *Source) records(hour time.Time, p *pass) *Hour {
	values, deferred := p.values, p.deferred
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
	return out
}

// The hour [H, H+1h) as the store's rollup windows see it: a window [d] at
// time t covers (t-d, t], and timestamps are milliseconds, so evaluating
// [1h] at H+1h-1ms covers exactly [H, H+1h).
func hourEnd(hour time.Time) time.Time { return hour.Add(time.Hour - time.Millisecond) }

// selector is the series a meter counts: every series of the tenants in
// set (nil: of every tenant) but the usage job's own.
func (s *Source) selector(set []string, extra string) string {
	t := s.TenantLabel + `!=""`
	switch {
	case len(set) == 1:
		t = s.TenantLabel + "=" + strconv.Quote(set[0])
	case set != nil:
		// The tenant grammar has no regexp metacharacter.
		t = s.TenantLabel + "=~" + strconv.Quote(strings.Join(set, "|"))
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
func (s *Source) dataPoints(ctx context.Context, hour time.Time, set []string) (map[string]meterValues, error) {
	q := fmt.Sprintf("sum(count_over_time(%s[1h])) by (%s)", s.selector(set, ""), s.TenantLabel)
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
func (s *Source) seriesAndVMs(ctx context.Context, hour time.Time, set []string) (map[string]meterValues, error) {
	q := fmt.Sprintf("count(count_over_time(%s[1h])) by (%s, %s)", s.selector(set, ""), s.TenantLabel, s.vmLabel())
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

// gpuMinutes: per VM, the GPUs the gateway stamped on each minute in which
// it received the VM's data (VMMinutesMetric: the provisioned GPUs, never
// the payload's word, on the gateway's clock, never the data's), summed
// over the hour. A VM the gateway did not receive data from in the hour
// has none, whatever its data's timestamps say. For a VM whose credential
// says nothing of its GPUs (its points say gpus_from=agent), the GPUs it
// reported in each minute of the hour instead (hw.status series without
// hw.parent, one per GPU, by their timestamps): customer-reported. That is
// an instant query with a subquery over the hour's 60 minutes: the store
// places a subquery's points on multiples of its step (H, H+1m, ...,
// H+59m), and the inner window shifted by a minute less a millisecond,
// (t-1ms, t+1m-1ms], is the minute [t, t+1m) exactly.
func (s *Source) gpuMinutes(ctx context.Context, hour time.Time, set []string) (map[string]meterValues, error) {
	by := s.TenantLabel + ", " + s.vmLabel()
	seen, err := s.instantRows(ctx, fmt.Sprintf("sum(sum_over_time(%s[1h])) by (%s, %s)",
		s.selector(set, `__name__=`+strconv.Quote(VMMinutesMetric)), by, GPUsFromAttribute), hourEnd(hour))
	if err != nil {
		return nil, err
	}
	type key struct{ tenant, vm string }
	out := map[string]meterValues{}
	add := func(k key, v int64) {
		if out[k.tenant] == nil {
			out[k.tenant] = meterValues{}
		}
		out[k.tenant][GPUMinutes] += v
	}
	provisioned, agent := map[key]bool{}, map[key]bool{}
	for _, r := range seen {
		k := key{r.labels[s.TenantLabel], r.labels[s.vmLabel()]}
		if r.labels[GPUsFromAttribute] == GPUsFromProvisioning {
			provisioned[k] = true
			add(k, int64(r.value))
		} else {
			agent[k] = true
		}
	}
	if len(agent) == 0 {
		return out, nil
	}
	reported, err := s.instantRows(ctx, fmt.Sprintf("sum_over_time((count(count(count_over_time(%s[1m] offset -59999ms)) by (%s, hw.id)) by (%s))[1h:1m])",
		s.selector(set, `__name__="hw.status",hw.parent=""`), by, by), hourEnd(hour))
	if err != nil {
		return nil, err
	}
	for _, r := range reported {
		if k := (key{r.labels[s.TenantLabel], r.labels[s.vmLabel()]}); agent[k] && !provisioned[k] {
			add(k, int64(r.value))
		}
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
