package tenantusagereceiver

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/storagetest"
	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
	"github.com/otelcol-gpu/otelcol-gpu/receiver/tenantusagereceiver/internal/metadata"
)

func TestADeferredTenantIsBilledOnceItRecovers(t *testing.T) {
	clk := &clock{t: hourAt("2026-12-01T08:10:00Z")}
	src := baseStore()
	src.fail("acme", true)
	rn := start(t, t.TempDir(), src, clk, nil, func(c *Config) { c.Backfill = time.Hour + 10*time.Minute; c.Rechecks = nil })
	defer rn.stop(t)
	recs := recordsOf(t, rn.sink.AllMetrics())
	require.Len(t, recs, 2)
	for _, r := range recs {
		assert.Equal(t, "globex", r.Tenant, "globex is billed on time")
	}
	h := hourAt("2026-12-01T07:00:00Z")
	require.Contains(t, rn.r.pending, h, "the hour is kept for its deferred tenant, rechecks or not")
	assert.Contains(t, rn.r.pending[h].Deferred["acme"], "too many series")
	assert.Equal(t, 1, rn.r.deferredCount())

	rn.r.cycle(context.Background())
	assert.Len(t, rn.sink.AllMetrics(), 1, "still failing: nothing more")

	src.fail("acme", false)
	rn.r.cycle(context.Background())
	recs = recordsOf(t, rn.sink.AllMetrics()[1:])
	require.Len(t, recs, 2)
	assert.Equal(t, "acme:data_points:2026-12-01T07Z", recs[0].ID, "revision 0, as if on time")
	assert.Equal(t, int64(100), recs[0].Value)
	assert.NotContains(t, rn.r.pending, h, "no recheck and nobody deferred: the hour is done")
	assert.Zero(t, rn.r.deferredCount())
}

func TestADecreaseIsHeldNotRefunded(t *testing.T) {
	for _, credit := range []bool{false, true} {
		t.Run(fmt.Sprintf("credit=%v", credit), func(t *testing.T) {
			clk := &clock{t: hourAt("2026-12-01T08:10:00Z")}
			src := baseStore()
			rn := start(t, t.TempDir(), src, clk, nil, func(c *Config) {
				c.Backfill = time.Hour + 10*time.Minute
				if credit {
					c.Decreases = DecreasesCredit
				}
			})
			defer rn.stop(t)
			h := hourAt("2026-12-01T07:00:00Z")
			// The store lost 30 of acme's points (retention, a deletion).
			src.late(h, "acme", usage.DataPoints, -30)
			clk.set(hourAt("2026-12-01T09:10:00Z"))
			rn.r.cycle(context.Background())
			var adj []usage.Record
			for _, r := range recordsOf(t, rn.sink.AllMetrics()) {
				if r.Hour.Equal(h) && r.Revision > 0 {
					adj = append(adj, r)
				}
			}
			if !credit {
				assert.Empty(t, adj, "no refund is sent")
				assert.Equal(t, map[string]map[usage.Meter]int64{"acme": {usage.DataPoints: 70}}, rn.r.pending[h].Held, "held for review")
				assert.Equal(t, int64(100), rn.r.pending[h].Totals["acme"][usage.DataPoints], "the bill stands")
				// Late data brings it above what was billed: billed from the billed total.
				src.late(h, "acme", usage.DataPoints, 50)
				clk.set(hourAt("2026-12-01T14:10:00Z"))
				rn.r.cycle(context.Background())
				for _, r := range recordsOf(t, rn.sink.AllMetrics()) {
					if r.Hour.Equal(h) && r.Revision > 0 {
						adj = append(adj, r)
					}
				}
				require.Len(t, adj, 1)
				assert.Equal(t, "acme:data_points:2026-12-01T07Z:r1", adj[0].ID)
				assert.Equal(t, int64(20), adj[0].Value)
				assert.Empty(t, rn.r.pending[h].Held)
				return
			}
			require.Len(t, adj, 1)
			assert.Equal(t, int64(-30), adj[0].Value, "credited, as configured")
			assert.Equal(t, int64(70), adj[0].Total)
		})
	}
}

// crashed is the panic of a simulated kill.
type crashed string

// TestAKillAtAnyStepNeverSendsAnIdWithTwoValues kills the job (a panic
// from the step hook: nothing after it runs, nothing is closed cleanly
// first) at the n-th ledger write or hand-over, for every n until a run
// goes through, while late data keeps changing what a new computation
// would give. Across all lives, every id handed to the pipeline carries
// one value, and each hour's amounts sum to what the store holds at its
// last recheck.
func TestAKillAtAnyStepNeverSendsAnIdWithTwoValues(t *testing.T) {
	h7 := hourAt("2026-12-01T07:00:00Z")
	for n := 1; ; n++ {
		dir := t.TempDir()
		clk := &clock{t: hourAt("2026-12-01T08:10:00Z")}
		src := baseStore()
		sink := &consumertest.MetricsSink{}
		steps := 0
		killed := false
		hook := func(step string) {
			steps++
			if steps == n && !killed {
				killed = true
				panic(crashed(step))
			}
		}
		// The schedule: 07Z closes, late data, a recheck at 09:10 (08Z
		// closes too), more late data, the 6 h recheck at 14:10, the last
		// at 08:10 the next day.
		times := []string{"2026-12-01T08:10:00Z", "2026-12-01T09:10:00Z", "2026-12-01T14:10:00Z", "2026-12-02T08:10:00Z", "2026-12-02T09:10:00Z"}
		late := map[int]int64{1: 40, 2: 5}
		var rn *run
		life := func() {
			defer func() {
				if p := recover(); p != nil {
					if _, ok := p.(crashed); !ok {
						panic(p)
					}
				}
			}()
			rn = start(t, dir, src, clk, sink, func(c *Config) { c.Backfill = time.Hour + 10*time.Minute })
			rn.r.crash = hook
			for i := 1; i < len(times); i++ {
				if clk.now().Before(hourAt(times[i])) {
					src.late(h7, "acme", usage.DataPoints, late[i])
					clk.set(hourAt(times[i]))
				}
				rn.r.cycle(context.Background())
			}
		}
		// start() runs a cycle before the hook is set: the first life's
		// hook counts from its second cycle; to kill in the first, set
		// the hook through a start that has it.
		life()
		if rn != nil {
			rn.stop(t)
		}
		if killed {
			// The next life: the same storage, the clock where it was.
			rn = nil
			life()
			require.NotNil(t, rn)
			for i := 0; i < 3; i++ {
				rn.r.cycle(context.Background())
			}
			rn.stop(t)
		}
		values := map[string]int64{}
		sums := map[string]int64{}
		for _, r := range recordsOf(t, sink.AllMetrics()) {
			if v, ok := values[r.ID]; ok {
				require.Equal(t, v, r.Value, "kill at step %d: id %s went out with two values", n, r.ID)
				continue
			}
			values[r.ID] = r.Value
			sums[fmt.Sprintf("%s/%s/%s", r.Tenant, r.Meter, r.Hour.Format(usage.HourLayout))] += r.Value
		}
		assert.Equal(t, int64(145), sums["acme/data_points/2026-12-01T07Z"], "kill at step %d: the hour's amounts add up to what the store holds", n)
		assert.Equal(t, int64(100), sums["acme/data_points/2026-12-01T08Z"], "kill at step %d", n)
		assert.Equal(t, int64(60), sums["globex/gpu_minutes/2026-12-01T07Z"], "kill at step %d", n)
		if !killed {
			require.Greater(t, n, 5, "the schedule has steps to kill at")
			t.Logf("killed at each of %d steps", n-1)
			return
		}
	}
}

func TestStartRefusesAStoreWithoutDeduplication(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprint(w, "-dedup.minScrapeInterval=\"0s\"\n-retentionPeriod=\"1\"\n")
	}))
	defer srv.Close()
	cfg := createDefaultConfig().(*Config)
	cfg.Storage = &storageID
	cfg.Store.ClientConfig.Endpoint = srv.URL
	r, err := newReceiver(cfg, receivertest.NewNopSettings(metadata.Type), consumertest.NewNop())
	require.NoError(t, err)
	err = r.Start(context.Background(), storagetest.NewHost(nil))
	require.ErrorContains(t, err, "-dedup.minScrapeInterval")
	require.ErrorContains(t, err, "store.verify")
}
