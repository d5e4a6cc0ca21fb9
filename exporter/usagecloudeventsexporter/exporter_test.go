package usagecloudeventsexporter

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otelcol-gpu/otelcol-gpu/exporter/usagecloudeventsexporter/internal/metadata"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/storagetest"
	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

func TestEventsAreOpenMeterCloudEvents(t *testing.T) {
	b := newBilling()
	srv := httptest.NewServer(b)
	defer srv.Close()
	h := newHarness(t, srv.URL+"/api/v1/events", t.TempDir(), nil)
	adj := rec("acme", 0, 40)
	adj.ID, adj.Revision, adj.Total = usage.RecordID("acme", usage.DataPoints, hour, 2), 2, 1040
	big := rec("globex", 0, 1_000_000_000_000_000)
	require.NoError(t, h.e.push(t.Context(), metrics(adj, big)))

	require.Equal(t, 1, b.requestCount())
	assert.Equal(t, []string{ContentType}, b.ctypes)
	raw, err := json.Marshal(b.requests[0][0])
	require.NoError(t, err)
	assert.JSONEq(t, `{"specversion":"1.0","id":"acme:data_points:2026-12-01T10Z:r2","source":"otelcol-gpu",
		"type":"dev.otelcol-gpu.usage.data_points","subject":"acme","time":"2026-12-01T10:00:00Z","datacontenttype":"application/json",
		"data":{"tenant":"acme","meter":"data_points","hour":"2026-12-01T10Z","value":40,"total":1040,"revision":2,"unit":"{data_point}"}}`, string(raw))
	assert.Equal(t, json.Number("1000000000000000"), b.requests[0][1].Data.Value, "an integer, without a decimal point or exponent")
	assert.Equal(t, int64(2), h.count("otelcol_exporter_usage_events_delivered", nil))
}

// Every meter's event type is the prefix and the meter, and every value is
// written as an integer.
func TestEveryMeterIsANamespacedTypeWithIntegerValues(t *testing.T) {
	var recs []usage.Record
	for i, m := range usage.AllMeters {
		recs = append(recs, usage.Record{ID: usage.RecordID("acme", m, hour, 0), Tenant: "acme", Meter: m, Hour: hour, Value: int64(i * 1_000_000), Total: 123456789012})
	}
	for i, ev := range Events(recs, defaultSource, defaultTypePrefix) {
		assert.Equal(t, defaultTypePrefix+string(usage.AllMeters[i]), ev.Type)
		enc, err := encode(ev)
		require.NoError(t, err)
		assert.Contains(t, string(enc.body), `"total":123456789012,`)
		assert.NotContains(t, string(enc.body), "e+")
	}
}

func TestBatchesAreBoundedByEventCount(t *testing.T) {
	b := newBilling()
	srv := httptest.NewServer(b)
	defer srv.Close()
	h := newHarness(t, srv.URL, t.TempDir(), func(c *Config) { c.MaxBatchEvents = 3 })
	require.NoError(t, h.e.push(t.Context(), metrics(fleet(7)...)))
	var sizes []int
	for _, r := range b.requests {
		sizes = append(sizes, len(r))
	}
	assert.Equal(t, []int{3, 3, 1}, sizes)
	assert.Len(t, b.takenOnce(t), 7)
}

func TestBatchesAreBoundedByBytes(t *testing.T) {
	evs := encodeAllT(t, fleet(5))
	one := len(evs[0].body)
	// Room for two events and their array, not three.
	limit := 2 + 2*one + 1
	got := batches(evs, 500, limit)
	require.Len(t, got, 3)
	for _, b := range got {
		assert.LessOrEqual(t, len(body(b)), limit)
		var arr []Event
		require.NoError(t, json.Unmarshal(body(b), &arr), "a batch's body is a JSON array")
	}
	assert.Len(t, got[0], 2)
	assert.Len(t, got[2], 1)

	// An event larger than the limit goes alone.
	huge := rec("acme", 0, 1)
	huge.Tenant = strings.Repeat("a", 3*one)
	mixed := encodeAllT(t, []usage.Record{rec("a", 0, 1), huge, rec("b", 0, 1)})
	got = batches(mixed, 500, one+10)
	require.Len(t, got, 3)
	assert.Equal(t, huge.ID, got[1][0].id)

	b := newBilling()
	srv := httptest.NewServer(b)
	defer srv.Close()
	h := newHarness(t, srv.URL, t.TempDir(), func(c *Config) { c.MaxBatchBytes = limit })
	require.NoError(t, h.e.push(t.Context(), metrics(fleet(5)...)))
	assert.Equal(t, 3, b.requestCount())
	assert.Len(t, b.takenOnce(t), 5)
}

func encodeAllT(t *testing.T, recs []usage.Record) []encoded {
	t.Helper()
	var out []encoded
	for _, ev := range Events(recs, defaultSource, defaultTypePrefix) {
		enc, err := encode(ev)
		require.NoError(t, err)
		out = append(out, enc)
	}
	return out
}

func TestARefusedEventIsDeadLetteredAndEveryOtherArrives(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			b := newBilling()
			srv := httptest.NewServer(b)
			defer srv.Close()
			dir := t.TempDir()
			h := newHarness(t, srv.URL, dir, nil)
			recs := fleet(20)
			bad := recs[13].ID
			b.refuseID[bad], b.refuseStatus = true, status

			require.NoError(t, h.e.push(t.Context(), metrics(recs...)))
			taken := b.takenOnce(t)
			assert.Len(t, taken, 19)
			assert.NotContains(t, taken, bad)

			lines := deadLetters(t, dir)
			require.Len(t, lines, 1)
			assert.Equal(t, reasonRefused, lines[0].Reason)
			assert.Equal(t, status, lines[0].Status)
			assert.Contains(t, lines[0].Answer, "invalid event")
			assert.Equal(t, bad, eventOf(t, lines[0].Event).ID)
			_, err := time.Parse(time.RFC3339Nano, lines[0].Time)
			require.NoError(t, err)
			fi, err := os.Stat(filepath.Join(dir, "dead-letter.jsonl"))
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

			assert.Equal(t, int64(1), h.count("otelcol_exporter_usage_dead_letter_records", map[string]string{"reason": reasonRefused}))
			assert.Equal(t, int64(19), h.count("otelcol_exporter_usage_events_delivered", nil))
			// 20 → 10 → 5 → 3 → 2 → 1: five cuts on the way to the bad event.
			assert.Equal(t, int64(5), h.count("otelcol_exporter_usage_batches_bisected", nil))

			// The same records again: nothing is sent, nothing written twice.
			n := b.requestCount()
			require.NoError(t, h.e.push(t.Context(), metrics(recs...)))
			assert.Equal(t, n, b.requestCount())
			assert.Len(t, deadLetters(t, dir), 1)
		})
	}
}

func TestTooLargeBatchesAreBisectedUntilTheyFit(t *testing.T) {
	b := newBilling()
	b.maxEvents = 4
	srv := httptest.NewServer(b)
	defer srv.Close()
	dir := t.TempDir()
	h := newHarness(t, srv.URL, dir, nil)
	require.NoError(t, h.e.push(t.Context(), metrics(fleet(16)...)))
	assert.Len(t, b.takenOnce(t), 16)
	// 16 is cut into 8s, and each 8 into 4s: three cuts.
	assert.Equal(t, int64(3), h.count("otelcol_exporter_usage_batches_bisected", nil))
	assert.Equal(t, int64(0), h.count("otelcol_exporter_usage_dead_letter_records", nil))
	_, err := os.Stat(filepath.Join(dir, "dead-letter.jsonl"))
	require.NoError(t, err, "opened at start")
	assert.Empty(t, deadLetters(t, dir))
}

func TestAnIDBoundToAnotherValueIsDeadLetteredNeverSent(t *testing.T) {
	b := newBilling()
	srv := httptest.NewServer(b)
	defer srv.Close()
	dir := t.TempDir()
	h := newHarness(t, srv.URL, dir, nil)
	first := rec("acme", 0, 10)
	require.NoError(t, h.e.push(t.Context(), metrics(first)))
	sent := encodeAllT(t, []usage.Record{first})[0]

	// After delivery: the same id with another value.
	other := rec("acme", 0, 11)
	require.NoError(t, h.e.push(t.Context(), metrics(other)))
	require.NoError(t, h.e.push(t.Context(), metrics(other)), "a second copy is not written again")
	assert.Equal(t, json.Number("10"), b.takenOnce(t)[first.ID].Data.Value)
	lines := deadLetters(t, dir)
	require.Len(t, lines, 1)
	assert.Equal(t, reasonConflict, lines[0].Reason)
	assert.Zero(t, lines[0].Status)
	assert.Equal(t, json.Number("11"), eventOf(t, lines[0].Event).Data.Value)
	require.NotNil(t, lines[0].Settled)
	assert.Equal(t, hex.EncodeToString(sent.digest[:]), lines[0].Settled.SHA256)
	assert.Equal(t, stateDelivered, lines[0].Settled.State)

	// Within one push: the first value goes, a later other value does not.
	a, c := rec("globex", 0, 5), rec("globex", 0, 6)
	require.NoError(t, h.e.push(t.Context(), usage.Metrics([]usage.Record{a, c, c, a}, "test")))
	assert.Equal(t, json.Number("5"), b.takenOnce(t)[a.ID].Data.Value)
	lines = deadLetters(t, dir)
	require.Len(t, lines, 2)
	assert.Equal(t, a.ID, eventOf(t, lines[1].Event).ID)
	assert.Equal(t, json.Number("6"), eventOf(t, lines[1].Event).Data.Value)
	assert.Equal(t, stateQueued, lines[1].Settled.State)
	assert.Equal(t, int64(2), h.count("otelcol_exporter_usage_dead_letter_records", map[string]string{"reason": reasonConflict}))
}

func TestUnavailableIsRetriedAndNothingIsSentTwice(t *testing.T) {
	b := newBilling()
	srv := httptest.NewServer(b)
	defer srv.Close()
	h := newHarness(t, srv.URL, t.TempDir(), func(c *Config) { c.MaxBatchEvents = 2 })
	md := metrics(fleet(6)...)
	// The second request fails: the first batch is taken.
	b.set(func(b *billing) { b.fail, b.retryAfter = []int{0, http.StatusServiceUnavailable}, "7" })

	err := h.e.push(t.Context(), md)
	require.Error(t, err)
	assert.False(t, consumererror.IsPermanent(err))
	assert.Contains(t, err.Error(), "503")
	assert.Contains(t, err.Error(), "7s", "Retry-After is honoured")
	assert.Len(t, b.takenOnce(t), 2)

	require.NoError(t, h.e.push(t.Context(), md), "the retry")
	assert.Len(t, b.takenOnce(t), 6, "each id taken once")
	assert.Equal(t, int64(6), h.count("otelcol_exporter_usage_events_delivered", nil))
	assert.Equal(t, 4, b.requestCount(), "the retry sends only the two batches not taken")
}

func TestAnswersThatMayPassAreRetried(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusTooManyRequests,
		http.StatusUnauthorized, http.StatusForbidden} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			b := newBilling()
			b.fail = []int{status}
			srv := httptest.NewServer(b)
			defer srv.Close()
			dir := t.TempDir()
			h := newHarness(t, srv.URL, dir, nil)
			err := h.e.push(t.Context(), metrics(fleet(3)...))
			require.Error(t, err)
			assert.False(t, consumererror.IsPermanent(err))
			assert.Contains(t, err.Error(), "3 events")
			assert.Empty(t, deadLetters(t, dir))
			require.NoError(t, h.e.push(t.Context(), metrics(fleet(3)...)))
			assert.Len(t, b.takenOnce(t), 3)
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(newBilling())
		url := srv.URL
		srv.Close()
		h := newHarness(t, url, t.TempDir(), nil)
		err := h.e.push(t.Context(), metrics(fleet(3)...))
		require.Error(t, err)
		assert.False(t, consumererror.IsPermanent(err))
	})
}

func TestARestartDoesNotResendDeliveredIDs(t *testing.T) {
	b := newBilling()
	srv := httptest.NewServer(b)
	defer srv.Close()
	dir := t.TempDir()
	recs := fleet(4)
	h := newHarness(t, srv.URL, dir, nil)
	require.NoError(t, h.e.push(t.Context(), metrics(recs[:3]...)))
	h.stop()

	h = newHarness(t, srv.URL, dir, nil)
	changed := recs[0]
	changed.Value++
	require.NoError(t, h.e.push(t.Context(), metrics(append(recs, changed)...)))
	taken := b.takenOnce(t)
	assert.Len(t, taken, 4)
	assert.Equal(t, 2, b.requestCount(), "the second exporter sent only the new record")
	lines := deadLetters(t, dir)
	require.Len(t, lines, 1, "the changed value is a conflict")
	assert.Equal(t, reasonConflict, lines[0].Reason)
}

func TestSettledIDsAreForgottenAfterKeep(t *testing.T) {
	b := newBilling()
	srv := httptest.NewServer(b)
	defer srv.Close()
	h := newHarness(t, srv.URL, t.TempDir(), nil)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	h.e.memory.now = func() time.Time { return now }
	a, c := rec("acme", 0, 1), rec("globex", 0, 1)
	require.NoError(t, h.e.push(t.Context(), metrics(a)))
	require.NoError(t, h.e.push(t.Context(), metrics(a)))
	assert.Equal(t, 1, b.requestCount(), "remembered")

	now = now.Add(h.e.cfg.Delivered.Keep + 2*time.Hour)
	require.NoError(t, h.e.push(t.Context(), metrics(c)), "a write past keep prunes")
	require.NoError(t, h.e.push(t.Context(), metrics(a)))
	assert.Equal(t, 3, b.requestCount(), "forgotten after delivered.keep")
}

func TestADeadLetterWriteFailureIsRetried(t *testing.T) {
	b := newBilling()
	srv := httptest.NewServer(b)
	defer srv.Close()
	dir := t.TempDir()
	h := newHarness(t, srv.URL, dir, nil)
	recs := fleet(2)
	b.refuseID[recs[0].ID] = true
	require.NoError(t, h.e.dead.f.Close())
	err := h.e.push(t.Context(), metrics(recs...))
	require.Error(t, err)
	assert.False(t, consumererror.IsPermanent(err))
	assert.Contains(t, err.Error(), "dead-letter")

	// The file is back: the retry writes the line.
	dead, err := openDeadLetter(h.e.cfg.DeadLetter.Path)
	require.NoError(t, err)
	h.e.dead = dead
	require.NoError(t, h.e.push(t.Context(), metrics(recs...)))
	require.Len(t, deadLetters(t, dir), 1)
	assert.Len(t, b.takenOnce(t), 1)
}

func TestNotUsageRecordsAreRefused(t *testing.T) {
	b := newBilling()
	srv := httptest.NewServer(b)
	defer srv.Close()
	h := newHarness(t, srv.URL, t.TempDir(), nil)
	md := pmetric.NewMetrics()
	md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty().SetName("hw.power")
	err := h.e.push(t.Context(), md)
	require.Error(t, err)
	assert.True(t, consumererror.IsPermanent(err))
	assert.Contains(t, err.Error(), "tenant.id")
	assert.Zero(t, b.requestCount())
}

func TestFactoryBuildsAQueuedExporter(t *testing.T) {
	dir := t.TempDir()
	cfg := createDefaultConfig().(*Config)
	cfg.ClientConfig.Endpoint = "http://127.0.0.1:1/api/v1/events"
	cfg.DeadLetter.Path = filepath.Join(dir, "usage", "dead-letter.jsonl")
	id := component.MustNewIDWithName("file_storage", "usage")
	cfg.Delivered.Storage = &id
	require.NoError(t, cfg.Validate())
	ext := storagetest.Start(t, dir)
	defer func() { require.NoError(t, ext.Shutdown(context.Background())) }()
	exp, err := NewFactory().CreateMetrics(t.Context(), exportertest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(t.Context(), storagetest.NewHost(map[component.ID]component.Component{id: ext})))
	require.NoError(t, exp.Shutdown(context.Background()))
	fi, err := os.Stat(cfg.DeadLetter.Path)
	require.NoError(t, err, "the dead-letter file and its directory are made at start")
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}
