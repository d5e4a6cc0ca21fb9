package tenantusagereceiver

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

const exposition = `# HELP otelcol_exporter_tenant_sent_items Items the store accepted.
# TYPE otelcol_exporter_tenant_sent_items counter
otelcol_exporter_tenant_sent_items{signal="metrics",tenant="acme"} 1000
otelcol_exporter_tenant_sent_items{signal="logs",tenant="acme"} 7
otelcol_exporter_tenant_sent_items_total{otel_scope_name="x",signal="metrics",tenant="glo\"bex"} 5e+02
otelcol_exporter_tenant_failed_items{signal="metrics",tenant="acme"} 3
otelcol_exporter_tenant_queue_items{signal="metrics",tenant="acme"} 12
otelcol_process_uptime 100
`

func TestParseGatewayMetrics(t *testing.T) {
	c, err := parseGatewayMetrics(strings.NewReader(exposition))
	require.NoError(t, err)
	assert.Equal(t, gatewayCounts{
		"acme":    {Sent: 1000, Failed: 3, Queued: 12},
		`glo"bex`: {Sent: 500},
	}, c, "the metrics signal only, both spellings, escaped label values")
	_, err = parseGatewayMetrics(strings.NewReader(`otelcol_exporter_tenant_sent_items{signal="metrics",tenant="a"} many`))
	assert.ErrorContains(t, err, `value "many"`)
	// A gateway whose exporter counts without the tenant cannot be
	// cross-checked: said, not read as zero for every tenant.
	_, err = parseGatewayMetrics(strings.NewReader(`otelcol_exporter_tenant_sent_items{signal="metrics"} 1000` + "\n"))
	assert.ErrorContains(t, err, "telemetry.per_tenant: true")
}

func TestCompare(t *testing.T) {
	start := snapshot{Gateways: map[string]gatewayCounts{
		"gw1": {"acme": {Sent: 1000}, "globex": {Sent: 100}},
		"gw2": {"acme": {Sent: 5000}},
	}}
	end := snapshot{Gateways: map[string]gatewayCounts{
		"gw1": {"acme": {Sent: 2000}, "globex": {Sent: 400}},
		"gw2": {"acme": {Sent: 200, Queued: 10}}, // restarted
		"gw3": {"initech": {Sent: 50}},           // new
	}}
	recs := []usage.Record{
		{Tenant: "acme", Meter: usage.DataPoints, Total: 1200},
		{Tenant: "globex", Meter: usage.DataPoints, Total: 290},
		{Tenant: "hooli", Meter: usage.DataPoints, Total: 80},
	}
	got := map[string]crossDiff{}
	for _, d := range compare(start, end, recs, 0.01) {
		got[d.Tenant] = d
	}
	assert.Equal(t, crossDiff{Tenant: "acme", Delivered: 1200, Stored: 1200, Queued: 10, Restarted: true}, got["acme"])
	assert.Equal(t, crossDiff{Tenant: "globex", Delivered: 300, Stored: 290, Difference: 10, Unexplained: true}, got["globex"], "10 of 290 is over 1 %")
	assert.True(t, got["initech"].Restarted, "a gateway not read at the hour's start cannot explain its counts")
	assert.Equal(t, crossDiff{Tenant: "hooli", Stored: 80, Difference: -80, Unexplained: true}, got["hooli"], "stored but delivered by no gateway read")
}

// gatewayMetrics serves a gateway's counters that the test moves.
type gatewayMetrics struct {
	mu   sync.Mutex
	sent map[string]int
}

func (g *gatewayMetrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for t, n := range g.sent {
		_, _ = fmt.Fprintf(w, "otelcol_exporter_tenant_sent_items{signal=\"metrics\",tenant=%q} %d\n", t, n)
	}
}

func (g *gatewayMetrics) set(t string, n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sent[t] = n
}

func TestCrosscheckReportsAnUnexplainedDifference(t *testing.T) {
	gw := &gatewayMetrics{sent: map[string]int{"acme": 0, "globex": 0}}
	srv := httptest.NewServer(gw)
	defer srv.Close()
	clk := &clock{t: hourAt("2026-12-01T09:00:30Z")}
	src := baseStore() // acme 100 data points an hour, globex 50
	core, logs := observer.New(zap.InfoLevel)
	rn := start(t, t.TempDir(), src, clk, nil, func(c *Config) {
		c.Backfill = 0
		c.Crosscheck.Gateways = []string{srv.URL + "/metrics"}
	})
	rn.r.logger = zap.New(core)
	defer rn.stop(t)
	// The first cycle (in start) read the 09Z boundary's counters.
	gw.set("acme", 100)  // as stored
	gw.set("globex", 80) // 30 more than stored
	clk.set(hourAt("2026-12-01T10:00:20Z"))
	rn.r.cycle(context.Background()) // the 10Z boundary's counters
	clk.set(hourAt("2026-12-01T10:10:00Z"))
	rn.r.cycle(context.Background()) // 09Z closes
	require.NotEmpty(t, rn.sink.AllMetrics())
	warn := logs.FilterMessageSnippet("cross-check: the gateways' counters and the store differ").All()
	require.Len(t, warn, 1, "only globex differs")
	f := warn[0].ContextMap()
	assert.Equal(t, "globex", f["tenant"])
	assert.Equal(t, 30.0, f["difference"])
	assert.Equal(t, "2026-12-01T09Z", f["hour"])
	b, err := rn.r.client.Get(context.Background(), snapshotKey(hourAt("2026-12-01T09:00:00Z")))
	require.NoError(t, err)
	assert.Nil(t, b, "the hour's start counters go once it is checked")
}
