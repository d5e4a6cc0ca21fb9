package usagecloudeventsexporter

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/goleak"

	"github.com/otelcol-gpu/otelcol-gpu/exporter/usagecloudeventsexporter/internal/metadata"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/storagetest"
	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var hour = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func records() []usage.Record {
	return []usage.Record{
		{ID: usage.RecordID("acme", usage.GPUHours, hour, 0), Tenant: "acme", Meter: usage.GPUHours, Hour: hour, Value: 7.5, Total: 7.5},
		{ID: usage.RecordID("acme", usage.DataPoints, hour, 2), Tenant: "acme", Meter: usage.DataPoints, Hour: hour, Revision: 2, Value: 40, Total: 1040},
	}
}

type billing struct {
	mu     sync.Mutex
	status int
	bodies [][]Event
	ctypes []string
}

func (b *billing) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.status != 0 && b.status != http.StatusOK {
		w.WriteHeader(b.status)
		return
	}
	var evs []Event
	if err := json.Unmarshal(body, &evs); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	b.bodies = append(b.bodies, evs)
	b.ctypes = append(b.ctypes, r.Header.Get("Content-Type"))
}

// newExporter is the exporter's push path (no queue: each call is one
// attempt), with its delivered-id memory in a real file_storage in dir
// when dir is set.
func newExporter(t *testing.T, url, dir string) *eventsExporter {
	t.Helper()
	cfg := createDefaultConfig().(*Config)
	cfg.ClientConfig.Endpoint = url
	h := storagetest.NewHost(nil)
	if dir != "" {
		id := component.MustNewIDWithName("file_storage", "usage")
		ext := storagetest.Start(t, dir)
		t.Cleanup(func() { require.NoError(t, ext.Shutdown(context.Background())) })
		h.Ext[id] = ext
		cfg.Delivered.Storage = &id
	}
	require.NoError(t, cfg.Validate())
	set := exportertest.NewNopSettings(metadata.Type)
	set.ID = component.NewID(metadata.Type)
	e := &eventsExporter{cfg: cfg, set: set}
	require.NoError(t, e.start(context.Background(), h))
	t.Cleanup(func() { require.NoError(t, e.shutdown(context.Background())) })
	return e
}

func TestEventsAreOpenMeterCloudEvents(t *testing.T) {
	b := &billing{}
	srv := httptest.NewServer(b)
	defer srv.Close()
	e := newExporter(t, srv.URL+"/api/v1/events", "")
	require.NoError(t, e.push(context.Background(), usage.Metrics(records(), "test")))
	require.Len(t, b.bodies, 1)
	assert.Equal(t, "application/cloudevents-batch+json", b.ctypes[0])
	raw, err := json.Marshal(b.bodies[0][0])
	require.NoError(t, err)
	// Sorted by meter: data_points (the adjustment) first.
	assert.JSONEq(t, `{"specversion":"1.0","id":"acme:data_points:2026-12-01T10Z:r2","source":"otelcol-gpu","type":"data_points",
		"subject":"acme","time":"2026-12-01T10:00:00Z","datacontenttype":"application/json",
		"data":{"tenant":"acme","meter":"data_points","hour":"2026-12-01T10Z","value":40,"total":1040,"revision":2,"unit":"{data_point}"}}`, string(raw))
	assert.Equal(t, "acme:gpu_hours:2026-12-01T10Z", b.bodies[0][1].ID)
	assert.Equal(t, json.Number("7.5"), b.bodies[0][1].Data.Value)
}

func TestRefusalsAreRetriedOrDroppedByStatus(t *testing.T) {
	for status, permanent := range map[int]bool{
		http.StatusServiceUnavailable: false, http.StatusTooManyRequests: false, http.StatusUnauthorized: false,
		http.StatusInternalServerError: false, http.StatusBadRequest: true, http.StatusUnprocessableEntity: true,
	} {
		b := &billing{status: status}
		srv := httptest.NewServer(b)
		e := newExporter(t, srv.URL, "")
		err := e.push(context.Background(), usage.Metrics(records(), "test"))
		require.Error(t, err, "status %d", status)
		assert.Equal(t, permanent, consumererror.IsPermanent(err), "status %d: %v", status, err)
		assert.Contains(t, err.Error(), "2 records")
		srv.Close()
	}
}

func TestARecordQueuedTwiceIsDeliveredOnce(t *testing.T) {
	b := &billing{}
	srv := httptest.NewServer(b)
	defer srv.Close()
	dir := t.TempDir()
	e := newExporter(t, srv.URL, dir)
	md := usage.Metrics(records(), "test")
	require.NoError(t, e.push(context.Background(), md))
	require.NoError(t, e.push(context.Background(), md), "the second copy is taken and not sent")
	require.Len(t, b.bodies, 1)

	// A failed attempt remembers nothing: the retry sends everything.
	b.mu.Lock()
	b.status = http.StatusServiceUnavailable
	b.mu.Unlock()
	other := []usage.Record{{ID: usage.RecordID("globex", usage.VMs, hour, 0), Tenant: "globex", Meter: usage.VMs, Hour: hour, Value: 3, Total: 3}}
	require.Error(t, e.push(context.Background(), usage.Metrics(other, "test")))
	b.mu.Lock()
	b.status = 0
	b.mu.Unlock()
	require.NoError(t, e.push(context.Background(), usage.Metrics(append(other, records()...), "test")))
	require.Len(t, b.bodies, 2)
	require.Len(t, b.bodies[1], 1, "only the record not delivered before")
	assert.Equal(t, "globex:vms:2026-12-01T10Z", b.bodies[1][0].ID)
}

func TestNotUsageRecordsAreRefused(t *testing.T) {
	b := &billing{}
	srv := httptest.NewServer(b)
	defer srv.Close()
	e := newExporter(t, srv.URL, "")
	md := pmetric.NewMetrics()
	md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty().SetName("hw.power")
	err := e.push(context.Background(), md)
	require.Error(t, err)
	assert.True(t, consumererror.IsPermanent(err))
	assert.Contains(t, err.Error(), "tenant.id")
	assert.Empty(t, b.bodies)
}

func TestConfigErrors(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Source = ""
	err := cfg.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "endpoint is required")
	assert.Contains(t, err.Error(), "source")
	cfg.ClientConfig.Endpoint = "openmeter:8888"
	assert.ErrorContains(t, cfg.Validate(), "not an http(s) URL")
}

func TestFactoryBuildsAQueuedExporter(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.ClientConfig.Endpoint = "http://127.0.0.1:1/api/v1/events"
	exp, err := NewFactory().CreateMetrics(context.Background(), exportertest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, exp.Shutdown(context.Background()))
}
