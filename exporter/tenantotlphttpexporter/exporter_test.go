package tenantotlphttpexporter

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/otelcol-gpu/otelcol-gpu/exporter/tenantotlphttpexporter/internal/metadata"
	"github.com/otelcol-gpu/otelcol-gpu/internal/spool"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/telemetrytest"
)

func TestSplit(t *testing.T) {
	one := batch("acme", 5)
	batch("acme", 3).ResourceMetrics().At(0).CopyTo(one.ResourceMetrics().AppendEmpty())
	res, err := splitGeneric(metricsSplitter, one, "tenant.id")
	require.NoError(t, err)
	require.Len(t, res.parts, 1, "one tenant: the request goes as it is")
	whole, _ := (&pmetric.ProtoMarshaler{}).MarshalMetrics(one)
	require.Equal(t, whole, res.parts[0].data)
	require.Equal(t, 8, res.parts[0].items)

	mixed := pmetric.NewMetrics()
	for _, b := range []pmetric.Metrics{batch("acme", 2), batch("globex", 3), batch("", 4), batch("acme", 1), batch("Bad Tenant", 6)} {
		b.ResourceMetrics().At(0).CopyTo(mixed.ResourceMetrics().AppendEmpty())
	}
	res, err = splitGeneric(metricsSplitter, mixed, "tenant.id")
	require.NoError(t, err)
	require.Equal(t, 10, res.untagged, "no tenant, or one outside the grammar")
	require.Len(t, res.parts, 2)
	got := map[string]int{}
	for _, p := range res.parts {
		md, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(p.data)
		require.NoError(t, err)
		require.Equal(t, p.items, md.DataPointCount())
		for i := 0; i < md.ResourceMetrics().Len(); i++ {
			v, _ := md.ResourceMetrics().At(i).Resource().Attributes().Get("tenant.id")
			require.Equal(t, p.tenant, v.Str(), "never mixed")
		}
		got[p.tenant] = p.items
	}
	require.Equal(t, map[string]int{"acme": 3, "globex": 3}, got)

	res, err = splitGeneric(metricsSplitter, pmetric.NewMetrics(), "tenant.id")
	require.NoError(t, err)
	require.Empty(t, res.parts)
}

func FuzzSplit(f *testing.F) {
	seed := pmetric.NewMetrics()
	for _, b := range []pmetric.Metrics{batch("acme", 2), batch("globex", 3), batch("", 1)} {
		b.ResourceMetrics().At(0).CopyTo(seed.ResourceMetrics().AppendEmpty())
	}
	b, _ := (&pmetric.ProtoMarshaler{}).MarshalMetrics(seed)
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		md, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(data)
		if err != nil {
			return
		}
		res, err := splitGeneric(metricsSplitter, md, "tenant.id")
		require.NoError(t, err)
		total := res.untagged
		for _, p := range res.parts {
			part, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(p.data)
			require.NoError(t, err)
			for i := 0; i < part.ResourceMetrics().Len(); i++ {
				v, _ := part.ResourceMetrics().At(i).Resource().Attributes().Get("tenant.id")
				require.Equal(t, p.tenant, v.Str())
			}
			total += p.items
		}
		require.Equal(t, md.DataPointCount(), total, "every point is in exactly one part or counted untagged")
	})
}

func TestEachTenantToItsOwnRouteBatched(t *testing.T) {
	s := newStore(t)
	cfg := testConfig(s)
	cfg.MetricsEndpoint = s.srv.URL + "/insert/{account}/opentelemetry/v1/metrics?extra_label=tenant_id={tenant}"
	cfg.TenantHeaders = map[string]string{"X-Scope-OrgID": "{tenant}", "X-Account": "{account}"}
	cfg.Tenants = map[string]map[string]string{"acme": {"account": "12"}, "globex": {"account": "34"}}
	cfg.Batch.FlushInterval = 300 * time.Millisecond
	exp := startMetrics(t, cfg, "")
	for i := 0; i < 20; i++ {
		require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("acme", 10)))
		require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("globex", 5)))
	}
	require.Eventually(t, func() bool { return s.pointsOf("acme") == 200 && s.pointsOf("globex") == 100 }, 5*time.Second, 10*time.Millisecond)
	stop(t, exp)
	s.mu.Lock()
	defer s.mu.Unlock()
	require.Len(t, s.requests, 2, "40 small requests left as one batch per tenant")
	for _, r := range s.requests {
		require.Len(t, r.tenants, 1, "a request never mixes tenants")
		for tenant := range r.tenants {
			account := cfg.Tenants[tenant]["account"]
			require.Equal(t, "/insert/"+account+"/opentelemetry/v1/metrics", r.path)
			require.Equal(t, "extra_label=tenant_id="+tenant, r.query)
			require.Equal(t, tenant, r.header.Get("X-Scope-OrgID"))
			require.Equal(t, account, r.header.Get("X-Account"))
			require.Equal(t, "gzip", r.header.Get("Content-Encoding"))
		}
	}
}

func TestUntaggedDataIsRefusedForGood(t *testing.T) {
	s := newStore(t)
	exp := startMetrics(t, testConfig(s), "")
	defer stop(t, exp)
	mixed := batch("acme", 3)
	batch("", 2).ResourceMetrics().At(0).CopyTo(mixed.ResourceMetrics().AppendEmpty())
	err := exp.ConsumeMetrics(context.Background(), mixed)
	require.True(t, consumererror.IsPermanent(err), "%v", err)
	require.ErrorContains(t, err, `2 metrics item(s) have no valid "tenant.id"`)
	require.Eventually(t, func() bool { return s.pointsOf("acme") == 3 }, 5*time.Second, 10*time.Millisecond, "the tagged part is still sent")
}

func TestRefusalsAreRetryable(t *testing.T) {
	s := newStore(t)
	s.set("slow", http.StatusServiceUnavailable, false)

	cfg := testConfig(s)
	cfg.RateLimit = RateLimitConfig{ItemsPerSecond: 100, Burst: cfg.Batch.MaxItems}
	exp := startMetrics(t, cfg, "")
	require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("acme", cfg.Batch.MaxItems)))
	err := exp.ConsumeMetrics(context.Background(), batch("acme", 1000))
	require.ErrorContains(t, err, "over its rate limit")
	require.False(t, consumererror.IsPermanent(err))
	stop(t, exp)

	cfg = testConfig(s)
	cfg.Queue.MaxItemsPerTenant = cfg.Batch.MaxItems
	exp = startMetrics(t, cfg, "")
	require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("slow", cfg.Batch.MaxItems)))
	err = exp.ConsumeMetrics(context.Background(), batch("slow", 1))
	require.ErrorContains(t, err, `tenant "slow"'s queue is full`)
	require.False(t, consumererror.IsPermanent(err))
	require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("acme", 1)), "another tenant is not affected")
	stop(t, exp)

	cfg = testConfig(s)
	cfg.MaxTenants = 2
	exp = startMetrics(t, cfg, "")
	require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("a", 1)))
	require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("b", 1)))
	err = exp.ConsumeMetrics(context.Background(), batch("c", 1))
	require.ErrorIs(t, err, errMaxTenants)
	require.False(t, consumererror.IsPermanent(err))
	stop(t, exp)
}

// deliveryDelay measures how long tenant's points take from the exporter to
// the store, n times, and returns the median.
func deliveryDelay(t *testing.T, s *store, exp interface {
	ConsumeMetrics(context.Context, pmetric.Metrics) error
}, tenant string, n int) time.Duration {
	var delays []time.Duration
	for i := 0; i < n; i++ {
		before := s.pointsOf(tenant)
		start := time.Now()
		require.NoError(t, exp.ConsumeMetrics(context.Background(), batch(tenant, 10)))
		require.Eventually(t, func() bool { return s.pointsOf(tenant) >= before+10 }, 10*time.Second, time.Millisecond)
		delays = append(delays, time.Since(start))
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	return delays[len(delays)/2]
}

func isolationPeriod() time.Duration {
	if s, err := strconv.Atoi(os.Getenv("TENANT_ISOLATION_SECONDS")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 30 * time.Second
}

func TestOneTenantsFailingStoreDoesNotDelayAnother(t *testing.T) {
	for name, hang := range map[string]bool{"503": false, "hanging": true} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			cfg := testConfig(s)
			cfg.ClientConfig.Timeout = 5 * time.Second
			exp := startMetrics(t, cfg, "")
			baseline := deliveryDelay(t, s, exp, "globex", 15)

			if hang {
				s.set("acme", 0, true)
			} else {
				s.set("acme", http.StatusServiceUnavailable, false)
			}
			period := isolationPeriod()
			sentA := 0
			var during []time.Duration
			for end := time.Now().Add(period); time.Now().Before(end); {
				require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("acme", 50)))
				sentA += 50
				during = append(during, deliveryDelay(t, s, exp, "globex", 3))
			}
			sort.Slice(during, func(i, j int) bool { return during[i] < during[j] })
			median := during[len(during)/2]
			t.Logf("globex delivery: baseline median %s, median while acme's store was %s for %s: %s", baseline, name, period, median)
			require.LessOrEqual(t, median, max(2*baseline, baseline+50*time.Millisecond), "the healthy tenant kept its delivery time")
			require.Zero(t, s.pointsOf("acme"))

			s.set("acme", 0, false)
			// A request the exporter gave up on (timeout) and sent again may
			// also have been stored: at least once, duplicates for the store
			// to absorb.
			require.Eventually(t, func() bool { return s.pointsOf("acme") >= sentA }, 30*time.Second, 10*time.Millisecond,
				"all of acme's data arrives after its store recovers")
			if !hang {
				require.Equal(t, sentA, s.pointsOf("acme"), "503s are retried exactly")
			}
			stop(t, exp)
		})
	}
}

func TestQueuesSurviveARestart(t *testing.T) {
	for _, mode := range []string{"directory", "directory+fsync"} {
		t.Run(mode, func(t *testing.T) {
			s := newStore(t)
			dir := t.TempDir()
			id := component.NewIDWithName(metadata.Type, "restart")
			start := func(cfg *Config) exporter.Metrics {
				cfg.Queue.Directory = dir
				cfg.Queue.Fsync = mode == "directory+fsync"
				return startMetricsID(t, cfg, nil, id)
			}
			s.set("acme", http.StatusServiceUnavailable, false)
			s.set("globex", http.StatusServiceUnavailable, false)
			cfg := testConfig(s)
			cfg.DrainTimeout = 100 * time.Millisecond
			exp := start(cfg)
			for i := 0; i < 10; i++ {
				require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("acme", 7)))
			}
			require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("globex", 5)))
			stop(t, exp) // store still down: everything stays on disk

			s.set("acme", 0, false)
			s.set("globex", 0, false)
			exp = start(testConfig(s))
			// Nobody sends anything after the restart: the index finds both tenants.
			require.Eventually(t, func() bool { return s.pointsOf("acme") == 70 && s.pointsOf("globex") == 5 }, 10*time.Second, 10*time.Millisecond)
			stop(t, exp)

			// Sent data is gone from disk: a third start sends nothing again.
			exp = start(testConfig(s))
			require.Zero(t, inner(exp).queuedItems(), "Start restored nothing: nothing is left on disk to send")
			stop(t, exp)
			require.Equal(t, 70, s.pointsOf("acme"))
			require.Equal(t, 5, s.pointsOf("globex"))
		})
	}
}

// A tenant released as idle and back later continues its numbering in the
// queue log: parts numbered from 0 again would be taken for sent ones at
// the next restart, and lost.
func TestATenantBackAfterReleaseKeepsItsPartsAcrossARestart(t *testing.T) {
	s := newStore(t)
	dir := t.TempDir()
	id := component.NewIDWithName(metadata.Type, "comeback")
	cfg := testConfig(s)
	cfg.Queue.Directory = dir
	cfg.IdleTimeout = 50 * time.Millisecond
	cfg.DrainTimeout = 100 * time.Millisecond
	exp := startMetricsID(t, cfg, nil, id)
	for i := 0; i < 3; i++ {
		require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("acme", 4)))
		require.Eventually(t, func() bool { return s.pointsOf("acme") == 4*(i+1) }, 5*time.Second, 5*time.Millisecond)
	}
	e := inner(exp)
	require.Eventually(t, func() bool { e.mu.Lock(); defer e.mu.Unlock(); return len(e.queues) == 0 }, 5*time.Second, 10*time.Millisecond, "released as idle")

	s.set("acme", http.StatusServiceUnavailable, false)
	require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("acme", 5)))
	require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("acme", 6)))
	stop(t, exp)

	s.set("acme", 0, false)
	cfg = testConfig(s)
	cfg.Queue.Directory = dir
	exp = startMetricsID(t, cfg, nil, id)
	defer stop(t, exp)
	require.Eventually(t, func() bool { return s.pointsOf("acme") == 12+11 }, 10*time.Second, 10*time.Millisecond)
}

// A tenant whose store refuses for a long time keeps a part in every
// segment it sent to; its parts are written again at the log's end so
// those segments can go, and everything still arrives once its store is
// back.
func TestAStuckTenantDoesNotHoldEverySegment(t *testing.T) {
	segBytes, above := spoolSegmentBytes, compactAbove
	spoolSegmentBytes, compactAbove = 8<<10, 32<<10
	t.Cleanup(func() { spoolSegmentBytes, compactAbove = segBytes, above })
	s := newStore(t)
	cfg := testConfig(s)
	cfg.Queue.Directory = t.TempDir()
	cfg.Batch.MaxItems = 10 // every request leaves as it came
	exp := startMetricsID(t, cfg, nil, component.NewIDWithName(metadata.Type, "stuck"))
	defer stop(t, exp)
	e := inner(exp)

	s.set("stuck", http.StatusServiceUnavailable, false)
	for i := 0; i < 1000; i++ {
		tenant := "busy"
		if i%20 == 0 {
			tenant = "stuck"
		}
		require.NoError(t, exp.ConsumeMetrics(context.Background(), batch(tenant, 10)))
	}
	require.Eventually(t, func() bool { return s.pointsOf("busy") == 950*10 }, 10*time.Second, 5*time.Millisecond)
	var st spool.Stats
	require.Eventually(t, func() bool {
		st = e.parts.(*logParts).spool.Stats()
		return st.DiskBytes < 3*compactAbove
	}, 10*time.Second, 10*time.Millisecond, "the log's files stay bounded while stuck's 50 parts wait")
	t.Logf("stuck tenant waiting: %d segments, %d KiB on disk, %d KiB needed", st.Segments, st.DiskBytes>>10, st.LiveBytes>>10)

	s.set("stuck", 0, false)
	require.Eventually(t, func() bool { return s.pointsOf("stuck") == 50*10 }, 10*time.Second, 10*time.Millisecond)
}

func TestAThousandFailingTenantsStayInsideTheBudget(t *testing.T) {
	s := newStore(t)
	cfg := testConfig(s)
	cfg.Batch.MaxBytes = 64 << 10
	cfg.Queue.MaxBytes = 4 << 20
	cfg.RetryOnFailure.InitialInterval = time.Hour
	exp := startMetrics(t, cfg, "")
	for i := 0; i < 1000; i++ {
		s.set("t"+strconv.Itoa(i), http.StatusServiceUnavailable, false)
	}
	runtime.GC()
	before := heapInUse()
	accepted, refused := 0, 0
	for round := 0; round < 5; round++ {
		for i := 0; i < 1000; i++ {
			err := exp.ConsumeMetrics(context.Background(), batch("t"+strconv.Itoa(i), 100))
			if err != nil {
				require.False(t, consumererror.IsPermanent(err))
				refused++
			} else {
				accepted++
			}
		}
	}
	runtime.GC()
	grew := int64(heapInUse()) - int64(before)
	t.Logf("1000 tenants, store failing: %d requests accepted, %d refused (budget 4 MiB), heap grew %d KiB", accepted, refused, grew>>10)
	require.Positive(t, refused, "the budget refused some")
	require.Less(t, grew, int64(32<<20), "memory stays near the 4 MiB budget")
	stop(t, exp)
}

func heapInUse() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func TestIdleTenantsAreReleasedAndComeBack(t *testing.T) {
	s := newStore(t)
	cfg := testConfig(s)
	cfg.IdleTimeout = 50 * time.Millisecond
	exp := startMetrics(t, cfg, t.TempDir())
	defer stop(t, exp)
	e := exp.(*metricsExporter).Unwrap
	for round := 1; round <= 3; round++ {
		require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("acme", 5)))
		require.Eventually(t, func() bool { return s.pointsOf("acme") == 5*round }, 5*time.Second, 5*time.Millisecond)
		require.Eventually(t, func() bool {
			e.mu.Lock()
			defer e.mu.Unlock()
			return len(e.queues) == 0
		}, 5*time.Second, 5*time.Millisecond, "an empty, idle tenant is released")
	}
}

// The exporter's own metrics carry the tenant only with
// telemetry.per_tenant: without it, fifty tenants are one series per
// signal, not fifty.
func TestOwnMetricsCarryTheTenantOnlyWhenAskedTo(t *testing.T) {
	for _, perTenant := range []bool{false, true} {
		t.Run(fmt.Sprint("per_tenant=", perTenant), func(t *testing.T) {
			s := newStore(t)
			cfg := testConfig(s)
			cfg.Telemetry.PerTenant = perTenant
			exp, tel := startMetricsWithTelemetry(t, cfg)
			defer stop(t, exp)
			const tenants = 50
			for i := range tenants {
				require.NoError(t, exp.ConsumeMetrics(context.Background(), batch(fmt.Sprintf("t%d", i), 2)))
			}
			require.Eventually(t, func() bool {
				return telemetrytest.Int64(tel, "otelcol_exporter_tenant_sent_items", nil) == 2*tenants
			}, 5*time.Second, 10*time.Millisecond)

			sent, err := tel.GetMetric("otelcol_exporter_tenant_sent_items")
			require.NoError(t, err)
			points := sent.Data.(metricdata.Sum[int64]).DataPoints
			queued, err := tel.GetMetric("otelcol_exporter_tenant_queue_items")
			require.NoError(t, err)
			gauge := queued.Data.(metricdata.Gauge[int64]).DataPoints
			if perTenant {
				require.Len(t, points, tenants)
				require.Len(t, gauge, tenants, "one queue per tenant (metrics)")
				require.Equal(t, int64(2), telemetrytest.Int64(tel, "otelcol_exporter_tenant_sent_items", map[string]string{"tenant": "t7", "signal": "metrics"}))
				return
			}
			require.Len(t, points, 1)
			_, ok := points[0].Attributes.Value("tenant")
			require.False(t, ok, "no tenant attribute")
			require.Equal(t, int64(2*tenants), points[0].Value)
			require.Len(t, gauge, int(numSignals), "one series per signal")
		})
	}
}

// With queue.directory the queue log's own metrics say what each request
// waited for: every group write (its parts, how long it took with its
// sync), and the log's bytes on disk. Consumed one at a time, each request
// is a group of its own.
func TestQueueLogMetricsCountEveryGroupWrite(t *testing.T) {
	s := newStore(t)
	cfg := testConfig(s)
	cfg.Queue.Directory, cfg.Queue.Fsync = t.TempDir(), true
	exp, tel := startMetricsWithTelemetry(t, cfg)
	defer stop(t, exp)

	const requests = 6
	for i := range requests {
		require.NoError(t, exp.ConsumeMetrics(context.Background(), batch(fmt.Sprintf("t%d", i%2), 3)))
	}
	group, err := tel.GetMetric("otelcol_exporter_tenant_queue_log_group_parts")
	require.NoError(t, err)
	var groups, parts uint64
	for _, dp := range group.Data.(metricdata.Histogram[float64]).DataPoints {
		groups += dp.Count
		parts += uint64(dp.Sum)
	}
	require.GreaterOrEqual(t, groups, uint64(requests), "a group per request at least (compaction may write more)")
	require.GreaterOrEqual(t, parts, uint64(requests))

	write, err := tel.GetMetric("otelcol_exporter_tenant_queue_log_write_duration")
	require.NoError(t, err)
	dps := write.Data.(metricdata.Histogram[float64]).DataPoints
	require.Len(t, dps, 1, "every write ok")
	outcome, _ := dps[0].Attributes.Value("outcome")
	require.Equal(t, "ok", outcome.AsString())
	require.Equal(t, groups, dps[0].Count, "each group write timed")
	require.Positive(t, dps[0].Sum, "a write and its fdatasync take time")

	require.Positive(t, telemetrytest.Int64(tel, "otelcol_exporter_tenant_queue_log_bytes", nil), "the log's segment on disk")
}
