package tenantusagereceiver

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/goleak"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/storagetest"
	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
	"github.com/otelcol-gpu/otelcol-gpu/receiver/tenantusagereceiver/internal/metadata"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeStore computes records from values it holds: tenant -> meter ->
// value, the same for every hour unless set for one (late data). A tenant
// in failing is deferred.
type fakeStore struct {
	mu      sync.Mutex
	base    map[string]map[usage.Meter]int64
	extra   map[time.Time]map[string]map[usage.Meter]int64
	err     error
	failing map[string]bool
	calls   []time.Time
}

func (f *fakeStore) Compute(_ context.Context, hour time.Time) (*usage.Hour, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, hour)
	if f.err != nil {
		return nil, f.err
	}
	return f.hour(hour, nil), nil
}

// Recheck computes in full: the fake has no cost to save.
func (f *fakeStore) Recheck(ctx context.Context, hour time.Time, _ map[string]map[usage.Meter]int64) (*usage.Hour, error) {
	return f.Compute(ctx, hour)
}

func (f *fakeStore) ComputeTenants(_ context.Context, hour time.Time, tenants []string) (*usage.Hour, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, hour)
	if f.err != nil {
		return nil, f.err
	}
	only := map[string]bool{}
	for _, t := range tenants {
		only[t] = true
	}
	return f.hour(hour, only), nil
}

func (f *fakeStore) hour(hour time.Time, only map[string]bool) *usage.Hour {
	out := &usage.Hour{Hour: hour, Deferred: map[string]error{}}
	for tenant, ms := range f.base {
		if only != nil && !only[tenant] {
			continue
		}
		if f.failing[tenant] {
			out.Deferred[tenant] = errors.New("422: too many series")
			continue
		}
		for m, v := range ms {
			v += f.extra[hour][tenant][m]
			out.Records = append(out.Records, usage.Record{ID: usage.RecordID(tenant, m, hour, 0), Tenant: tenant, Meter: m, Hour: hour, Value: v, Total: v})
		}
	}
	usage.Sort(out.Records)
	return out
}

func (f *fakeStore) late(hour time.Time, tenant string, m usage.Meter, v int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.extra == nil {
		f.extra = map[time.Time]map[string]map[usage.Meter]int64{}
	}
	if f.extra[hour] == nil {
		f.extra[hour] = map[string]map[usage.Meter]int64{}
	}
	if f.extra[hour][tenant] == nil {
		f.extra[hour][tenant] = map[usage.Meter]int64{}
	}
	f.extra[hour][tenant][m] += v
}

func (f *fakeStore) fail(tenant string, failing bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing == nil {
		f.failing = map[string]bool{}
	}
	f.failing[tenant] = failing
}

var storageID = component.MustNewIDWithName("file_storage", "usage")

// clock is the receivers' now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// run is one life of the receiver: started on storage in dir, cycles
// driven by the test (the interval is long), shut down at the end.
type run struct {
	r    *usageReceiver
	ext  extension.Extension
	sink *consumertest.MetricsSink
}

func start(t *testing.T, dir string, src computer, clk *clock, next consumer.Metrics, mutate func(*Config)) *run {
	t.Helper()
	cfg := createDefaultConfig().(*Config)
	cfg.Storage = &storageID
	cfg.Store.Verify = false // src is the test's
	cfg.Interval = time.Hour // cycles are driven by the test
	cfg.Backfill = 3 * time.Hour
	if mutate != nil {
		mutate(cfg)
	}
	require.NoError(t, cfg.Validate())
	sink := &consumertest.MetricsSink{}
	if next == nil {
		next = sink
	}
	set := receivertest.NewNopSettings(metadata.Type)
	set.ID = component.NewID(metadata.Type) // the same id across restarts, as in a config
	r, err := newReceiver(cfg, set, next)
	require.NoError(t, err)
	r.now = clk.now
	r.src = src
	r.manual = true
	ext := storagetest.Start(t, dir)
	require.NoError(t, r.Start(context.Background(), storagetest.NewHost(map[component.ID]component.Component{storageID: ext})))
	rn := &run{r: r, ext: ext, sink: sink}
	r.cycle(context.Background()) // what the loop does first
	return rn
}

func (rn *run) stop(t *testing.T) {
	require.NoError(t, rn.r.Shutdown(context.Background()))
	require.NoError(t, rn.ext.Shutdown(context.Background()))
}

func recordsOf(t *testing.T, mds []pmetric.Metrics) []usage.Record {
	var out []usage.Record
	for _, md := range mds {
		recs, err := usage.Records(md)
		require.NoError(t, err)
		out = append(out, recs...)
	}
	usage.Sort(out)
	return out
}

func hourAt(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func baseStore() *fakeStore {
	return &fakeStore{base: map[string]map[usage.Meter]int64{
		"acme":   {usage.DataPoints: 100, usage.GPUMinutes: 480},
		"globex": {usage.DataPoints: 50, usage.GPUMinutes: 60},
	}}
}

func TestHoursCloseInOrderAfterTheGracePeriod(t *testing.T) {
	clk := &clock{t: hourAt("2026-12-01T10:05:00Z")}
	src := baseStore()
	rn := start(t, t.TempDir(), src, clk, nil, nil)
	defer rn.stop(t)
	// The first cycle: backfill 3h from 10:05 starts at
	// 07Z; 07Z closed at 08:10 and 08Z at 09:10; 09Z closes at 10:10.
	require.Len(t, rn.sink.AllMetrics(), 2)
	recs := recordsOf(t, rn.sink.AllMetrics())
	require.Len(t, recs, 8)
	assert.Equal(t, "acme:data_points:2026-12-01T07Z", recs[0].ID)
	assert.Equal(t, int64(100), recs[0].Value)
	assert.Equal(t, "globex:gpu_minutes:2026-12-01T08Z", recs[7].ID)
	clk.set(hourAt("2026-12-01T10:09:59Z"))
	rn.r.cycle(context.Background())
	assert.Len(t, rn.sink.AllMetrics(), 2, "09Z is not closed before its grace period ends")
	clk.set(hourAt("2026-12-01T10:10:00Z"))
	rn.r.cycle(context.Background())
	require.Len(t, rn.sink.AllMetrics(), 3)
	assert.Equal(t, hourAt("2026-12-01T09:00:00Z"), recordsOf(t, rn.sink.AllMetrics()[2:])[0].Hour)

	// The store copy: one resource per tenant, delta sums over the hour
	// valued at the hour's total, stamped at the hour's end.
	md := rn.sink.AllMetrics()[2]
	require.Equal(t, 2, md.ResourceMetrics().Len())
	res, _ := md.ResourceMetrics().At(0).Resource().Attributes().Get("tenant.id")
	assert.Equal(t, "acme", res.Str())
	m := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0)
	assert.Equal(t, "usage.data_points", m.Name())
	assert.Equal(t, pmetric.AggregationTemporalityDelta, m.Sum().AggregationTemporality())
	dp := m.Sum().DataPoints().At(0)
	assert.Equal(t, hourAt("2026-12-01T09:00:00Z"), dp.StartTimestamp().AsTime().UTC())
	assert.Equal(t, hourAt("2026-12-01T10:00:00Z"), dp.Timestamp().AsTime().UTC())
}

func TestRestartNeitherSkipsNorRepeats(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: hourAt("2026-12-01T10:05:00Z")}
	src := baseStore()
	first := start(t, dir, src, clk, nil, nil)
	require.Len(t, first.sink.AllMetrics(), 2)
	first.stop(t)

	// Down for three hours: the restart closes exactly the hours it missed.
	clk.set(hourAt("2026-12-01T13:30:00Z"))
	second := start(t, dir, src, clk, nil, nil)
	defer second.stop(t)
	require.Len(t, second.sink.AllMetrics(), 4)
	got := recordsOf(t, second.sink.AllMetrics())
	hours := map[time.Time]bool{}
	for _, r := range got {
		if r.Revision == 0 {
			hours[r.Hour] = true
		}
	}
	assert.Equal(t, map[time.Time]bool{
		hourAt("2026-12-01T09:00:00Z"): true, hourAt("2026-12-01T10:00:00Z"): true, hourAt("2026-12-01T11:00:00Z"): true,
		hourAt("2026-12-01T12:00:00Z"): true,
	}, hours, "07Z and 08Z were done before the restart; 09Z to 12Z (closed at 13:10) after it")
}

func TestLateDataBecomesAdjustmentRecords(t *testing.T) {
	clk := &clock{t: hourAt("2026-12-01T08:10:00Z")}
	src := baseStore()
	h := hourAt("2026-12-01T07:00:00Z")
	rn := start(t, t.TempDir(), src, clk, nil, func(c *Config) { c.Backfill = time.Hour + 10*time.Minute })
	defer rn.stop(t)
	require.Len(t, rn.sink.AllMetrics(), 1)

	// An agent's queue delivers 40 more points of 07Z after the hour closed.
	src.late(h, "acme", usage.DataPoints, 40)
	clk.set(hourAt("2026-12-01T09:09:59Z"))
	rn.r.cycle(context.Background())
	require.Len(t, rn.sink.AllMetrics(), 1, "the first recheck is an hour after the close")
	clk.set(hourAt("2026-12-01T09:10:00Z"))
	rn.r.cycle(context.Background())
	// 08Z closed too (09:10); its records and 07Z's adjustment.
	var adj []usage.Record
	for _, r := range recordsOf(t, rn.sink.AllMetrics()) {
		if r.Revision > 0 {
			adj = append(adj, r)
		}
	}
	require.Equal(t, []usage.Record{{
		ID: "acme:data_points:2026-12-01T07Z:r1", Tenant: "acme", Meter: usage.DataPoints, Hour: h,
		Revision: 1, Value: 40, Total: 140,
	}}, adj)

	// More late data, seen at the 6 h recheck: revision 2, valued at the
	// change since revision 1.
	src.late(h, "acme", usage.DataPoints, 5)
	clk.set(hourAt("2026-12-01T14:10:00Z"))
	n := len(rn.sink.AllMetrics())
	rn.r.cycle(context.Background())
	var adj2 []usage.Record
	for _, r := range recordsOf(t, rn.sink.AllMetrics()[n:]) {
		if r.Revision > 0 && r.Hour.Equal(h) {
			adj2 = append(adj2, r)
		}
	}
	require.Len(t, adj2, 1)
	assert.Equal(t, "acme:data_points:2026-12-01T07Z:r2", adj2[0].ID)
	assert.Equal(t, int64(5), adj2[0].Value)
	assert.Equal(t, int64(145), adj2[0].Total)

	// After the last recheck (24 h) the hour is done: its state is gone.
	clk.set(hourAt("2026-12-02T08:10:00Z"))
	rn.r.cycle(context.Background())
	_, pending := rn.r.pending[h]
	assert.False(t, pending)
	b, err := rn.r.client.Get(context.Background(), hourKey(h))
	require.NoError(t, err)
	assert.Nil(t, b)
}

func TestARefusingPipelineGetsTheLedgersRecordsLater(t *testing.T) {
	clk := &clock{t: hourAt("2026-12-01T08:10:00Z")}
	src := baseStore()
	var refuse sync.Mutex
	refusing := true
	sink := &consumertest.MetricsSink{}
	next, err := consumer.NewMetrics(func(ctx context.Context, md pmetric.Metrics) error {
		refuse.Lock()
		defer refuse.Unlock()
		if refusing {
			return errors.New("queue is full")
		}
		return sink.ConsumeMetrics(ctx, md)
	})
	require.NoError(t, err)
	dir := t.TempDir()
	rn := start(t, dir, src, clk, next, func(c *Config) { c.Backfill = time.Hour + 10*time.Minute })
	require.Len(t, src.calls, 1)
	c, ok, err := loadCursor(context.Background(), rn.r.client)
	require.NoError(t, err)
	require.True(t, ok, "the hour is in the ledger: the cursor moved")
	assert.Equal(t, hourAt("2026-12-01T08:00:00Z"), c)
	assert.Equal(t, outbox{Head: 0, Tail: 1}, rn.r.out, "its records wait in the outbox")

	// Late data arrives while the pipeline refuses, and the job restarts:
	// what it hands over is what it wrote, not a new computation.
	src.late(hourAt("2026-12-01T07:00:00Z"), "acme", usage.DataPoints, 40)
	rn.stop(t)
	refuse.Lock()
	refusing = false
	refuse.Unlock()
	rn = start(t, dir, src, clk, next, func(c *Config) { c.Backfill = time.Hour + 10*time.Minute })
	defer rn.stop(t)
	recs := recordsOf(t, sink.AllMetrics())
	require.Len(t, recs, 4)
	assert.Equal(t, "acme:data_points:2026-12-01T07Z", recs[0].ID, "the same records, the same ids")
	assert.Equal(t, int64(100), recs[0].Value, "the value written to the ledger")
	assert.Len(t, src.calls, 1, "not computed again")
	assert.Equal(t, outbox{Head: 1, Tail: 1}, rn.r.out)
}

func TestAStoreFailureIsRetriedWithBackoff(t *testing.T) {
	clk := &clock{t: hourAt("2026-12-01T08:10:00Z")}
	src := baseStore()
	src.err = errors.New("store unreachable")
	rn := start(t, t.TempDir(), src, clk, nil, func(c *Config) { c.Backfill = time.Hour + 10*time.Minute; c.Interval = time.Minute })
	defer rn.stop(t)
	require.Len(t, src.calls, 1)
	rn.r.cycle(context.Background())
	src.mu.Lock()
	assert.Len(t, src.calls, 1, "not asked again before the backoff ends")
	src.err = nil
	src.mu.Unlock()
	clk.set(hourAt("2026-12-01T08:11:00Z"))
	rn.r.cycle(context.Background())
	assert.Len(t, rn.sink.AllMetrics(), 1)
}

func TestConfigErrorsNameTheField(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Store.ClientConfig.Endpoint = "localhost:8428"
	cfg.Store.TenantLabel = "tenant-id"
	cfg.Events.Endpoint = "http://vl:9428/?x=1"
	cfg.Interval = 0
	cfg.GracePeriod = -time.Second
	cfg.Rechecks = []time.Duration{time.Hour, time.Hour}
	cfg.Concurrency = 0
	err := cfg.Validate()
	require.Error(t, err)
	for _, want := range []string{"store.endpoint", "store.tenant_label", "events.endpoint", "interval", "grace_period", "rechecks[1]", "storage is required", "concurrency"} {
		assert.Contains(t, err.Error(), want)
	}
	def := createDefaultConfig().(*Config)
	def.Storage = &storageID
	assert.NoError(t, def.Validate())
}

func TestStartRefusesAMissingStorage(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Storage = &storageID
	cfg.Store.Verify = false
	r, err := newReceiver(cfg, receivertest.NewNopSettings(metadata.Type), consumertest.NewNop())
	require.NoError(t, err)
	err = r.Start(context.Background(), storagetest.NewHost(nil))
	require.ErrorContains(t, err, `storage "file_storage/usage" is not an extension`)
}
