package usage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
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
	// EventsURL is the event store's base URL (VictoriaLogs), where the
	// read path records each query it answers; empty: no read meters.
	EventsURL string
	// Client makes the store's requests, EventsClient the event store's
	// (default http.DefaultClient).
	Client, EventsClient *http.Client
	// Concurrency is the number of queries in flight at once (default 2):
	// usage is hourly work and must not crowd the store.
	Concurrency int
}

// ReadEventsStream is the event-store stream the read path writes its query
// records to; ReadEventsStreamFields is the ingest parameter that makes it one.
const (
	ReadEventsStream       = `{source="tenant_query"}`
	ReadEventsStreamFields = "source"
	ReadEventsSource       = "tenant_query"
)

// Compute is every tenant's usage in the hour starting at hour: revision 0
// records, ordered (Sort). A tenant appears when any of its meters is
// non-zero, with all of its meters. The answer depends only on the stores'
// content, so computing an hour twice gives the same records.
func (s *Source) Compute(ctx context.Context, hour time.Time) ([]Record, error) {
	hour = hour.UTC()
	if !hour.Truncate(time.Hour).Equal(hour) {
		return nil, fmt.Errorf("usage: %s is not on the hour", hour)
	}
	if s.TenantLabel == "" {
		return nil, errors.New("usage: the store's tenant label is not set")
	}
	values := map[string]map[Meter]float64{}
	var mu sync.Mutex
	set := func(tenant string, m Meter, v float64) {
		mu.Lock()
		defer mu.Unlock()
		if values[tenant] == nil {
			values[tenant] = map[Meter]float64{}
		}
		values[tenant][m] = v
	}

	tenants, err := s.storeTenants(ctx, hour)
	if err != nil {
		return nil, err
	}
	if s.EventsURL != "" {
		reads, err := s.readMeters(ctx, hour)
		if err != nil {
			return nil, err
		}
		for tenant, r := range reads {
			set(tenant, ReadQueries, r[0])
			set(tenant, ReadSeries, r[1])
		}
	}

	conc := s.Concurrency
	if conc <= 0 {
		conc = 2
	}
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for _, tenant := range tenants {
		for _, job := range s.storeJobs(tenant, hour) {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				v, err := job.run(ctx)
				if err != nil {
					errOnce.Do(func() {
						firstErr = fmt.Errorf("usage: %s of tenant %s, hour %s: %w", job.meter, tenant, hour.Format(HourLayout), err)
					})
					return
				}
				for m, x := range v {
					set(tenant, m, x)
				}
			}()
			if ctx.Err() != nil {
				break
			}
		}
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	var recs []Record
	meters := StoreMeters
	if s.EventsURL != "" {
		meters = AllMeters
	}
	for tenant, v := range values {
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
			recs = append(recs, Record{
				ID: RecordID(tenant, m, hour, 0), Tenant: tenant, Meter: m, Hour: hour,
				Value: v[m], Total: v[m],
			})
		}
	}
	Sort(recs)
	return recs, nil
}

// storeJob is one query for one tenant, giving one or more meters.
type storeJob struct {
	meter Meter
	run   func(ctx context.Context) (map[Meter]float64, error)
}

// The hour [H, H+1h) as the store's rollup windows see it: a window [d] at
// time t covers (t-d, t], and timestamps are milliseconds, so evaluating
// [1h] at H+1h-1ms covers exactly [H, H+1h).
func hourEnd(hour time.Time) time.Time { return hour.Add(time.Hour - time.Millisecond) }

func (s *Source) storeJobs(tenant string, hour time.Time) []storeJob {
	sel := fmt.Sprintf(`{%s=%s,__name__!~%s}`, s.TenantLabel, strconv.Quote(tenant), strconv.Quote(regexpQuote(MetricPrefix)+".*"))
	gpuSel := fmt.Sprintf(`{%s=%s,__name__="hw.status",hw.parent=""}`, s.TenantLabel, strconv.Quote(tenant))
	end := hourEnd(hour)
	return []storeJob{
		{DataPoints, func(ctx context.Context) (map[Meter]float64, error) {
			v, err := s.instant(ctx, "sum(count_over_time("+sel+"[1h]))", end)
			if err != nil {
				return nil, err
			}
			return map[Meter]float64{DataPoints: sum(v)}, nil
		}},
		// One query gives both: a row per host with its number of series.
		{ActiveSeries, func(ctx context.Context) (map[Meter]float64, error) {
			rows, err := s.instantRows(ctx, "count(count_over_time("+sel+"[1h])) by (host.name, host.id)", end)
			if err != nil {
				return nil, err
			}
			var series, vms float64
			for _, r := range rows {
				series += r.value
				if r.labels["host.name"] != "" || r.labels["host.id"] != "" {
					vms++
				}
			}
			return map[Meter]float64{ActiveSeries: series, VMs: vms}, nil
		}},
		// GPU-minutes: at the end of each minute of the hour, the number of
		// GPUs with an hw.status sample in that minute.
		{GPUHours, func(ctx context.Context) (map[Meter]float64, error) {
			v, err := s.rangeQuery(ctx, "count(count(count_over_time("+gpuSel+"[1m])) by (hw.id))", hour.Add(time.Minute-time.Millisecond), end, time.Minute)
			if err != nil {
				return nil, err
			}
			return map[Meter]float64{GPUHours: float64(v) / 60}, nil
		}},
	}
}

func sum(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s
}

func regexpQuote(s string) string {
	return strings.NewReplacer(".", `\.`).Replace(s)
}

// storeTenants lists the tenants with series in the hour (the store's
// index answers by day, so this may list tenants that sent nothing in the
// hour: they get no records).
func (s *Source) storeTenants(ctx context.Context, hour time.Time) ([]string, error) {
	q := url.Values{
		"start": {formatTime(hour)},
		"end":   {formatTime(hourEnd(hour))},
	}
	var body struct {
		Status string   `json:"status"`
		Data   []string `json:"data"`
	}
	if err := s.getJSON(ctx, s.StoreURL+"/api/v1/label/"+url.PathEscape(s.TenantLabel)+"/values", q, &body); err != nil {
		return nil, fmt.Errorf("usage: listing tenants: %w", err)
	}
	var out []string
	for _, t := range body.Data {
		if tenantid.Validate(t) == nil {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out, nil
}

type row struct {
	labels map[string]string
	value  float64
}

func (s *Source) instant(ctx context.Context, query string, at time.Time) ([]float64, error) {
	rows, err := s.instantRows(ctx, query, at)
	if err != nil {
		return nil, err
	}
	v := make([]float64, len(rows))
	for i, r := range rows {
		v[i] = r.value
	}
	return v, nil
}

func (s *Source) instantRows(ctx context.Context, query string, at time.Time) ([]row, error) {
	q := url.Values{"query": {query}, "time": {formatTime(at)}, "nocache": {"1"}}
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := s.postJSON(ctx, s.StoreURL+"/api/v1/query", q, &body); err != nil {
		return nil, err
	}
	out := make([]row, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		v, err := parseValue(r.Value[1])
		if err != nil {
			return nil, fmt.Errorf("query %q: %w", query, err)
		}
		out = append(out, row{labels: r.Metric, value: v})
	}
	return out, nil
}

// rangeQuery sums, over every step and every series, the query's values.
func (s *Source) rangeQuery(ctx context.Context, query string, start, end time.Time, step time.Duration) (int64, error) {
	q := url.Values{
		"query": {query}, "start": {formatTime(start)}, "end": {formatTime(end)},
		"step": {strconv.FormatInt(int64(step/time.Second), 10)}, "nocache": {"1"},
	}
	var body struct {
		Data struct {
			Result []struct {
				Values [][2]any `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := s.postJSON(ctx, s.StoreURL+"/api/v1/query_range", q, &body); err != nil {
		return 0, err
	}
	var n int64
	for _, r := range body.Data.Result {
		for _, p := range r.Values {
			v, err := parseValue(p[1])
			if err != nil {
				return 0, fmt.Errorf("query %q: %w", query, err)
			}
			n += int64(v)
		}
	}
	return n, nil
}

// readMeters is, per tenant, [queries answered, series returned] in the
// hour. A record the read path sent twice (a retry whose first attempt had
// landed) is counted once: each carries a unique query_id.
func (s *Source) readMeters(ctx context.Context, hour time.Time) (map[string][2]float64, error) {
	query := fmt.Sprintf(`_time:[%s, %s) _stream:%s | uniq by (tenant_id, query_id, series) | stats by (tenant_id) count() queries, sum(series) series`,
		hour.Format(time.RFC3339), hour.Add(time.Hour).Format(time.RFC3339), ReadEventsStream)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.EventsURL+"/select/logsql/query",
		strings.NewReader(url.Values{"query": {query}}.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	ec := s.EventsClient
	if ec == nil {
		ec = s.client()
	}
	resp, err := ec.Do(req)
	if err != nil {
		return nil, fmt.Errorf("usage: read meters: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return nil, fmt.Errorf("usage: read meters: the event store answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	out := map[string][2]float64{}
	dec := json.NewDecoder(resp.Body)
	for {
		var line struct {
			Tenant  string `json:"tenant_id"`
			Queries string `json:"queries"`
			Series  string `json:"series"`
		}
		if err := dec.Decode(&line); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("usage: read meters: %w", err)
		}
		if tenantid.Validate(line.Tenant) != nil {
			continue
		}
		q, err1 := strconv.ParseFloat(line.Queries, 64)
		n, err2 := strconv.ParseFloat(line.Series, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("usage: read meters of %s: %w", line.Tenant, err)
		}
		out[line.Tenant] = [2]float64{q, n}
	}
	return out, nil
}

func (s *Source) client() *http.Client {
	if s.Client != nil {
		return s.Client
	}
	return http.DefaultClient
}

func (s *Source) getJSON(ctx context.Context, u string, q url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"?"+q.Encode(), http.NoBody)
	if err != nil {
		return err
	}
	return s.do(req, out)
}

func (s *Source) postJSON(ctx context.Context, u string, q url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(q.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return s.do(req, out)
}

func (s *Source) do(req *http.Request, out any) error {
	resp, err := s.client().Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return fmt.Errorf("the store answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

func parseValue(v any) (float64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("value %v is not a string", v)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("value %q is not a number", s)
	}
	return f, nil
}
