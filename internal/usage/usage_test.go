package usage

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var h10 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func TestRecordIDsAreDerivedFromTenantMeterHour(t *testing.T) {
	assert.Equal(t, "acme:gpu_hours:2026-12-01T10Z", RecordID("acme", GPUHours, h10, 0))
	assert.Equal(t, "acme:gpu_hours:2026-12-01T10Z:r3", RecordID("acme", GPUHours, h10, 3))
	assert.Equal(t, RecordID("acme", GPUHours, h10.In(time.FixedZone("x", 3600)), 0), RecordID("acme", GPUHours, h10, 0), "the zone does not matter")
	assert.NotEqual(t, RecordID("acme", GPUHours, h10, 0), RecordID("acme", GPUHours, h10.Add(time.Hour), 0))
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
	_, err = ParseMeter("gpu_minutes")
	assert.ErrorContains(t, err, "unknown meter \"gpu_minutes\"")
}

func TestCSVAndMetricsRoundTrip(t *testing.T) {
	recs := []Record{
		{ID: RecordID("globex", VMs, h10, 0), Tenant: "globex", Meter: VMs, Hour: h10, Value: 2, Total: 2},
		{ID: RecordID("acme", GPUHours, h10, 0), Tenant: "acme", Meter: GPUHours, Hour: h10, Value: 7.95, Total: 7.95},
		{ID: RecordID("acme", DataPoints, h10, 1), Tenant: "acme", Meter: DataPoints, Hour: h10, Revision: 1, Value: 12, Total: 1012},
	}
	back, err := Records(Metrics(recs, "scope"))
	require.NoError(t, err)
	Sort(recs)
	assert.Equal(t, recs, back)
	assert.Equal(t, "acme,data_points,2026-12-01T10Z,12,acme:data_points:2026-12-01T10Z:r1", back[0].CSVLine())
	assert.Equal(t, "acme,gpu_hours,2026-12-01T10Z,7.95,acme:gpu_hours:2026-12-01T10Z", back[1].CSVLine())
}

// fakeVM answers the store's query API from canned values and records the
// queries it was asked.
type fakeVM struct {
	mu      sync.Mutex
	queries []url.Values
}

func (f *fakeVM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	f.mu.Lock()
	f.queries = append(f.queries, r.Form)
	f.mu.Unlock()
	q := r.Form.Get("query")
	tenant := "acme"
	if strings.Contains(q, `"globex"`) {
		tenant = "globex"
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/api/v1/label/tenant_id/values"):
		_, _ = fmt.Fprint(w, `{"status":"success","data":["acme","globex","Bad Tenant!"]}`)
	case strings.HasPrefix(q, "sum(count_over_time("):
		if tenant == "globex" {
			_, _ = fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
			return
		}
		_, _ = fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"45600"]}]}}`)
	case strings.HasPrefix(q, "count(count_over_time("):
		if tenant == "globex" {
			_, _ = fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
			return
		}
		_, _ = fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[
			{"metric":{"host.name":"vm-1"},"value":[1,"380"]},{"metric":{"host.name":"vm-2","host.id":"2"},"value":[1,"380"]},{"metric":{},"value":[1,"4"]}]}}`)
	case strings.HasPrefix(q, "count(count(count_over_time("):
		if tenant == "globex" {
			_, _ = fmt.Fprint(w, `{"status":"success","data":{"resultType":"matrix","result":[]}}`)
			return
		}
		// 16 GPUs for 59 minutes, 15 in the last.
		var b strings.Builder
		for i := 0; i < 60; i++ {
			if i > 0 {
				b.WriteString(",")
			}
			n := 16
			if i == 59 {
				n = 15
			}
			fmt.Fprintf(&b, `[%d,"%d"]`, i, n)
		}
		_, _ = fmt.Fprintf(w, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[%s]}]}}`, b.String())
	case r.URL.Path == "/select/logsql/query":
		_, _ = fmt.Fprint(w, `{"tenant_id":"globex","queries":"7","series":"112"}`+"\n")
	default:
		http.Error(w, "unexpected "+r.URL.Path+" "+q, http.StatusBadRequest)
	}
}

func TestComputeAsksForExactlyTheHour(t *testing.T) {
	vm := &fakeVM{}
	srv := httptest.NewServer(vm)
	defer srv.Close()
	src := &Source{StoreURL: srv.URL, EventsURL: srv.URL, TenantLabel: "tenant_id"}
	recs, err := src.Compute(context.Background(), h10)
	require.NoError(t, err)
	var lines []string
	for _, r := range recs {
		lines = append(lines, r.CSVLine())
	}
	assert.Equal(t, []string{
		"acme,data_points,2026-12-01T10Z,45600,acme:data_points:2026-12-01T10Z",
		"acme,active_series,2026-12-01T10Z,764,acme:active_series:2026-12-01T10Z",
		"acme,gpu_hours,2026-12-01T10Z,15.983333333333333,acme:gpu_hours:2026-12-01T10Z",
		"acme,vms,2026-12-01T10Z,2,acme:vms:2026-12-01T10Z",
		"acme,read_queries,2026-12-01T10Z,0,acme:read_queries:2026-12-01T10Z",
		"acme,read_series,2026-12-01T10Z,0,acme:read_series:2026-12-01T10Z",
		"globex,data_points,2026-12-01T10Z,0,globex:data_points:2026-12-01T10Z",
		"globex,active_series,2026-12-01T10Z,0,globex:active_series:2026-12-01T10Z",
		"globex,gpu_hours,2026-12-01T10Z,0,globex:gpu_hours:2026-12-01T10Z",
		"globex,vms,2026-12-01T10Z,0,globex:vms:2026-12-01T10Z",
		"globex,read_queries,2026-12-01T10Z,7,globex:read_queries:2026-12-01T10Z",
		"globex,read_series,2026-12-01T10Z,112,globex:read_series:2026-12-01T10Z",
	}, lines, "the invalid tenant label value is ignored; globex appears for its reads")

	// The hour's boundaries, as the store's windows (t-d, t] see them.
	end := "1796122799.999" // 2026-12-01 10:59:59.999 UTC
	seen := 0
	for _, q := range vm.queries {
		query := q.Get("query")
		switch {
		case strings.HasPrefix(query, "sum(count_over_time("), strings.HasPrefix(query, "count(count_over_time("):
			assert.Equal(t, end, q.Get("time"), query)
			assert.Equal(t, "1", q.Get("nocache"))
			assert.Contains(t, query, `[1h]`)
			assert.Contains(t, query, `__name__!~"usage\\..*"`, "the usage records themselves are not usage")
			seen++
		case strings.HasPrefix(query, "count(count(count_over_time("):
			assert.Equal(t, "1796119259.999", q.Get("start"), "the end of the first minute")
			assert.Equal(t, end, q.Get("end"))
			assert.Equal(t, "60", q.Get("step"))
			assert.Contains(t, query, `__name__="hw.status",hw.parent=""`, "physical GPUs, not MIG instances")
			seen++
		case strings.HasPrefix(query, "_time:"):
			assert.Contains(t, query, "_time:[2026-12-01T10:00:00Z, 2026-12-01T11:00:00Z)")
			assert.Contains(t, query, "uniq by (tenant_id, query_id, series)")
		}
	}
	assert.Equal(t, 6, seen)
}

func TestComputeNamesWhatFailed(t *testing.T) {
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
	assert.Contains(t, err.Error(), "of tenant acme, hour 2026-12-01T10Z")
	assert.Contains(t, err.Error(), "422")
	_, err = (&Source{StoreURL: srv.URL, TenantLabel: "tenant_id"}).Compute(context.Background(), h10.Add(time.Minute))
	assert.ErrorContains(t, err, "not on the hour")
}
