package nvmlreceiver

import (
	"context"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/otelcol-gpu/otelcol-gpu/receiver/nvmlreceiver/internal/metadata"
)

// withLibrary makes the factory open lib instead of the real NVML.
func withLibrary(t *testing.T, lib nvml.Interface) {
	t.Helper()
	saved := newLibrary
	newLibrary = func(*Config) nvml.Interface { return lib }
	t.Cleanup(func() { newLibrary = saved })
}

func TestFactoryMetricsAndLogsShareOneSession(t *testing.T) {
	f := newH100Fleet()
	withLibrary(t, f)
	cfg := testConfig()
	cfg.CollectionInterval = 50 * time.Millisecond
	cfg.CallTimeout = 40 * time.Millisecond
	set := receivertest.NewNopSettings(metadata.Type)
	set.ID = component.NewIDWithName(metadata.Type, "shared")
	metricsSink, logsSink := new(consumertest.MetricsSink), new(consumertest.LogsSink)

	mr, err := NewFactory().CreateMetrics(context.Background(), set, cfg, metricsSink)
	require.NoError(t, err)
	lr, err := NewFactory().CreateLogs(context.Background(), set, cfg, logsSink)
	require.NoError(t, err)
	host := componenttest.NewNopHost()
	require.NoError(t, mr.Start(context.Background(), host))
	require.NoError(t, lr.Start(context.Background(), host))

	require.Eventually(t, func() bool { return len(metricsSink.AllMetrics()) >= 2 }, 5*time.Second, 10*time.Millisecond)
	f.xids <- nvml.EventData{Device: f.Devices[6], EventType: nvml.EventTypeXidCriticalError, EventData: 79, GpuInstanceId: 0xFFFFFFFF, ComputeInstanceId: 0xFFFFFFFF}
	require.Eventually(t, func() bool { return logsSink.LogRecordCount() == 1 }, 5*time.Second, 10*time.Millisecond)

	require.NoError(t, lr.Shutdown(context.Background()))
	require.NoError(t, mr.Shutdown(context.Background()))
	require.Equal(t, int64(1), f.inits.Load(), "one NVML session for both signals")
	require.Len(t, f.EventSetCreateCalls(), 1, "one event set, one watcher")

	lrec := logsSink.AllLogs()[0].ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0)
	require.Equal(t, "nvidia.gpu.xid", lrec.EventName())
	require.Equal(t, "FATAL", lrec.SeverityText())
	require.Contains(t, lrec.Body().Str(), "XID 79 on nvidia6")
	code, _ := lrec.Attributes().Get("nvidia.xid.code")
	require.Equal(t, int64(79), code.Int())
	id, _ := lrec.Attributes().Get("hw.id")
	require.Equal(t, fixedUUID(6), id.Str())
	_, hasMIG := lrec.Attributes().Get("nvidia.mig.gpu_instance_id")
	require.False(t, hasMIG)
}

func TestFactoryDevicesFilter(t *testing.T) {
	f := newH100Fleet()
	cfg := testConfig()
	cfg.Devices = []string{"2", fixedUUID(5)}
	h := startHarness(t, f, cfg)
	md := h.scrape(t)
	infos := points(md, "nvidia.gpu.info", nil)
	require.Len(t, infos, 2)
	require.Equal(t, "nvidia2", mustAttr(t, infos[0], "hw.name"))
	require.Equal(t, "nvidia5", mustAttr(t, infos[1], "hw.name"))
}
