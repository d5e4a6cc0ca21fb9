// Package loadgen drives a gateway with realistic agent traffic: requests
// shaped like one otelcol-gpu agent's scrape (one resource with the agent's
// host, cloud and tenant attributes; 8 GPUs x 43 GPU series with hw.id and
// hw.name; ~100 host series: 444 data points), from many agents across many
// tenants, over OTLP/gRPC or OTLP/HTTP, at a fixed rate or as fast as the
// gateway accepts. It reports what was accepted (per tenant) and the send
// latency percentiles. cmd/loadgen is its command line; the end-to-end tests
// and `make bench` use both.
//
// Every data point of an agent carries the request's timestamp, and an
// agent's timestamps never repeat (one millisecond apart at least), so a
// store that keeps one sample per series and timestamp holds exactly
// requests x points-per-request samples per agent: what the tests count.
package loadgen

import (
	"fmt"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// GPUMetrics are the nvml receiver's metric names (the table in
// ../../shared/docs/gpu-metrics.md and receiver/nvmlreceiver/README.md),
// one series each per GPU.
var GPUMetrics = []string{
	"hw.gpu.utilization", "nvidia.gpu.memory.bandwidth.utilization", "hw.gpu.memory.usage", "hw.gpu.memory.limit",
	"hw.gpu.memory.utilization", "nvidia.gpu.memory.reserved", "hw.power", "nvidia.gpu.power.limit", "hw.energy",
	"hw.temperature", "hw.temperature.limit", "nvidia.gpu.clock.frequency", "nvidia.gpu.clock.frequency.max",
	"nvidia.gpu.clock.throttle.active", "nvidia.gpu.clock.throttle.duration", "nvidia.gpu.pcie.throughput", "nvidia.gpu.pcie.replays", "nvidia.gpu.pcie.errors",
	"nvidia.gpu.pcie.link.generation", "nvidia.gpu.pcie.link.width", "hw.gpu.io", "nvidia.gpu.nvlink.errors", "nvidia.gpu.nvlink.ber", "nvidia.gpu.nvlink.link.active", "nvidia.gpu.c2c.errors", "nvidia.gpu.fabric.state", "hw.errors",
	"nvidia.gpu.ecc.errors",
	"nvidia.gpu.memory.remapped_rows", "nvidia.gpu.memory.remap.state", "nvidia.gpu.memory.retired_pages", "hw.status", "nvidia.gpu.performance_state",
	"nvidia.gpu.vgpu.license.state", "hw.fan.speed_ratio", "nvidia.gpu.sm.utilization", "nvidia.gpu.sm.occupancy", "nvidia.gpu.dram.utilization",
	"nvidia.gpu.pipe.utilization", "nvidia.gpu.engine.utilization", "nvidia.gpu.process.memory.usage", "nvidia.gpu.process.utilization", "nvidia.gpu.info",
}

// cumulative GPU metrics (sums); the rest are gauges.
var gpuSums = map[string]bool{
	"hw.energy": true, "nvidia.gpu.clock.throttle.duration": true, "nvidia.gpu.pcie.replays": true,
	"hw.gpu.io": true, "nvidia.gpu.nvlink.errors": true, "hw.errors": true, "nvidia.gpu.ecc.errors": true,
	"nvidia.gpu.pcie.errors": true, "nvidia.gpu.c2c.errors": true,
}

// hostSeries is the host_metrics part: metric name, attribute key and its
// values; one series per value (plus per CPU for system.cpu.time).
type hostSeries struct {
	name  string
	sum   bool
	key   string
	vals  []string
	perCP bool
}

var hostMetrics = []hostSeries{
	{"system.cpu.time", true, "state", []string{"user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice"}, true},
	{"system.memory.usage", false, "state", []string{"used", "free", "buffered", "cached", "slab_reclaimable", "slab_unreclaimable"}, false},
	{"system.cpu.load_average.1m", false, "", nil, false},
	{"system.cpu.load_average.5m", false, "", nil, false},
	{"system.cpu.load_average.15m", false, "", nil, false},
	{"system.disk.io", true, "direction", []string{"read", "write"}, false},
	{"system.disk.operations", true, "direction", []string{"read", "write"}, false},
	{"system.disk.io_time", true, "", nil, false},
	{"system.filesystem.usage", false, "state", []string{"used", "free", "reserved"}, false},
	{"system.network.io", true, "direction", []string{"transmit", "receive"}, false},
	{"system.network.packets", true, "direction", []string{"transmit", "receive"}, false},
	{"system.network.errors", true, "direction", []string{"transmit", "receive"}, false},
	{"system.network.dropped", true, "direction", []string{"transmit", "receive"}, false},
	{"system.paging.usage", false, "state", []string{"used", "free"}, false},
	{"system.processes.count", false, "status", []string{"running", "blocked"}, false},
	{"system.processes.created", true, "", nil, false},
	{"system.filesystem.inodes.usage", false, "state", []string{"used", "free"}, false},
	{"system.disk.merged", true, "direction", []string{"read", "write"}, false},
	{"system.disk.operation_time", true, "direction", []string{"read", "write"}, false},
}

// Shape is what one agent request holds.
type Shape struct {
	GPUs int // GPUs per agent (8)
	CPUs int // CPUs per agent: 8 system.cpu.time series each (8)
}

// DefaultShape is an 8-GPU VM with 8 vCPUs: 312 GPU points and 100 host
// points, 444 in all.
var DefaultShape = Shape{GPUs: 8, CPUs: 8}

// Points is the number of data points in one request of this shape.
func (s Shape) Points() int {
	n := s.GPUs * len(GPUMetrics)
	for _, h := range hostMetrics {
		k := max(1, len(h.vals))
		if h.perCP {
			k *= s.CPUs
		}
		n += k
	}
	return n
}

// Agent identifies one simulated VM.
type Agent struct {
	Index  int
	Tenant string // the tenant.id the payload claims
}

// HostName is the agent's host.name (and the hw.id prefix of its GPUs).
func (a Agent) HostName() string { return "loadgen-vm-" + strconv.Itoa(a.Index) }

// request is one agent's reusable request: its data points are rewritten in
// place for every send.
type request struct {
	md     pmetric.Metrics
	points []pmetric.NumberDataPoint
	sums   []bool
}

func newRequest(a Agent, s Shape, start time.Time) *request {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	attrs := rm.Resource().Attributes()
	attrs.PutStr("host.name", a.HostName())
	attrs.PutStr("host.id", fmt.Sprintf("%032x", a.Index+1))
	attrs.PutStr("os.type", "linux")
	attrs.PutStr("cloud.provider", "gpu-cloud")
	attrs.PutStr("cloud.region", "eu-west-"+strconv.Itoa(a.Index%3+1))
	attrs.PutStr("cloud.availability_zone", "eu-west-"+strconv.Itoa(a.Index%3+1)+"a")
	attrs.PutStr("host.type", "gpu-8x-h100")
	attrs.PutStr("tenant.id", a.Tenant)
	r := &request{md: md}
	startTS := pcommon.NewTimestampFromTime(start)

	gpus := rm.ScopeMetrics().AppendEmpty()
	gpus.Scope().SetName("github.com/otelcol-gpu/otelcol-gpu/receiver/nvmlreceiver")
	for _, name := range GPUMetrics {
		m := gpus.Metrics().AppendEmpty()
		m.SetName(name)
		dps := r.dataPoints(m, gpuSums[name])
		for g := 0; g < s.GPUs; g++ {
			dp := dps.AppendEmpty()
			dp.SetStartTimestamp(startTS)
			dp.Attributes().PutStr("hw.id", fmt.Sprintf("GPU-%08x-%04x", a.Index, g))
			dp.Attributes().PutStr("hw.name", "NVIDIA H100 80GB HBM3")
			r.add(dp, gpuSums[name])
		}
	}
	host := rm.ScopeMetrics().AppendEmpty()
	host.Scope().SetName("github.com/open-telemetry/opentelemetry-collector-contrib/receiver/hostmetricsreceiver")
	for _, h := range hostMetrics {
		m := host.Metrics().AppendEmpty()
		m.SetName(h.name)
		dps := r.dataPoints(m, h.sum)
		cpus := 1
		if h.perCP {
			cpus = s.CPUs
		}
		for c := 0; c < cpus; c++ {
			vals := h.vals
			if len(vals) == 0 {
				vals = []string{""}
			}
			for _, v := range vals {
				dp := dps.AppendEmpty()
				dp.SetStartTimestamp(startTS)
				if h.perCP {
					dp.Attributes().PutStr("cpu", "cpu"+strconv.Itoa(c))
				}
				if h.key != "" {
					dp.Attributes().PutStr(h.key, v)
				}
				r.add(dp, h.sum)
			}
		}
	}
	return r
}

func (r *request) dataPoints(m pmetric.Metric, sum bool) pmetric.NumberDataPointSlice {
	if sum {
		s := m.SetEmptySum()
		s.SetIsMonotonic(true)
		s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		return s.DataPoints()
	}
	return m.SetEmptyGauge().DataPoints()
}

func (r *request) add(dp pmetric.NumberDataPoint, sum bool) {
	r.points = append(r.points, dp)
	r.sums = append(r.sums, sum)
}

// stamp sets every point's timestamp to ts and its value from seq: gauges
// wave, sums grow.
func (r *request) stamp(ts time.Time, seq int64) {
	t := pcommon.NewTimestampFromTime(ts)
	for i, dp := range r.points {
		dp.SetTimestamp(t)
		if r.sums[i] {
			dp.SetDoubleValue(float64(seq) * float64(i%7+1))
		} else {
			dp.SetDoubleValue(float64((seq+int64(i))%100) + 0.5)
		}
	}
}

// Request builds one request of agent a at time ts (for tests and tools
// that want the pdata form).
func Request(a Agent, s Shape, ts time.Time, seq int64) pmetric.Metrics {
	r := newRequest(a, s, ts.Add(-time.Hour))
	r.stamp(ts, seq)
	return r.md
}
