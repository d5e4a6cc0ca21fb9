package usage

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var h10 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func TestRecordIDsAreDerivedFromTenantMeterHour(t *testing.T) {
	assert.Equal(t, "acme:gpu_minutes:2026-12-01T10Z", RecordID("acme", GPUMinutes, h10, 0))
	assert.Equal(t, "acme:gpu_minutes:2026-12-01T10Z:r3", RecordID("acme", GPUMinutes, h10, 3))
	assert.Equal(t, RecordID("acme", GPUMinutes, h10.In(time.FixedZone("x", 3600)), 0), RecordID("acme", GPUMinutes, h10, 0), "the zone does not matter")
	assert.NotEqual(t, RecordID("acme", GPUMinutes, h10, 0), RecordID("acme", GPUMinutes, h10.Add(time.Hour), 0))
}

func TestParseHour(t *testing.T) {
	for _, s := range []string{"2026-12-01T10Z", "2026-12-01T10:00:00Z", "2026-12-01T10", "2026-12-01T11:00:00+01:00"} {
		h, err := ParseHour(s)
		require.NoError(t, err, s)
		assert.Equal(t, h10, h, s)
	}
	_, err := ParseHour("2026-12-01T10:30:00Z")
	assert.ErrorContains(t, err, "not on the hour")
	_, err = ParseHour("yesterday")
	assert.ErrorContains(t, err, "not an hour")
	_, err = ParseMeter("gpu_hours")
	assert.ErrorContains(t, err, "unknown meter \"gpu_hours\"")
}

func TestCSVAndMetricsRoundTrip(t *testing.T) {
	recs := []Record{
		{ID: RecordID("globex", VMs, h10, 0), Tenant: "globex", Meter: VMs, Hour: h10, Value: 2, Total: 2},
		{ID: RecordID("acme", GPUMinutes, h10, 0), Tenant: "acme", Meter: GPUMinutes, Hour: h10, Value: 477, Total: 477},
		{ID: RecordID("acme", DataPoints, h10, 1), Tenant: "acme", Meter: DataPoints, Hour: h10, Revision: 1, Value: 12, Total: 1012},
	}
	back, err := Records(Metrics(recs, "scope"))
	require.NoError(t, err)
	Sort(recs)
	assert.Equal(t, recs, back)
	assert.Equal(t, "acme,data_points,2026-12-01T10Z,12,acme:data_points:2026-12-01T10Z:r1", back[0].CSVLine())
	assert.Equal(t, "acme,gpu_minutes,2026-12-01T10Z,477,acme:gpu_minutes:2026-12-01T10Z", back[1].CSVLine())
}

// fakeVM answers the store's query API from per-tenant canned rows, for
// all tenants at once (tenant_id!="") or one (tenant_id="x"), and records
// the queries it was asked. failAll fails every query that covers all
// tenants; failTenant fails every query that covers that tenant.
type fakeVM struct {
	mu         sync.Mutex
	queries    []url.Values
	failAll    bool
	failTenant string
	partial    bool
}

// fleet: per tenant, per VM (host.id), series and minutes of data; per VM
// the GPUs it reports in each minute, and the GPUs the gateway stamped on
// each of its minutes from its credential (-1: the credential says nothing).
var fleet = map[string]map[string]struct{ series, minutes, reported, provisioned int }{
	"acme":   {"vm-a1": {380, 60, 8, 8}, "vm-a2": {380, 30, 8, -1}, "": {4, 60, 0, -1}},
	"globex": {"vm-g1": {100, 60, 2, 4}},
}

func (f *fakeVM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	f.mu.Lock()
	f.queries = append(f.queries, r.Form)
	f.mu.Unlock()
	q := r.Form.Get("query")
	tenants := []string{"acme", "globex"}
	for _, t := range tenants {
		if strings.Contains(q, `tenant_id="`+t+`"`) {
			tenants = []string{t}
		}
	}
	listing := r.URL.Path == "/api/v1/label/tenant_id/values"
	if !listing && ((f.failAll && len(tenants) > 1) || (f.failTenant != "" && slices.Contains(tenants, f.failTenant))) {
		http.Error(w, "cannot select more than -search.maxUniqueTimeseries", http.StatusUnprocessableEntity)
		return
	}
	partial := ""
	if f.partial {
		partial = `"isPartial":true,`
	}
	var rows []string
	switch {
	case r.URL.Path == "/api/v1/label/tenant_id/values":
		_, _ = fmt.Fprint(w, `{"status":"success",`+partial+`"data":["acme","globex","Bad Tenant!"]}`)
		return
	case strings.HasPrefix(q, "sum(count_over_time("):
		for _, t := range tenants {
			n := 0
			for _, vm := range fleet[t] {
				n += vm.series * vm.minutes * 6
			}
			rows = append(rows, fmt.Sprintf(`{"metric":{"tenant_id":%q},"value":[1,"%d"]}`, t, n))
		}
	case strings.HasPrefix(q, "count(count_over_time("):
		for _, t := range tenants {
			for id, vm := range fleet[t] {
				rows = append(rows, fmt.Sprintf(`{"metric":{"tenant_id":%q,"host.id":%q},"value":[1,"%d"]}`, t, id, vm.series))
			}
		}
	case strings.HasPrefix(q, "sum(sum_over_time("):
		// The gateway saw every VM in each of its minutes.
		for _, t := range tenants {
			for id, vm := range fleet[t] {
				from, v := "provisioning", vm.provisioned*vm.minutes
				if vm.provisioned < 0 {
					from, v = "agent", 0
				}
				if id != "" {
					rows = append(rows, fmt.Sprintf(`{"metric":{"tenant_id":%q,"host.id":%q,"gpus_from":%q},"value":[1,"%d"]}`, t, id, from, v))
				}
			}
		}
	case strings.HasPrefix(q, "sum_over_time((count(count(count_over_time("):
		for _, t := range tenants {
			for id, vm := range fleet[t] {
				if vm.reported > 0 {
					rows = append(rows, fmt.Sprintf(`{"metric":{"tenant_id":%q,"host.id":%q},"value":[1,"%d"]}`, t, id, vm.reported*vm.minutes))
				}
			}
		}
	case r.URL.Path == "/select/logsql/query":
		if len(tenants) > 1 || tenants[0] == "globex" {
			_, _ = fmt.Fprint(w, `{"tenant_id":"globex","queries":"7","series":"112","fetched":"230","exec_ms":"41"}`+"\n")
		}
		return
	default:
		http.Error(w, "unexpected "+r.URL.Path+" "+q, http.StatusBadRequest)
		return
	}
	_, _ = fmt.Fprintf(w, `{"status":"success",%s"data":{"result":[%s]}}`, partial, strings.Join(rows, ","))
}

func csvLines(recs []Record) []string {
	var lines []string
	for _, r := range recs {
		lines = append(lines, r.CSVLine())
	}
	return lines
}

func TestComputeBillsEveryTenantWithOneQueryPerMeter(t *testing.T) {
	vm := &fakeVM{}
	srv := httptest.NewServer(vm)
	defer srv.Close()
	// vm-a1's credential says 8 GPUs, vm-g1's 4 (it reports 2: the
	// credential wins); vm-a2's says nothing: its own 8 count.
	src := &Source{StoreURL: srv.URL, EventsURL: srv.URL, TenantLabel: "tenant_id"}
	hr, err := src.Compute(context.Background(), h10)
	require.NoError(t, err)
	assert.Empty(t, hr.Deferred)
	assert.Equal(t, []string{
		"acme,data_points,2026-12-01T10Z,206640,acme:data_points:2026-12-01T10Z",
		"acme,active_series,2026-12-01T10Z,764,acme:active_series:2026-12-01T10Z",
		"acme,gpu_minutes,2026-12-01T10Z,720,acme:gpu_minutes:2026-12-01T10Z",
		"acme,vms,2026-12-01T10Z,2,acme:vms:2026-12-01T10Z",
		"acme,read_queries,2026-12-01T10Z,0,acme:read_queries:2026-12-01T10Z",
		"acme,read_series,2026-12-01T10Z,0,acme:read_series:2026-12-01T10Z",
		"acme,read_series_fetched,2026-12-01T10Z,0,acme:read_series_fetched:2026-12-01T10Z",
		"acme,read_exec_ms,2026-12-01T10Z,0,acme:read_exec_ms:2026-12-01T10Z",
		"globex,data_points,2026-12-01T10Z,36000,globex:data_points:2026-12-01T10Z",
		"globex,active_series,2026-12-01T10Z,100,globex:active_series:2026-12-01T10Z",
		"globex,gpu_minutes,2026-12-01T10Z,240,globex:gpu_minutes:2026-12-01T10Z",
		"globex,vms,2026-12-01T10Z,1,globex:vms:2026-12-01T10Z",
		"globex,read_queries,2026-12-01T10Z,7,globex:read_queries:2026-12-01T10Z",
		"globex,read_series,2026-12-01T10Z,112,globex:read_series:2026-12-01T10Z",
		"globex,read_series_fetched,2026-12-01T10Z,230,globex:read_series_fetched:2026-12-01T10Z",
		"globex,read_exec_ms,2026-12-01T10Z,41,globex:read_exec_ms:2026-12-01T10Z",
	}, csvLines(hr.Records), "acme: 8 GPUs x 60 min provisioned + 8 x 30 reported; globex: 4 x 60 provisioned; the series without a VM is no VM")

	// One query per meter for every tenant, over exactly the hour as the
	// store's windows (t-d, t] see it.
	end := "1796122799.999" // 2026-12-01 10:59:59.999 UTC
	require.Len(t, vm.queries, 6, "the tenant list, data points, series and VMs, two for GPU-minutes, reads")
	for _, q := range vm.queries {
		query := q.Get("query")
		switch {
		case query == "":
		case strings.HasPrefix(query, "_time:"):
			assert.Contains(t, query, "_time:[2026-12-01T10:00:00Z, 2026-12-01T11:00:00Z)")
			assert.Contains(t, query, "uniq by (tenant_id, query_id, series, series_fetched, exec_ms)")
			assert.NotContains(t, query, "tenant_id:=")
		case strings.Contains(query, "[1h:1m]"):
			assert.Equal(t, end, q.Get("time"), query)
			assert.Contains(t, query, `[1m] offset -59999ms`, "each minute [t, t+1m) of the hour")
			assert.Contains(t, query, `tenant_id!=""`)
			assert.Contains(t, query, `by (tenant_id, host.id)`)
		case strings.HasPrefix(query, "sum(sum_over_time("):
			assert.Equal(t, end, q.Get("time"), query)
			assert.Contains(t, query, `__name__="usage.vm_minutes"}[1h]`, "the gateway's minutes of each VM")
			assert.Contains(t, query, `by (tenant_id, host.id, gpus_from)`)
		default:
			assert.Equal(t, end, q.Get("time"), query)
			assert.Equal(t, "1", q.Get("nocache"))
			assert.Contains(t, query, `[1h]`)
			assert.Contains(t, query, `tenant_id!=""`)
			assert.Contains(t, query, `__name__!~"usage\\..*"`, "the usage records themselves are not usage")
		}
	}
}

func TestATenantWhoseQueryFailsIsDeferredAndTheOthersBilled(t *testing.T) {
	vm := &fakeVM{failAll: true, failTenant: "acme"}
	srv := httptest.NewServer(vm)
	defer srv.Close()
	src := &Source{StoreURL: srv.URL, TenantLabel: "tenant_id"}
	hr, err := src.Compute(context.Background(), h10)
	require.NoError(t, err)
	require.Len(t, hr.Deferred, 1)
	assert.ErrorContains(t, hr.Deferred["acme"], "of tenant acme, hour 2026-12-01T10Z")
	assert.ErrorContains(t, hr.Deferred["acme"], "422")
	for _, r := range hr.Records {
		assert.Equal(t, "globex", r.Tenant, "only globex is billed: %s", r.CSVLine())
	}
	assert.Len(t, hr.Records, len(StoreMeters))

	// Recovered: the deferred tenant alone, per tenant.
	vm.failTenant = ""
	hr, err = src.ComputeTenants(context.Background(), h10, []string{"acme"})
	require.NoError(t, err)
	assert.Empty(t, hr.Deferred)
	assert.Equal(t, "acme,gpu_minutes,2026-12-01T10Z,720,acme:gpu_minutes:2026-12-01T10Z", hr.Records[2].CSVLine(), "both VMs' reported GPUs")
	for _, r := range hr.Records {
		assert.Equal(t, "acme", r.Tenant)
	}
}

func TestAStoreThatAnswersNobodyIsAnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/label/") {
			_, _ = fmt.Fprint(w, `{"status":"success","data":["acme"]}`)
			return
		}
		http.Error(w, "too many series", http.StatusUnprocessableEntity)
	}))
	defer srv.Close()
	_, err := (&Source{StoreURL: srv.URL, TenantLabel: "tenant_id"}).Compute(context.Background(), h10)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "hour 2026-12-01T10Z")
	assert.Contains(t, err.Error(), "422")
	_, err = (&Source{StoreURL: srv.URL, TenantLabel: "tenant_id"}).Compute(context.Background(), h10.Add(time.Minute))
	assert.ErrorContains(t, err, "not on the hour")
}

func TestAPartialAnswerIsNeverBilled(t *testing.T) {
	vm := &fakeVM{partial: true}
	srv := httptest.NewServer(vm)
	defer srv.Close()
	_, err := (&Source{StoreURL: srv.URL, TenantLabel: "tenant_id"}).Compute(context.Background(), h10)
	require.ErrorIs(t, err, ErrPartial)
}

func TestVerifyRefusesAStoreBillingCannotTrust(t *testing.T) {
	flags := ""
	var date time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/flags" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Date", date.UTC().Format(http.TimeFormat))
		_, _ = fmt.Fprint(w, flags)
	}))
	defer srv.Close()
	src := &Source{StoreURL: srv.URL + "/select/0/prometheus", TenantLabel: "tenant_id"}
	now := time.Now
	check := func(f string, skew time.Duration) error {
		flags, date = f, time.Now().Add(skew)
		return src.Verify(context.Background(), 26*time.Hour, now)
	}
	require.NoError(t, check("-dedup.minScrapeInterval=\"1ms\"\n-retentionPeriod=\"7d\"\n", 0))
	require.NoError(t, check("-dedup.minScrapeInterval=\"1ms\"\n-retentionPeriod=\"1\"\n", 0), "a bare number is months")
	require.NoError(t, check("-dedup.minScrapeInterval=\"1ms\"\n", 0), "unset: the default month")
	assert.ErrorContains(t, check("-dedup.minScrapeInterval=\"0s\"\n-retentionPeriod=\"7d\"\n", 0), "-dedup.minScrapeInterval")
	assert.ErrorContains(t, check("-retentionPeriod=\"7d\"\n", 0), "-dedup.minScrapeInterval")
	assert.ErrorContains(t, check("-dedup.minScrapeInterval=\"1ms\"\n-retentionPeriod=\"24h\"\n", 0), "-retentionPeriod=24h keeps less than the 26h0m0s")
	assert.ErrorContains(t, check("-dedup.minScrapeInterval=\"1ms\"\n-retentionPeriod=\"7d\"\n", 2*time.Minute), "away from the store's")
	assert.ErrorContains(t, check("-dedup.minScrapeInterval=\"1ms\"\n-retentionPeriod=\"7d\"\n", -2*time.Minute), "sync both with NTP")
	src.StoreURL = srv.URL + "/nowhere"
	srv.Config.Handler = http.NotFoundHandler()
	assert.ErrorContains(t, src.Verify(context.Background(), time.Hour, now), "not a VictoriaMetrics node")
}

func TestATenantBeyondTheStoresLimitsCostsAFewQueries(t *testing.T) {
	var mu sync.Mutex
	asked := 0
	tenants := []string{"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		q := r.Form.Get("query")
		if r.URL.Path == "/api/v1/label/tenant_id/values" {
			_, _ = fmt.Fprintf(w, `{"status":"success","data":["%s"]}`, strings.Join(tenants, `","`))
			return
		}
		if !strings.HasPrefix(q, "sum(count_over_time(") {
			_, _ = fmt.Fprint(w, `{"status":"success","data":{"result":[]}}`)
			return
		}
		mu.Lock()
		asked++
		mu.Unlock()
		// The tenants the selector covers: all, one, or an alternation.
		covered := tenants
		if _, sel, ok := strings.Cut(q, `tenant_id=~"`); ok {
			covered = strings.Split(sel[:strings.Index(sel, `"`)], "|")
		} else if _, sel, ok := strings.Cut(q, `tenant_id="`); ok {
			covered = []string{sel[:strings.Index(sel, `"`)]}
		}
		if slices.Contains(covered, "t3") {
			http.Error(w, "cannot select more than -search.maxUniqueTimeseries", http.StatusUnprocessableEntity)
			return
		}
		var rows []string
		for _, tn := range covered {
			rows = append(rows, fmt.Sprintf(`{"metric":{"tenant_id":%q},"value":[1,"10"]}`, tn))
		}
		_, _ = fmt.Fprintf(w, `{"status":"success","data":{"result":[%s]}}`, strings.Join(rows, ","))
	}))
	defer srv.Close()
	hr, err := (&Source{StoreURL: srv.URL, TenantLabel: "tenant_id"}).Compute(context.Background(), h10)
	require.NoError(t, err)
	require.Len(t, hr.Deferred, 1)
	assert.Contains(t, hr.Deferred, "t3")
	billed := map[string]bool{}
	for _, r := range hr.Records {
		billed[r.Tenant] = true
	}
	assert.Len(t, billed, 7, "every other tenant is billed")
	assert.Equal(t, 7, asked, "all, then halving down to t3: 1 + 2 + 2 + 2 queries, not one per tenant")
}

func TestARecheckComputesInFullOnlyWhereDataPointsChanged(t *testing.T) {
	vm := &fakeVM{}
	srv := httptest.NewServer(vm)
	defer srv.Close()
	src := &Source{StoreURL: srv.URL, TenantLabel: "tenant_id"}
	first, err := src.Compute(context.Background(), h10)
	require.NoError(t, err)
	billed := map[string]map[Meter]int64{}
	for _, r := range first.Records {
		if billed[r.Tenant] == nil {
			billed[r.Tenant] = map[Meter]int64{}
		}
		billed[r.Tenant][r.Meter] = r.Total
	}
	// acme's data points as billed are 40 short: late data arrived.
	billed["acme"][DataPoints] -= 40
	billed["globex"][GPUMinutes] = 999 // what globex was billed stands: unchanged data points
	vm.queries = nil
	hr, err := src.Recheck(context.Background(), h10, billed)
	require.NoError(t, err)
	assert.Empty(t, hr.Deferred)
	got := map[string]int64{}
	for _, r := range hr.Records {
		got[r.Tenant+"/"+string(r.Meter)] = r.Total
	}
	assert.Equal(t, int64(720), got["acme/gpu_minutes"], "acme computed again")
	assert.Equal(t, int64(999), got["globex/gpu_minutes"], "globex kept as billed")
	for _, q := range vm.queries {
		query := q.Get("query")
		if strings.HasPrefix(query, "sum(count_over_time(") || query == "" {
			continue
		}
		assert.Contains(t, query, `tenant_id="acme"`, "only the changed tenant's other meters: %s", query)
	}
}
