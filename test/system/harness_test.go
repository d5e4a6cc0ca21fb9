//go:build system

// Package system runs the real otelcol-gpu binary on the simulated NVML
// library (test/nvmlsim): the real dlopen and cgo path, every metric of the
// table and every fault kind, read back over OTLP/HTTP.
package system

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/loadgen"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/metricwalk"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/otlpsink"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
)

// allMetrics is the metric table of ../../shared/docs/gpu-metrics.md.
var allMetrics = loadgen.GPUMetrics

func simLibrary(t *testing.T, env string) string {
	path := os.Getenv(env)
	if path == "" {
		dir := "nvmlsim"
		if env == "NVMLSIM_OLD_LIB" {
			dir = "nvmlsim-omit"
		}
		path = filepath.Join(proc.RepoRoot(t), "build", dir, "libnvidia-ml.so.1")
	}
	_, err := os.Stat(path)
	require.NoError(t, err, "build the simulated library with 'make nvmlsim'")
	return path
}

// collector is otelcol-gpu scraping a simulated fleet into an OTLP sink.
type collector struct {
	proc *proc.Proc
	sink *otlpsink.Sink
	next int // batches before this one were already handed out
}

func startCollector(t *testing.T, lib, fleet string) *collector {
	t.Helper()
	return startCollectorWith(t, lib, fleet, collectorOpts{})
}

// collectorOpts are what some tests change: more metrics than the default
// table, and the simulated library's environment.
type collectorOpts struct {
	extraMetrics []string
	env          []string
	// defaultMetrics leaves the metric table's defaults (off: every
	// metric on); rediscover replaces rediscover_interval (2s).
	defaultMetrics bool
	rediscover     string
	releaseFile    string
}

func startCollectorWith(t *testing.T, lib, fleet string, o collectorOpts) *collector {
	t.Helper()
	dir := t.TempDir()
	fleetPath := filepath.Join(dir, "fleet")
	require.NoError(t, os.WriteFile(fleetPath, []byte(fleet), 0o600))
	sink := otlpsink.Start(t)
	var metrics strings.Builder
	enable := o.extraMetrics
	if !o.defaultMetrics {
		enable = append(append([]string(nil), allMetrics...), o.extraMetrics...)
	}
	for _, m := range enable {
		fmt.Fprintf(&metrics, "      %s: {enabled: true}\n", m)
	}
	if len(enable) == 0 {
		metrics.WriteString("      {}\n")
	}
	rediscover := o.rediscover
	if rediscover == "" {
		rediscover = "2s"
	}
	cfg := fmt.Sprintf(`receivers:
  nvml:
    library_path: %s
    collection_interval: 1s
    init_retry_interval: 1s
    rediscover_interval: %s
    call_timeout: 400ms
    release_file: %q
    metrics:
%sexporters:
  otlp_http:
    endpoint: %s
    compression: none
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics: {receivers: [nvml], exporters: [otlp_http]}
    logs: {receivers: [nvml], exporters: [otlp_http]}
`, lib, rediscover, o.releaseFile, metrics.String(), sink.URL)
	cfgPath := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	p := proc.StartTest(t, "otelcol-gpu", proc.Binary(t), []string{"--config", cfgPath}, append([]string{"NVMLSIM_FLEET=" + fleetPath}, o.env...)...)
	t.Cleanup(func() {
		if !p.Exited() {
			require.NoError(t, p.Stop(10*time.Second), "the collector must stop cleanly after every fault")
		}
	})
	return &collector{proc: p, sink: sink}
}

// waitBatch waits for the next metrics batch for which ok holds and
// returns it; batches are handed out once, in arrival order.
func (c *collector) waitBatch(t *testing.T, timeout time.Duration, what string, ok func(pmetric.Metrics) bool) pmetric.Metrics {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		batches := c.sink.Metrics()
		for ; c.next < len(batches); c.next++ {
			if ok(batches[c.next]) {
				c.next++
				return batches[c.next-1]
			}
		}
		require.False(t, c.proc.Exited(), "the collector exited:\n%s", c.proc.Output())
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no batch within %s where %s", timeout, what)
	return pmetric.Metrics{}
}

// firstBatch waits until some batch, counting from the very first one, meets
// ok and returns the earliest such batch (faults that happen at the same
// time must not hide each other's first batch).
func (c *collector) firstBatch(t *testing.T, timeout time.Duration, what string, ok func(pmetric.Metrics) bool) pmetric.Metrics {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, md := range c.sink.Metrics() {
			if ok(md) {
				return md
			}
		}
		require.False(t, c.proc.Exited(), "the collector exited:\n%s", c.proc.Output())
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no batch within %s where %s", timeout, what)
	return pmetric.Metrics{}
}

type dp = pmetric.NumberDataPoint

// find returns the points of a metric whose attributes include want.
func find(md pmetric.Metrics, name string, want map[string]any) []dp {
	return metricwalk.Find(md, name, want)
}

func gpu(name string, attrs ...any) map[string]any {
	m := map[string]any{"hw.name": name}
	for i := 0; i+1 < len(attrs); i += 2 {
		m[attrs[i].(string)] = attrs[i+1]
	}
	return m
}

func has(md pmetric.Metrics, name string, want map[string]any) bool {
	return len(find(md, name, want)) > 0
}

func value(p dp) float64 { return metricwalk.Value(p) }
