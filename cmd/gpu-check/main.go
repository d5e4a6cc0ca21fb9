// Command gpu-check scrapes the local GPUs with the nvml receiver's own code
// for a while and compares what it read with nvidia-smi, printing a table.
// On a machine without an NVIDIA GPU (or driver) it says so and exits 0; it
// exits 1 when a value is outside its tolerance.
//
//	gpu-check [-duration 30s] [-interval 1s] [-library /path/libnvidia-ml.so.1]
//
// It is built small and without eager symbol binding (make gpu-check) so it
// can be carried to a GPU machine that has nothing but glibc and the driver.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/metricwalk"
	"github.com/otelcol-gpu/otelcol-gpu/receiver/nvmlreceiver"
)

func main() {
	duration := flag.Duration("duration", 30*time.Second, "how long to scrape")
	interval := flag.Duration("interval", time.Second, "scrape interval")
	library := flag.String("library", "", "NVML library path (default: libnvidia-ml.so.1 through the dynamic linker)")
	smi := flag.String("nvidia-smi", "nvidia-smi", "nvidia-smi to compare with")
	flag.Parse()
	os.Exit(run(*duration, *interval, *library, *smi))
}

// recorder keeps the first and last sample of every series.
type recorder struct {
	mu          sync.Mutex
	first, last map[string]sample
	scrapes     int
}

type sample struct {
	v float64
	t time.Time
}

func seriesKey(gpu, metric string, attrs pcommon.Map) string {
	parts := []string{gpu, metric}
	attrs.Range(func(k string, v pcommon.Value) bool {
		if k != "hw.id" && k != "hw.name" {
			parts = append(parts, k+"="+v.AsString())
		}
		return true
	})
	sort.Strings(parts[2:])
	return strings.Join(parts, "|")
}

func (r *recorder) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

func (r *recorder) ConsumeMetrics(_ context.Context, md pmetric.Metrics) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.scrapes++
	metricwalk.NumberPoints(md, func(m pmetric.Metric, dp pmetric.NumberDataPoint) {
		id, _ := dp.Attributes().Get("hw.id")
		key := seriesKey(id.Str(), m.Name(), dp.Attributes())
		s := sample{v: metricwalk.Value(dp), t: dp.Timestamp().AsTime()}
		if _, ok := r.first[key]; !ok {
			r.first[key] = s
		}
		r.last[key] = s
	})
	return nil
}

func (r *recorder) get(gpu, metric string, attrs ...string) (float64, bool) {
	parts := append([]string{gpu, metric}, attrs...)
	sort.Strings(parts[2:])
	s, ok := r.last[strings.Join(parts, "|")]
	return s.v, ok
}

type nopHost struct{}

func (nopHost) GetExtensions() map[component.ID]component.Component { return nil }

func run(duration, interval time.Duration, library, smi string) int {
	logger, _ := zap.NewProduction()
	defer func() { _ = logger.Sync() }()
	f := nvmlreceiver.NewFactory()
	cfg := f.CreateDefaultConfig()
	rcfg := cfg.(*nvmlreceiver.Config)
	rcfg.CollectionInterval = interval
	rcfg.CallTimeout = interval / 2
	rcfg.LibraryPath = library
	rec := &recorder{first: map[string]sample{}, last: map[string]sample{}}
	set := receiver.Settings{
		ID: component.NewID(f.Type()),
		TelemetrySettings: component.TelemetrySettings{
			Logger: logger, MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider(),
			Resource: pcommon.NewResource(),
		},
		BuildInfo: component.NewDefaultBuildInfo(),
	}
	r, err := f.CreateMetrics(context.Background(), set, cfg, rec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gpu-check:", err)
		return 2
	}
	if err := r.Start(context.Background(), nopHost{}); err != nil {
		fmt.Fprintln(os.Stderr, "gpu-check:", err)
		return 2
	}
	fmt.Printf("gpu-check: scraping for %s every %s...\n", duration, interval)
	time.Sleep(duration)
	_ = r.Shutdown(context.Background())

	rec.mu.Lock()
	defer rec.mu.Unlock()
	gpus := map[string]bool{}
	for key := range rec.last {
		if strings.HasPrefix(strings.SplitN(key, "|", 2)[0], "GPU-") {
			gpus[strings.SplitN(key, "|", 2)[0]] = true
		}
	}
	if len(gpus) == 0 {
		fmt.Printf("gpu-check: no NVIDIA GPU is visible through NVML here (%d scrapes); nothing to compare.\n", rec.scrapes)
		return 0
	}
	rows, err := querySMI(smi)
	if err != nil {
		fmt.Printf("gpu-check: %d GPU(s) scraped, but %v; values are not compared.\n", len(gpus), err)
		return 0
	}
	return compare(rec, gpus, rows)
}

// smiFields are queried from nvidia-smi, in this order.
var smiFields = []string{
	"uuid", "pci.bus_id", "name", "utilization.gpu", "memory.used", "memory.total", "power.draw", "temperature.gpu",
	"clocks.sm", "clocks.mem", "ecc.errors.corrected.volatile.total", "ecc.errors.uncorrected.volatile.total",
	"pcie.link.gen.current", "pcie.link.width.current", "driver_version",
}

func querySMI(smi string) (map[string]map[string]string, error) {
	if _, err := exec.LookPath(smi); err != nil {
		return nil, fmt.Errorf("%s is not installed", smi)
	}
	out, err := exec.Command(smi, "--query-gpu="+strings.Join(smiFields, ","), "--format=csv,noheader,nounits").Output()
	if err != nil {
		return nil, fmt.Errorf("%s failed: %w", smi, err)
	}
	rows := map[string]map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		cols := strings.Split(line, ",")
		if len(cols) != len(smiFields) {
			continue
		}
		row := map[string]string{}
		for i, f := range smiFields {
			row[f] = strings.TrimSpace(cols[i])
		}
		rows[row["uuid"]] = row
	}
	return rows, nil
}

type check struct {
	what      string
	smiField  string
	metric    string
	attrs     []string
	scale     float64 // receiver value * scale = nvidia-smi units
	tolAbs    float64
	tolRel    float64
	rationale string
}

var checks = []check{
	{"utilization %", "utilization.gpu", "hw.gpu.utilization", []string{"hw.gpu.task=general"}, 100, 15, 0, "receiver averages the interval, nvidia-smi reads an instant"},
	{"memory used MiB", "memory.used", "hw.gpu.memory.usage", nil, 1.0 / (1 << 20), 64, 0.02, "allocations move between the two reads"},
	{"memory total MiB", "memory.total", "hw.gpu.memory.limit", nil, 1.0 / (1 << 20), 1, 0.001, "same NVML field"},
	{"power W", "power.draw", "hw.power", []string{"hw.type=gpu"}, 1, 10, 0.10, "instant readings of a moving value"},
	{"temperature C", "temperature.gpu", "hw.temperature", []string{"hw.sensor_location=gpu"}, 1, 2, 0, "instant readings"},
	{"SM clock MHz", "clocks.sm", "nvidia.gpu.clock.frequency", []string{"nvidia.gpu.clock=sm"}, 1e-6, 100, 0.10, "boost moves with load"},
	{"memory clock MHz", "clocks.mem", "nvidia.gpu.clock.frequency", []string{"nvidia.gpu.clock=memory"}, 1e-6, 1, 0.01, "fixed on HBM parts"},
	{"ECC corrected", "ecc.errors.corrected.volatile.total", "hw.errors", []string{"error.type=corrected", "hw.type=gpu"}, 1, 0, 0, "same counter"},
	{"ECC uncorrected", "ecc.errors.uncorrected.volatile.total", "hw.errors", []string{"error.type=uncorrected", "hw.type=gpu"}, 1, 0, 0, "same counter"},
}

func compare(rec *recorder, gpus map[string]bool, rows map[string]map[string]string) int {
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GPU\tcheck\treceiver\tnvidia-smi\ttolerance\tresult")
	failures := 0
	ids := make([]string, 0, len(gpus))
	for id := range gpus {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		row, ok := rows[id]
		gpuID := id
		if !ok {
			fmt.Fprintf(tw, "%s\t(present)\tyes\tnot listed\t-\tDIFF\n", gpuID)
			failures++
			continue
		}
		for _, c := range checks {
			got, ok := rec.get(id, c.metric, c.attrs...)
			want, err := strconv.ParseFloat(row[c.smiField], 64)
			switch {
			case err != nil && !ok:
				fmt.Fprintf(tw, "%s\t%s\t-\t%s\t-\tn/a (neither reports it)\n", gpuID, c.what, row[c.smiField])
				continue
			case err != nil:
				fmt.Fprintf(tw, "%s\t%s\t%.1f\t%s\t-\tn/a (nvidia-smi has no value)\n", gpuID, c.what, got*c.scale, row[c.smiField])
				continue
			case !ok:
				fmt.Fprintf(tw, "%s\t%s\t-\t%.1f\t-\tDIFF (receiver has no value)\n", gpuID, c.what, want)
				failures++
				continue
			}
			tol := max(c.tolAbs, c.tolRel*want)
			result := "ok"
			if d := got*c.scale - want; d > tol || d < -tol {
				result = "DIFF"
				failures++
			}
			fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t±%.1f (%s)\t%s\n", gpuID, c.what, got*c.scale, want, tol, c.rationale, result)
		}
		failures += energyCheck(tw, rec, id, gpuID)
		fmt.Fprintf(tw, "%s\tPCIe link (context)\t-\tgen %s x%s, bus %s\t-\tinfo\n", gpuID, row["pcie.link.gen.current"], row["pcie.link.width.current"], row["pci.bus_id"])
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "gpu-check:", err)
		return 2
	}
	if failures > 0 {
		fmt.Printf("gpu-check: %d value(s) outside tolerance\n", failures)
		return 1
	}
	fmt.Println("gpu-check: every compared value is within tolerance")
	return 0
}

// energyCheck has no nvidia-smi twin: the energy counter's rate over the run
// must match the average power the receiver read.
func energyCheck(tw *tabwriter.Writer, rec *recorder, id, gpuID string) int {
	key := strings.Join([]string{id, "hw.energy", "hw.type=gpu"}, "|")
	first, ok1 := rec.first[key]
	last, ok2 := rec.last[key]
	power, ok3 := rec.get(id, "hw.power", "hw.type=gpu")
	if !ok1 || !ok2 || !ok3 || !last.t.After(first.t) {
		fmt.Fprintf(tw, "%s\tenergy rate W\t-\t-\t-\tn/a (no energy counter)\n", gpuID)
		return 0
	}
	rate := (last.v - first.v) / last.t.Sub(first.t).Seconds()
	tol := max(15, 0.2*power)
	result := "ok"
	if d := rate - power; d > tol || d < -tol || last.v < first.v {
		result = "DIFF"
	}
	fmt.Fprintf(tw, "%s\tenergy rate W\t%.1f\t(hw.power %.1f)\t±%.1f (counter delta / time vs power)\t%s\n", gpuID, rate, power, tol, result)
	if result == "DIFF" {
		return 1
	}
	return 0
}
