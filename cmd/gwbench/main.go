// Command gwbench is `make bench`'s harness: it measures gateway pipelines
// side by side, each in the real otelcol-gpu binary pinned to one core
// (taskset -c 0, GOMAXPROCS=1) at saturation, with the load generator and
// the counting sink on the other cores, and the agent's footprint.
//
// Pipelines (plaintext OTLP/gRPC or OTLP/HTTP in, OTLP/HTTP out without
// compression, same data, same transport):
//
//	a  otlp -> memory_limiter -> batch -> otlp_http                       (batched pass-through)
//	b  otlp(include_metadata)+bearertokenauth -> memory_limiter ->
//	   resource(tenant from context) -> batch(metadata_keys) -> otlp_http (upstream tenant pipeline)
//	c  otlp+tenant_auth -> memory_limiter -> tenant(gateway) -> tenant_otlp_http (this project, queues in memory)
//	d  c with its queues in the queue log on disk, synced before each
//	   answer, as config/gateway.yaml runs it (rows "c+disk")
//
// a, b, c over OTLP/gRPC with 1, 8, 100 and 1,000 tenants and over
// OTLP/HTTP with 1 and 8, plus c over TLS; then a, c, d on both transports
// with 8, 200 and 1,000 tenants, each from 256 agents (or one per tenant
// where there are more), first each agent with one request in flight,
// then with 8 requests in flight over all of them (-disk-in-flight): with
// 8 the wait for each group's sync is in every answer and leaves the core
// idle. a and b run with Go's default runtime settings,
// as upstream ships them; c and d with the installed gateway's
// (-shipped-env). -profile names the CPU and heap profiles of c at the most
// gRPC tenants; beside it, "-mem-<transport>" and "-disk-<transport>" ones
// of c and d at the most disk tenants, under the same load. Throughput is
// what the sink was delivered per second of the measuring window, not what
// the receiver accepted. Runs alternate within each round so machine drift
// cancels in the ratios (c/a, c/b, d/c, d/a), which are medians over
// rounds; the report opens with one table of the ratios and figures the
// project is measured against.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/devcerts"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/loadgen"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/rssprof"
)

type options struct {
	otelcol, nvmlsim, root, out, profile string
	tenants, httpTenants, diskTenants    []int
	rounds                               int
	warmup, measure                      time.Duration
	agentDur, agentFastDur               time.Duration
	tls, quick, keep                     bool
	diskInFlight                         []int
	diskTransports                       []string
	agentEnv, override, syms             string
	shippedEnv                           string
	gatewayEnv                           []string
}

func main() {
	wd, _ := os.Getwd()
	var o options
	var tenants, httpTenants, diskTenants, diskTransports, diskInFlight string
	flag.StringVar(&o.otelcol, "otelcol", filepath.Join(wd, "bin", "otelcol-gpu"), "the otelcol-gpu binary")
	flag.StringVar(&o.nvmlsim, "nvmlsim", filepath.Join(wd, "build", "nvmlsim"), "folder of the simulated libnvidia-ml.so.1 (agent footprint)")
	flag.StringVar(&o.root, "root", wd, "repository root (config/agent.yaml)")
	flag.StringVar(&o.out, "out", filepath.Join(wd, "build", "bench", "report.json"), "JSON report")
	flag.StringVar(&o.profile, "profile", filepath.Join(wd, "build", "bench", "gateway-cpu.pprof"), "CPU profile of pipeline c at saturation (empty: none)")
	flag.StringVar(&tenants, "tenants", "1,8,100,1000", "tenant counts for the gateway runs over OTLP/gRPC")
	flag.StringVar(&httpTenants, "http-tenants", "1,8", "tenant counts for the gateway runs over OTLP/HTTP (empty: none)")
	flag.StringVar(&diskTenants, "disk-tenants", "8,200,1000", "tenant counts for a, c and c+disk (d) alternating: the shipped durable gateway against in memory and the upstream pass-through (empty: none)")
	flag.StringVar(&diskTransports, "disk-transports", "grpc,http", "transports of the a, c, d runs")
	flag.StringVar(&diskInFlight, "disk-in-flight", "0,8", "requests in flight over all agents in the a, c, d runs (max(256, tenants) agents), one row each: 0 is one per agent, enough that the wait for each group's fsync does not leave the core idle; 8 is the few-clients case where it does")
	flag.IntVar(&o.rounds, "rounds", 3, "alternating rounds of a, b, c")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "load before measuring, each run")
	flag.DurationVar(&o.measure, "measure", 10*time.Second, "measuring window, each run")
	flag.DurationVar(&o.agentDur, "agent", 5*time.Minute, "agent footprint run at 10 s interval (0: skip)")
	flag.DurationVar(&o.agentFastDur, "agent-fast", 2*time.Minute, "agent footprint run at 1 s interval (0: skip)")
	flag.BoolVar(&o.tls, "tls", true, "also run pipeline c over TLS")
	flag.StringVar(&o.agentEnv, "agent-env", "package", `the agent's Go runtime settings: "package" (the GO* lines of packaging/default/otelcol-gpu-agent, what an installed agent runs with), "none", or "GOGC=50 GOMEMLIMIT=96MiB ..."`)
	var gatewayEnv string
	flag.StringVar(&o.shippedEnv, "shipped-env", "package", `the Go runtime settings of this project's gateway (pipelines c, c+tls, c+disk): "package" (the GO* lines of packaging/default/otelcol-gpu-gateway, what an installed gateway runs with), "none", or "GOGC=200 ..."; a and b run with the Go defaults, as upstream ships them`)
	flag.StringVar(&gatewayEnv, "gateway-env", "", `Go runtime settings added to every gateway pipeline's environment, "GOGC=200 ..." (to try one; GOMAXPROCS stays 1)`)
	flag.StringVar(&o.override, "override", "", "a YAML file merged last into pipelines c and c+disk (to try a setting)")
	flag.StringVar(&o.syms, "syms", "", "the otelcol binary built with its symbol table (make's build/bench/otelcol-gpu.syms): profiles the agent's resident executable pages by package")
	flag.BoolVar(&o.keep, "keep", false, "keep the work folder (configs, gateway logs)")
	flag.BoolVar(&o.quick, "quick", false, "a few seconds of everything (make test): 1 round, 1 and 10 tenants, short windows")
	flag.Parse()
	o.gatewayEnv = strings.Fields(gatewayEnv)
	for _, t := range strings.Split(diskTransports, ",") {
		switch t = strings.TrimSpace(t); t {
		case "":
		case "grpc", "http":
			o.diskTransports = append(o.diskTransports, t)
		default:
			fmt.Fprintf(os.Stderr, "gwbench: -disk-transports: %q is not grpc or http\n", t)
			os.Exit(2)
		}
	}
	for _, l := range []struct {
		name string
		in   string
		out  *[]int
		min  int
	}{{"tenants", tenants, &o.tenants, 1}, {"http-tenants", httpTenants, &o.httpTenants, 1}, {"disk-tenants", diskTenants, &o.diskTenants, 1}, {"disk-in-flight", diskInFlight, &o.diskInFlight, 0}} {
		counts, err := parseCounts(l.in, l.min)
		if err != nil {
			fmt.Fprintf(os.Stderr, "gwbench: -%s: %v\n", l.name, err)
			os.Exit(2)
		}
		*l.out = counts
	}
	if o.quick {
		o.tenants, o.httpTenants, o.diskTenants, o.diskTransports, o.diskInFlight = []int{1, 10}, []int{1}, []int{10}, []string{"grpc"}, []int{0, 8}
		o.rounds, o.warmup, o.measure = 1, time.Second, 2*time.Second
		o.agentDur, o.agentFastDur = 4*time.Second, 0
	}
	if err := pinSelf(); err != nil {
		fmt.Fprintln(os.Stderr, "gwbench:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gwbench:", err)
		os.Exit(1)
	}
	printReport(os.Stdout, rep)
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err == nil {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.out, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gwbench:", err)
			os.Exit(1)
		}
		fmt.Printf("\nreport: %s\n", o.out)
	}
}

// alternate runs each pipeline once, in order, as round r (runs alternate
// within a round so machine drift cancels in the ratios), reporting each
// row; an error names the pipeline.
func alternate(ctx context.Context, pipelines []string, r int, report func(Row), run func(p string) (Row, error)) ([]Row, error) {
	got := make([]Row, len(pipelines))
	for i, p := range pipelines {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		row, err := run(p)
		if err != nil {
			return nil, fmt.Errorf("pipeline %s: %w", p, err)
		}
		row.Round = r
		got[i] = row
		report(row)
	}
	return got, nil
}

// diskAgents is how many agents the a, c, d runs at t tenants use: 256,
// or one per tenant where there are more.
func diskAgents(t int) int { return max(256, t) }

// diskKey names the ratios of the a, c, d runs at t tenants with
// inFlight requests in flight ("grpc/8"; with a cap, "grpc/8/in-flight-8").
func diskKey(transport string, t, inFlight int) string {
	key := fmt.Sprintf("%s/%d", transport, t)
	if inFlight > 0 {
		key += fmt.Sprintf("/in-flight-%d", inFlight)
	}
	return key
}

// parseCounts reads a comma-separated list of counts, each at least min;
// a count listed twice is run once.
func parseCounts(s string, min int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < min {
			return nil, fmt.Errorf("%q is not a count of at least %d", f, min)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// pinSelf re-runs the harness off core 0 (taskset -c 1-N), which the
// gateway under test gets to itself.
func pinSelf() error {
	if os.Getenv("GWBENCH_PINNED") != "" || runtime.NumCPU() < 2 {
		return nil
	}
	cmd := exec.Command("taskset", append([]string{"-c", fmt.Sprintf("1-%d", runtime.NumCPU()-1), os.Args[0]}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), "GWBENCH_PINNED=1", "GWBENCH_CORES="+strconv.Itoa(runtime.NumCPU()))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.ExitCode())
	}
	if err != nil {
		return fmt.Errorf("taskset (util-linux) is needed to pin the harness: %w", err)
	}
	os.Exit(0)
	return nil
}

// Row is one measured run.
type Row struct {
	Pipeline      string  `json:"pipeline"`      // a, b, c, c+tls, c+disk
	Set           string  `json:"set,omitempty"` // "disk": a row of the a, c, d comparison
	Transport     string  `json:"transport"`     // grpc or http: how the load came in
	Tenants       int     `json:"tenants"`
	Agents        int     `json:"agents"`
	InFlight      int     `json:"in_flight,omitempty"` // cap over all agents; 0: one per agent
	Round         int     `json:"round"`
	PointsPerSec  float64 `json:"delivered_points_per_second"`
	CPUPercent    float64 `json:"gateway_cpu_percent_of_one_core"`
	PointsPerCore float64 `json:"delivered_points_per_cpu_second"`
	PeakRSSMiB    float64 `json:"gateway_peak_rss_mib"`
	P99ms         float64 `json:"send_latency_p99_ms"`
	// At the end of the window: resident memory, and how much of it is the
	// gateway's own (anonymous) or pages of files (the executable, mapped
	// queue files).
	RSSEndMiB  float64 `json:"gateway_rss_end_mib"`
	RSSAnonMiB float64 `json:"gateway_rss_anon_end_mib"`
	RSSFileMiB float64 `json:"gateway_rss_file_end_mib"`
	Accepted   float64 `json:"accepted_points_per_second"`
	Refused    int64   `json:"requests_refused"`
	// Core0 is how the gateway's core spent the window, whoever ran on it.
	Core0 CoreShares `json:"core0"`
}

// inFlight is how many requests the row's agents had in flight at most.
func (r Row) inFlight() int {
	if r.InFlight > 0 {
		return r.InFlight
	}
	return r.Agents
}

// Spread is the a, c, d comparison at one transport and tenant count: its
// ratios, one per round.
type Spread struct {
	Transport string    `json:"transport"`
	Tenants   int       `json:"tenants"`
	Agents    int       `json:"agents"`
	InFlight  int       `json:"in_flight,omitempty"`
	CA        []float64 `json:"c_over_a"`
	DC        []float64 `json:"d_over_c"`
	DA        []float64 `json:"d_over_a"`
}

// AgentRow is one agent footprint run.
type AgentRow struct {
	Interval   string  `json:"interval"`
	Env        string  `json:"go_runtime_env"`
	Seconds    float64 `json:"seconds"`
	CPUPercent float64 `json:"cpu_percent_of_one_core"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// At the end of the window: RSS and PSS, each split into the agent's
	// own memory (anonymous) and pages of files (the executable).
	RSSMiB     float64 `json:"rss_end_mib"`
	RSSAnonMiB float64 `json:"rss_anon_end_mib"`
	RSSFileMiB float64 `json:"rss_file_end_mib"`
	PSSMiB     float64 `json:"pss_end_mib"`
	PSSAnonMiB float64 `json:"pss_anon_end_mib"`
	PSSFileMiB float64 `json:"pss_file_end_mib"`
	// The executable's resident pages by package (with -syms).
	ExeResidentMiB float64           `json:"exe_resident_mib,omitempty"`
	ExeByPackage   []rssprof.Package `json:"exe_resident_by_package,omitempty"`
	Points         int64             `json:"points_delivered"`
	// From the start of the process to its health check answering, with
	// its binary not in the page cache.
	StartSeconds float64 `json:"start_seconds"`
	// With the simulated library's realistic call latencies
	// (NVMLSIM_LATENCY=realistic): the nvml receiver's mean scrape time,
	// and its NVML calls per GPU per scrape (start-up included).
	ScrapeMeanMs      float64 `json:"nvml_scrape_mean_ms"`
	CallsPerGPUScrape float64 `json:"nvml_calls_per_gpu_per_scrape"`
}

// Report is the whole bench.
type Report struct {
	Date        string             `json:"date"`
	BinaryBytes int64              `json:"binary_bytes"`
	CPU         string             `json:"cpu"`
	Cores       int                `json:"cores"`
	Rows        []Row              `json:"gateway"`
	Ratios      map[string]float64 `json:"ratios"`  // "c/a@grpc/100", "d/a@http/1000" -> median over rounds
	Spread      []Spread           `json:"durable"` // the a, c, d comparison's ratios, round by round
	Agent       []AgentRow         `json:"agent"`
	ProfileTop  string             `json:"profile_top,omitempty"`
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func run(ctx context.Context, o options) (*Report, error) {
	dir, err := os.MkdirTemp("", "gwbench-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "gwbench: configs and logs kept in", dir)
	} else {
		defer func() { _ = os.RemoveAll(dir) }()
	}
	if err := devcerts.Write(devcerts.Options{Dir: filepath.Join(dir, "certs")}); err != nil {
		return nil, err
	}
	maxT := slices.Max(slices.Concat([]int{1}, o.tenants, o.httpTenants, o.diskTenants))
	if err := os.WriteFile(filepath.Join(dir, "credentials.yaml"), []byte(loadgen.Credentials(maxT, nil)), 0o600); err != nil {
		return nil, err
	}
	sink := loadgen.NewSink()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: sink, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	defer func() { _ = srv.Close() }()
	b := &bench{o: o, dir: dir, sink: sink, sinkURL: "http://" + l.Addr().String(), maxTenants: maxT}
	// The agent runs from a copy of the binary: in a customer's VM nothing
	// else maps its file, so its pages count whole in its RSS and PSS, as
	// they would there, instead of being shared with the gateway's.
	b.agentBin = filepath.Join(dir, "otelcol-gpu-agent")
	if err := copyFile(o.otelcol, b.agentBin); err != nil {
		return nil, err
	}

	cores := runtime.NumCPU() // of this process, pinned: the machine's, from before the pinning
	if n, err := strconv.Atoi(os.Getenv("GWBENCH_CORES")); err == nil {
		cores = n
	}
	rep := &Report{Date: time.Now().UTC().Format(time.RFC3339), CPU: cpuModel(), Cores: cores, Ratios: map[string]float64{}}
	if fi, err := os.Stat(o.otelcol); err == nil {
		rep.BinaryBytes = fi.Size()
	}
	maxGRPC, maxHTTP, maxDisk := 0, 0, 0
	if len(o.tenants) > 0 {
		maxGRPC = slices.Max(o.tenants)
	}
	if len(o.httpTenants) > 0 {
		maxHTTP = slices.Max(o.httpTenants)
	}
	if len(o.diskTenants) > 0 {
		maxDisk = slices.Max(o.diskTenants)
	}
	report := func(row Row) {
		rep.Rows = append(rep.Rows, row)
		fmt.Fprintf(os.Stderr, "gwbench: %-6s %-4s tenants=%-5d agents=%-5d in-flight=%-4d round=%d  %9.0f points/s  cpu %5.1f%%  rss %4.0f MiB peak (end %.0f: anon %.0f, file %.0f)  p99 %6.1f ms  refused %d  core 0: idle %.1f%% steal %.1f%% irq %.1f%%\n",
			row.Pipeline, row.Transport, row.Tenants, row.Agents, row.inFlight(), row.Round, row.PointsPerSec, row.CPUPercent, row.PeakRSSMiB, row.RSSEndMiB, row.RSSAnonMiB, row.RSSFileMiB, row.P99ms, row.Refused,
			row.Core0.Idle, row.Core0.Steal, row.Core0.IRQ)
	}
	// a, b, c alternating, on each transport.
	for _, tr := range []struct {
		name    string
		tenants []int
		maxT    int
		profile string
	}{{"grpc", o.tenants, maxGRPC, o.profile}, {"http", o.httpTenants, maxHTTP, suffixed(o.profile, "-http")}} {
		for _, t := range tr.tenants {
			ca, cb := []float64{}, []float64{}
			for r := 1; r <= o.rounds; r++ {
				got, err := alternate(ctx, []string{"a", "b", "c"}, r, report, func(p string) (Row, error) {
					prof := ""
					if p == "c" && r == 1 && t == tr.maxT {
						prof = tr.profile
					}
					return b.gateway(ctx, p, tr.name, t, false, prof)
				})
				if err != nil {
					return nil, fmt.Errorf("over %s, %d tenants: %w", tr.name, t, err)
				}
				if got[0].PointsPerSec > 0 && got[1].PointsPerSec > 0 {
					ca = append(ca, got[2].PointsPerSec/got[0].PointsPerSec)
					cb = append(cb, got[2].PointsPerSec/got[1].PointsPerSec)
				}
			}
			rep.Ratios[fmt.Sprintf("c/a@%s/%d", tr.name, t)] = median(ca)
			rep.Ratios[fmt.Sprintf("c/b@%s/%d", tr.name, t)] = median(cb)
		}
	}
	if o.tls && len(o.tenants) > 0 {
		t := o.tenants[len(o.tenants)/2]
		row, err := b.gateway(ctx, "c", "grpc", t, true, "")
		if err != nil {
			return nil, fmt.Errorf("pipeline c over TLS: %w", err)
		}
		row.Pipeline = "c+tls"
		report(row)
	}
	// The shipped shape (d: c with its queues on disk, synced) against c
	// in memory and the upstream pass-through a, alternating, on each
	// transport.
	for _, tr := range o.diskTransports {
		for _, t := range o.diskTenants {
			agents := diskAgents(t)
			for _, inFlight := range o.diskInFlight {
				var ca, dc, da []float64
				for r := 1; r <= o.rounds; r++ {
					got, err := alternate(ctx, []string{"a", "c", "c+disk"}, r, report, func(p string) (Row, error) {
						// c and c+disk profiled (the same load), so the disk's
						// cost is their difference.
						prof := ""
						if r == 1 && t == maxDisk && inFlight == o.diskInFlight[0] && p != "a" {
							prof = suffixed(o.profile, map[string]string{"c": "-mem", "c+disk": "-disk"}[p]+"-"+tr)
						}
						row, err := b.gatewayWith(ctx, p, tr, t, agents, inFlight, false, prof)
						row.Set = "disk"
						return row, err
					})
					if err != nil {
						return nil, fmt.Errorf("over %s, %d tenants: %w", tr, t, err)
					}
					a, c, d := got[0].PointsPerSec, got[1].PointsPerSec, got[2].PointsPerSec
					if a > 0 && c > 0 {
						ca, dc, da = append(ca, c/a), append(dc, d/c), append(da, d/a)
					}
				}
				key := diskKey(tr, t, inFlight)
				rep.Ratios["c/a@"+key+"/disk-set"] = median(ca)
				rep.Ratios["d/c@"+key] = median(dc)
				rep.Ratios["d/a@"+key] = median(da)
				rep.Spread = append(rep.Spread, Spread{Transport: tr, Tenants: t, Agents: agents, InFlight: inFlight, CA: ca, DC: dc, DA: da})
			}
		}
	}
	if o.profile != "" {
		if out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=25", o.otelcol, o.profile).Output(); err == nil {
			rep.ProfileTop = string(out)
		}
	}
	for _, a := range []struct {
		interval time.Duration
		dur      time.Duration
		env      []string
	}{
		{10 * time.Second, o.agentDur, nil},
		{time.Second, o.agentFastDur, nil},
	} {
		if a.dur <= 0 {
			continue
		}
		row, err := b.agent(ctx, a.interval, a.dur, a.env...)
		if err != nil {
			return nil, fmt.Errorf("agent footprint at %s: %w", a.interval, err)
		}
		rep.Agent = append(rep.Agent, row)
		fmt.Fprintf(os.Stderr, "gwbench: agent interval=%s  cpu %.2f%%  peak rss %.0f MiB (end: rss %.1f = anon %.1f + file %.1f; pss %.1f)  scrape %.1f ms  nvml calls/GPU/scrape %.1f  env %q\n",
			row.Interval, row.CPUPercent, row.PeakRSSMiB, row.RSSMiB, row.RSSAnonMiB, row.RSSFileMiB, row.PSSMiB, row.ScrapeMeanMs, row.CallsPerGPUScrape, row.Env)
	}
	return rep, nil
}

// copyFile copies the binary and drops the copy from the page cache, so
// the agent starts as at a VM's boot: nothing of its binary read yet.
func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.WriteFile(to, data, 0o755); err != nil {
		return err
	}
	return dropFromCache(to)
}

// dropFromCache writes a file's pages and drops them from the page cache.
func dropFromCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	if err := f.Sync(); err != nil {
		return err
	}
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// suffixed is path with suffix before its extension ("" stays "").
func suffixed(path, suffix string) string {
	if path == "" {
		return ""
	}
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + suffix + ext
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

type bench struct {
	o          options
	agentBin   string // a copy of the binary: in a customer's VM no gateway shares its pages
	dir        string
	sink       *loadgen.Sink
	sinkURL    string
	maxTenants int
}

// gwConfig is how a pipeline is run: its config files (the shipped
// config/gateway.yaml first, for the project's pipeline) and environment.
type gwConfig struct {
	yaml     string   // the pipeline's own config, or the overrides of the shipped one
	base     string   // config/gateway.yaml, for the project's pipeline
	override string   // -override, for the project's pipeline
	env      []string // the shipped config's variables
}

// args are the collector's --config flags, with yaml written at path.
func (c gwConfig) args(path string) []string {
	if c.base == "" {
		return []string{"--config", path}
	}
	args := []string{"--config", c.base, "--config", path}
	if c.override != "" {
		args = append(args, "--config", c.override)
	}
	return args
}

// config is how pipeline p runs. a and b are upstream components in a
// config of their own; c (in-memory queues) and c+disk are the shipped
// config/gateway.yaml with what a benchmark must change on top: loopback
// ports, the sink as the store, no TLS where the row says so, no own
// telemetry (as a and b), and for c the queues in memory.
func (b *bench) config(p, transport string, port, healthPort, pprofPort int, tls bool) gwConfig {
	if p != "a" && p != "b" {
		return b.shippedConfig(p, transport, port, healthPort, pprofPort, tls)
	}
	tlsBlock := ""
	if tls {
		tlsBlock = fmt.Sprintf("\n        tls: {cert_file: %s, key_file: %s}", filepath.Join(b.dir, "certs", devcerts.ServerCertFile), filepath.Join(b.dir, "certs", devcerts.ServerKeyFile))
	}
	// The receiver's one protocol: gRPC with a 4 MiB message limit, or
	// HTTP with the same body limit.
	proto := fmt.Sprintf("      grpc:\n        endpoint: 127.0.0.1:%d\n        max_recv_msg_size_mib: 4", port)
	if transport == "http" {
		proto = fmt.Sprintf("      http:\n        endpoint: 127.0.0.1:%d\n        max_request_body_size: 4194304", port)
	}
	common := `  memory_limiter:
    check_interval: 1s
    limit_mib: 1536
    spike_limit_mib: 384
`
	service := func(ext, procs, exp string) string {
		if pprofPort > 0 {
			ext += ", pprof"
		}
		return fmt.Sprintf(`service:
  extensions: [%s]
  telemetry:
    metrics: {level: none}
    logs: {level: warn}
  pipelines:
    metrics: {receivers: [otlp], processors: [%s], exporters: [%s]}
`, ext, procs, exp)
	}
	ext := fmt.Sprintf("  health_check: {endpoint: 127.0.0.1:%d}\n", healthPort)
	if pprofPort > 0 {
		ext += fmt.Sprintf("  pprof: {endpoint: 127.0.0.1:%d}\n", pprofPort)
	}
	otlpHTTP := fmt.Sprintf(`  otlp_http:
    metrics_endpoint: %s/v1/metrics
    compression: none
`, b.sinkURL)
	if p == "a" {
		return gwConfig{yaml: fmt.Sprintf(`extensions:
%sreceivers:
  otlp:
    protocols:
%s%s
processors:
%s  batch: {}
exporters:
%s`, ext, proto, tlsBlock, common, otlpHTTP) + service("health_check", "memory_limiter, batch", "otlp_http")}
	}
	var tokens strings.Builder
	for i := 0; i < b.maxTenants; i++ {
		fmt.Fprintf(&tokens, "      - %s\n", loadgen.DefaultToken(loadgen.DefaultTenantName(i)))
	}
	return gwConfig{yaml: fmt.Sprintf(`extensions:
%s  bearertokenauth:
    tokens:
%sreceivers:
  otlp:
    protocols:
%s
        include_metadata: true
        auth: {authenticator: bearertokenauth}%s
processors:
%s  resource:
    attributes:
      - {key: tenant.id, from_context: metadata.x-tenant-id, action: upsert}
  batch:
    metadata_keys: [x-tenant-id]
    metadata_cardinality_limit: %d
exporters:
%s`, ext, tokens.String(), proto, tlsBlock, common, b.maxTenants+10, otlpHTTP) +
		service("health_check, bearertokenauth", "memory_limiter, resource, batch", "otlp_http")}
}

func (b *bench) shippedConfig(p, transport string, port, healthPort, pprofPort int, tls bool) gwConfig {
	var o strings.Builder
	// The shipped receiver has both protocols: the row's one stays (on its
	// loopback port; without TLS unless the row says), the other goes.
	used, unused := "grpc", "http"
	endpointVar := "OTELCOL_GPU_GRPC_ENDPOINT="
	if transport == "http" {
		used, unused = "http", "grpc"
		endpointVar = "OTELCOL_GPU_HTTP_ENDPOINT="
	}
	fmt.Fprintf(&o, "receivers:\n  otlp:\n    protocols:\n      %s: null\n", unused)
	if !tls {
		fmt.Fprintf(&o, "      %s:\n        tls: null\n", used)
	}
	o.WriteString("exporters:\n  tenant_otlp_http:\n    compression: none\n")
	if p == "c" {
		o.WriteString("    queue:\n      directory: \"\"\n      fsync: false\n")
	}
	ext := "health_check, tenant_auth"
	if pprofPort > 0 {
		fmt.Fprintf(&o, "extensions:\n  pprof: {endpoint: 127.0.0.1:%d}\n", pprofPort)
		ext += ", pprof"
	}
	fmt.Fprintf(&o, "service:\n  extensions: [%s]\n  telemetry:\n    metrics: {level: none}\n    logs: {level: info}\n", ext)
	return gwConfig{
		yaml:     o.String(),
		base:     filepath.Join(b.o.root, "config", "gateway.yaml"),
		override: b.o.override,
		env: []string{
			endpointVar + "127.0.0.1:" + strconv.Itoa(port),
			"OTELCOL_GPU_TLS_CERT_FILE=" + filepath.Join(b.dir, "certs", devcerts.ServerCertFile),
			"OTELCOL_GPU_TLS_KEY_FILE=" + filepath.Join(b.dir, "certs", devcerts.ServerKeyFile),
			"OTELCOL_GPU_CREDENTIALS_FILE=" + filepath.Join(b.dir, "credentials.yaml"),
			"OTELCOL_GPU_STORE_URL=" + b.sinkURL,
			"OTELCOL_GPU_STATE_DIR=" + filepath.Join(b.dir, "state-"+strconv.Itoa(port)),
			"OTELCOL_GPU_HEALTH_ENDPOINT=127.0.0.1:" + strconv.Itoa(healthPort),
		},
	}
}

// gateway runs pipeline p pinned to core 0 at saturation and measures it.
func (b *bench) gateway(ctx context.Context, p, transport string, tenants int, tls bool, profile string) (Row, error) {
	return b.gatewayWith(ctx, p, transport, tenants, max(32, tenants), 0, tls, profile)
}

// gatewayWith is gateway with a number of agents, each with one request in
// flight, or inFlight over all of them.
func (b *bench) gatewayWith(ctx context.Context, p, transport string, tenants, agents, inFlight int, tls bool, profile string) (Row, error) {
	var port, healthPort, pprofPort int
	cfg := filepath.Join(b.dir, "gateway-"+p+".yaml")
	// Every pipeline starts as at a host's boot: its binary out of the
	// page cache (what it then maps is what it uses).
	if err := dropFromCache(b.o.otelcol); err != nil {
		return Row{}, err
	}
	gw, err := proc.RetryBind(bindAttempts, logRetry, func() (*proc.Proc, error) {
		port, healthPort = proc.MustReserve(), proc.MustReserve()
		if profile != "" {
			pprofPort = proc.MustReserve()
		}
		gc := b.config(p, transport, port, healthPort, pprofPort, tls)
		if err := os.WriteFile(cfg, []byte(gc.yaml), 0o600); err != nil {
			return nil, err
		}
		env := slices.Concat(gc.env, b.o.gatewayEnv)
		if strings.HasPrefix(p, "c") {
			shipped, err := b.runtimeEnv(b.o.shippedEnv, "otelcol-gpu-gateway")
			if err != nil {
				return nil, err
			}
			env = slices.Concat(gc.env, shipped, b.o.gatewayEnv)
		}
		gw, err := startPinned(b.o.otelcol, gc.args(cfg), env, filepath.Join(b.dir, "gateway-"+p+".log"))
		if err != nil {
			return nil, err
		}
		return gw, gw.WaitHTTPOK(ctx, fmt.Sprintf("http://127.0.0.1:%d/", healthPort), time.Minute)
	})
	if gw != nil {
		defer func() { _ = gw.Stop(15 * time.Second) }()
	}
	if err != nil {
		return Row{}, err
	}

	lc := loadgen.Config{
		Transport: loadgen.TransportConfig{Protocol: "grpc", Endpoint: fmt.Sprintf("127.0.0.1:%d", port), Conns: 8},
		Agents:    agents, Tenants: tenants, InFlight: inFlight, Duration: b.o.warmup + b.o.measure,
	}
	if transport == "http" {
		// One keep-alive connection per agent, as agents have.
		scheme := "http"
		if tls {
			scheme = "https"
		}
		lc.Transport = loadgen.TransportConfig{Protocol: "http", Endpoint: fmt.Sprintf("%s://127.0.0.1:%d", scheme, port), Conns: (agents + 3) / 4}
	}
	if p == "b" {
		lc.Transport.TenantHeader = "x-tenant-id"
	}
	if tls {
		lc.Transport.CAFile = filepath.Join(b.dir, "certs", devcerts.CAFile)
		lc.Transport.ServerName = "localhost"
	}
	type result struct {
		rep loadgen.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := loadgen.Run(ctx, lc)
		done <- result{rep, err}
	}()
	select {
	case <-time.After(b.o.warmup):
	case <-ctx.Done():
		return Row{}, ctx.Err()
	}
	p0, cpu0, t0 := b.sink.Counts().Points, gw.CPU(), time.Now()
	core0, coreErr := readCoreTimes(0)
	var profErr chan error
	if profile != "" {
		_ = os.MkdirAll(filepath.Dir(profile), 0o755)
		profErr = make(chan error, 1)
		go func() { profErr <- fetchProfile(pprofPort, b.o.measure-time.Second, profile) }()
	}
	select {
	case <-time.After(b.o.measure):
	case <-ctx.Done():
		return Row{}, ctx.Err()
	}
	p1, cpu1, t1 := b.sink.Counts().Points, gw.CPU(), time.Now()
	core1, coreErr1 := readCoreTimes(0)
	mem := gw.Memory()
	if profile != "" {
		heap := strings.TrimSuffix(profile, filepath.Ext(profile)) + "-heap.pprof"
		if err := fetch(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap", pprofPort), heap); err != nil {
			fmt.Fprintln(os.Stderr, "gwbench: heap profile:", err)
		}
		// The text form ends with the runtime's memory statistics.
		if err := fetch(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap?debug=1", pprofPort), strings.TrimSuffix(heap, ".pprof")+".txt"); err != nil {
			fmt.Fprintln(os.Stderr, "gwbench: heap statistics:", err)
		}
	}
	res := <-done
	if res.err != nil {
		return Row{}, res.err
	}
	if profErr != nil {
		if err := <-profErr; err != nil {
			fmt.Fprintln(os.Stderr, "gwbench: profile:", err)
		}
	}
	secs := t1.Sub(t0).Seconds()
	cpuSecs := (cpu1 - cpu0).Seconds()
	row := Row{
		Agents: agents, InFlight: inFlight,
		Pipeline: p, Transport: transport, Tenants: tenants,
		PointsPerSec: float64(p1-p0) / secs,
		CPUPercent:   100 * cpuSecs / secs,
		PeakRSSMiB:   gw.PeakRSSMiB(),
		RSSEndMiB:    mem.RSS, RSSAnonMiB: mem.RSSAnon, RSSFileMiB: mem.RSSFile,
		P99ms:    res.rep.LatencyMS["p99"],
		Accepted: res.rep.PointsPerSecond,
		Refused:  res.rep.Failed,
	}
	if err := errors.Join(coreErr, coreErr1); err != nil {
		fmt.Fprintln(os.Stderr, "gwbench: core 0's times (its columns stay 0):", err)
	} else {
		row.Core0 = core1.since(core0)
	}
	if cpuSecs > 0 {
		row.PointsPerCore = float64(p1-p0) / cpuSecs
	}
	if p1 == p0 {
		return row, fmt.Errorf("nothing was delivered to the sink (last loadgen error: %s; see %s)", res.rep.LastError, gw.Log)
	}
	return row, nil
}

func fetchProfile(port int, d time.Duration, path string) error {
	return fetch(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", port, max(1, int(d.Seconds()))), path)
}

func fetch(url, path string) error {
	resp, err := http.Get(url) //nolint:noctx // loopback
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	return errors.Join(err, f.Close())
}

// agent runs config/agent.yaml (8 simulated GPUs, host metrics) at the
// interval for d, sending to a gateway (pipeline c over TLS, unpinned) and
// measures the agent's CPU and peak RSS.
func (b *bench) agent(ctx context.Context, interval, d time.Duration, extraEnv ...string) (AgentRow, error) {
	var grpcPort, healthPort int
	cfg := filepath.Join(b.dir, "gateway-agentbench.yaml")
	gw, err := proc.RetryBind(bindAttempts, logRetry, func() (*proc.Proc, error) {
		grpcPort, healthPort = proc.MustReserve(), proc.MustReserve()
		gc := b.config("c", "grpc", grpcPort, healthPort, 0, true)
		if err := os.WriteFile(cfg, []byte(gc.yaml), 0o600); err != nil {
			return nil, err
		}
		gw, err := proc.Start("gateway", b.o.otelcol, gc.args(cfg), gc.env, filepath.Join(b.dir, "gateway-agentbench.log"))
		if err != nil {
			return nil, err
		}
		return gw, gw.WaitHTTPOK(ctx, fmt.Sprintf("http://127.0.0.1:%d/", healthPort), time.Minute)
	})
	if gw != nil {
		defer func() { _ = gw.Stop(15 * time.Second) }()
	}
	if err != nil {
		return AgentRow{}, err
	}
	vm := filepath.Join(b.dir, "vm")
	_ = os.RemoveAll(vm)
	if err := os.MkdirAll(vm, 0o700); err != nil {
		return AgentRow{}, err
	}
	tenant := loadgen.DefaultTenantName(0)
	files := map[string]string{
		"token":  loadgen.DefaultToken(tenant) + "\n",
		"tenant": tenant + "\n",
		"fleet":  "gpus = 8\nmodel = h100\nsignal.utilization = wave 20 95 120\nsignal.memory_used = wave 20000 70000 300\n",
	}
	for name, c := range files {
		if err := os.WriteFile(filepath.Join(vm, name), []byte(c), 0o600); err != nil {
			return AgentRow{}, err
		}
	}
	runtimeEnv, err := b.agentRuntimeEnv()
	if err != nil {
		return AgentRow{}, err
	}
	callsFile := filepath.Join(vm, "nvml-calls")
	agMetrics := 0
	// As at a VM's boot: nothing of the binary in the page cache yet.
	if err := dropFromCache(b.agentBin); err != nil {
		return AgentRow{}, err
	}
	var started time.Duration
	ag, err := proc.RetryBind(bindAttempts, logRetry, func() (*proc.Proc, error) {
		agHealth := proc.MustReserve()
		agMetrics = proc.MustReserve()
		env := append([]string{
			"LD_LIBRARY_PATH=" + b.o.nvmlsim,
			"NVMLSIM_FLEET=" + filepath.Join(vm, "fleet"),
			"NVMLSIM_LATENCY=realistic",
			"NVMLSIM_CALLS=" + callsFile,
			"OTELCOL_GPU_GATEWAY_ENDPOINT=localhost:" + strconv.Itoa(grpcPort),
			"OTELCOL_GPU_CA_FILE=" + filepath.Join(b.dir, "certs", devcerts.CAFile),
			"OTELCOL_GPU_TOKEN_FILE=" + filepath.Join(vm, "token"),
			"OTELCOL_GPU_TENANT_FILE=" + filepath.Join(vm, "tenant"),
			"OTELCOL_GPU_STATE_DIR=" + filepath.Join(vm, "state"),
			"OTELCOL_GPU_INTERVAL=" + interval.String(),
			"OTELCOL_GPU_OTLP_GRPC=127.0.0.1:" + strconv.Itoa(proc.MustReserve()),
			"OTELCOL_GPU_OTLP_HTTP=127.0.0.1:" + strconv.Itoa(proc.MustReserve()),
			"OTELCOL_GPU_HEALTH_ENDPOINT=127.0.0.1:" + strconv.Itoa(agHealth),
			"OTELCOL_GPU_METRICS_PORT=" + strconv.Itoa(agMetrics),
		}, append(runtimeEnv, extraEnv...)...)
		t0 := time.Now()
		ag, err := proc.Start("agent", b.agentBin, []string{"--config", filepath.Join(b.o.root, "config", "agent.yaml")}, env, filepath.Join(b.dir, "agent.log"))
		if err != nil {
			return nil, err
		}
		err = ag.WaitHTTPOK(ctx, fmt.Sprintf("http://127.0.0.1:%d/", agHealth), time.Minute)
		started = time.Since(t0)
		return ag, err
	})
	if ag != nil {
		defer func() { _ = ag.Stop(15 * time.Second) }()
	}
	if err != nil {
		return AgentRow{}, err
	}
	p0, cpu0, t0 := b.sink.Counts().Points, ag.CPU(), time.Now()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return AgentRow{}, ctx.Err()
	}
	cpu1, t1 := ag.CPU(), time.Now()
	secs := t1.Sub(t0).Seconds()
	mem := ag.Memory()
	row := AgentRow{
		Interval: interval.String(), Seconds: secs, Env: strings.Join(append(runtimeEnv, extraEnv...), " "),
		StartSeconds: started.Seconds(),
		CPUPercent:   100 * (cpu1 - cpu0).Seconds() / secs,
		PeakRSSMiB:   ag.PeakRSSMiB(),
		RSSMiB:       mem.RSS, RSSAnonMiB: mem.RSSAnon, RSSFileMiB: mem.RSSFile,
		PSSMiB: mem.PSS, PSSAnonMiB: mem.PSSAnon, PSSFileMiB: mem.PSSFile,
		Points: b.sink.Counts().Points - p0,
	}
	if b.o.syms != "" {
		prof, err := rssprof.Take(ag.Pid(), b.o.syms)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gwbench: executable pages by package:", err)
		} else {
			row.ExeResidentMiB = float64(prof.ResidentBytes) / (1 << 20)
			row.ExeByPackage = prof.Packages[:min(40, len(prof.Packages))]
		}
	}
	row.ScrapeMeanMs = scrapeMeanMs(ctx, agMetrics)
	// nvmlShutdown, at the agent's stop, writes the call counts.
	if err := ag.Stop(15 * time.Second); err == nil {
		row.CallsPerGPUScrape = callsPerGPUScrape(callsFile, 8)
	}
	return row, nil
}

// scrapeMeanMs is the nvml receiver's mean scrape time from the agent's
// own metrics (otelcol_receiver_nvml_scrape_duration); 0 if unread.
func scrapeMeanMs(ctx context.Context, port int) float64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", port), http.NoBody)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer func() { _ = resp.Body.Close() }()
	var sum, count float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "otelcol_receiver_nvml_scrape_duration") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		name := f[0]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		switch {
		case strings.HasSuffix(name, "_sum"):
			sum += v
		case strings.HasSuffix(name, "_count"):
			count += v
		}
	}
	if count == 0 {
		return 0
	}
	return 1000 * sum / count
}

// callsPerGPUScrape reads the simulated library's call counts: every call
// over GPUs x scrapes (a scrape is one nvmlDeviceGetMemoryInfo_v2 a GPU).
func callsPerGPUScrape(path string, gpus int) float64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	total, scrapes := 0, 0
	for _, l := range strings.Split(string(data), "\n") {
		name, n, ok := strings.Cut(l, " ")
		if !ok {
			continue
		}
		v, _ := strconv.Atoi(n)
		total += v
		if name == "nvmlDeviceGetMemoryInfo_v2" {
			scrapes = v / gpus
		}
	}
	if scrapes == 0 {
		return 0
	}
	return float64(total) / float64(gpus*scrapes)
}

// bindAttempts bounds the starts of a process whose port was taken.
const bindAttempts = 3

func logRetry(format string, args ...any) { fmt.Fprintf(os.Stderr, "gwbench: "+format+"\n", args...) }

// startPinned runs the collector on core 0 alone: taskset sets the
// affinity before exec, so every thread the Go runtime starts inherits it.
func startPinned(bin string, args, env []string, log string) (*proc.Proc, error) {
	return proc.Start("gateway", "taskset", append([]string{"-c", "0", bin}, args...), append(env, "GOMAXPROCS=1"), log)
}

// agentRuntimeEnv is the Go runtime environment the agent runs with.
func (b *bench) agentRuntimeEnv() ([]string, error) {
	return b.runtimeEnv(b.o.agentEnv, "otelcol-gpu-agent")
}

// runtimeEnv is a role's Go runtime environment: setting is "package" (the
// GO* lines of the role's packaging/default file), "none" or the settings.
func (b *bench) runtimeEnv(setting, role string) ([]string, error) {
	switch setting {
	case "none", "":
		return nil, nil
	case "package":
		path := filepath.Join(b.o.root, "packaging", "default", role)
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var env []string
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "GO") && strings.Contains(l, "=") {
				env = append(env, strings.TrimSpace(l))
			}
		}
		return env, nil
	default:
		return strings.Fields(setting), nil
	}
}

// ---- report ----

// printSummary writes the figures the project is measured against
// (docs: quality.md) as one markdown table: the durable gateway against
// the pass-through and in memory, memory at 1,000 tenants, the agent.
func printSummary(w io.Writer, r *Report) {
	fmt.Fprintf(w, "\n## Summary: %s, %s (%d cores), binary %.1f MB\n\n", r.Date, r.CPU, r.Cores, float64(r.BinaryBytes)/1e6)
	fmt.Fprintln(w, "Method: each pipeline in the real binary pinned to one core (GOMAXPROCS=1), load generator and sink on the others; agent-shaped requests, one in flight per agent or the stated number over all agents; delivered points counted at the sink over the measuring window; ratios are medians over alternating rounds (per-round values in brackets).")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| in | tenants | agents | in flight | a points/s | c points/s | d points/s | c/a | d/c | d/a (target >= 1.0) | d peak RSS |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, sp := range r.Spread {
		var a, c, d []float64
		var rss []float64
		for _, x := range r.Rows {
			if x.Set != "disk" || x.Transport != sp.Transport || x.Tenants != sp.Tenants || x.Agents != sp.Agents || x.InFlight != sp.InFlight {
				continue
			}
			switch x.Pipeline {
			case "a":
				a = append(a, x.PointsPerSec)
			case "c":
				c = append(c, x.PointsPerSec)
			case "c+disk":
				d = append(d, x.PointsPerSec)
				rss = append(rss, x.PeakRSSMiB)
			}
		}
		inFlight := "1 per agent"
		if sp.InFlight > 0 {
			inFlight = strconv.Itoa(sp.InFlight)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %.0f MiB |\n", sp.Transport, sp.Tenants, sp.Agents, inFlight,
			mpts(median(a)), mpts(median(c)), mpts(median(d)), ratios(sp.CA), ratios(sp.DC), ratios(sp.DA), slices.Max(append(rss, 0)))
	}
	for _, a := range r.Agent {
		fmt.Fprintf(w, "\nAgent (8 simulated GPUs, %s interval, %.0f s): %.2f%% of one core, peak RSS %.0f MiB, PSS %.1f MiB at the end (targets < 0.5%%, < 64 MiB, binary < 60 MB).\n",
			a.Interval, a.Seconds, a.CPUPercent, a.PeakRSSMiB, a.PSSMiB)
	}
}

// mpts is points per second in millions.
func mpts(v float64) string { return fmt.Sprintf("%.2f M", v/1e6) }

// ratios is the median of per-round ratios, then the rounds.
func ratios(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return fmt.Sprintf("**%.2f** [%s]", median(v), strings.Join(parts, ", "))
}

func printReport(w io.Writer, r *Report) {
	printSummary(w, r)
	fmt.Fprintf(w, "\n## gateway on one pinned core (%s, %d cores; %s)\n\n", r.CPU, r.Cores, r.Date)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pipeline\tin\ttenants\tagents\tin flight\tround\tdelivered points/s\tgateway CPU %\tpoints per CPU-s\tpeak RSS MiB\tp99 ms\trefused requests\tcore 0 idle %\tsteal %\tirq %\t")
	for _, x := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%.0f\t%.1f\t%.0f\t%.0f\t%.1f\t%d\t%.1f\t%.1f\t%.1f\t\n", x.Pipeline, x.Transport, x.Tenants, x.Agents, x.inFlight(), x.Round,
			x.PointsPerSec, x.CPUPercent, x.PointsPerCore, x.PeakRSSMiB, x.P99ms, x.Refused, x.Core0.Idle, x.Core0.Steal, x.Core0.IRQ)
	}
	_ = tw.Flush()
	keys := make([]string, 0, len(r.Ratios))
	for k := range r.Ratios {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fmt.Fprintln(w, "\nratios (median over alternating rounds; targets c/a >= 0.95, c/b >= 1.0 on both transports with 1-8 tenants, d/a >= 1.0):")
	for _, k := range keys {
		fmt.Fprintf(w, "  %-10s %.2f\n", k, r.Ratios[k])
	}
	if len(r.Agent) > 0 {
		fmt.Fprintln(w, "\n## agent: 8 simulated GPUs + host metrics (target < 0.5% of a core, < 80 MiB)")
		for _, a := range r.Agent {
			fmt.Fprintf(w, "  interval %-4s over %4.0f s: CPU %.2f%% of one core, peak RSS %.0f MiB, %d points delivered; nvml scrape %.1f ms mean, %.1f NVML calls per GPU per scrape with start-up (realistic driver latencies) (env: %s)\n",
				a.Interval, a.Seconds, a.CPUPercent, a.PeakRSSMiB, a.Points, a.ScrapeMeanMs, a.CallsPerGPUScrape, a.Env)
			fmt.Fprintf(w, "    at the end: RSS %.1f MiB (anon %.1f, file %.1f), PSS %.1f MiB (anon %.1f, file %.1f); started (healthy) in %.2f s from a cold page cache\n",
				a.RSSMiB, a.RSSAnonMiB, a.RSSFileMiB, a.PSSMiB, a.PSSAnonMiB, a.PSSFileMiB, a.StartSeconds)
			if len(a.ExeByPackage) > 0 {
				fmt.Fprintf(w, "    resident pages of the executable: %.1f MiB; largest packages:\n", a.ExeResidentMiB)
				for _, p := range a.ExeByPackage[:min(25, len(a.ExeByPackage))] {
					fmt.Fprintf(w, "      %6.2f MiB  %s\n", float64(p.Bytes)/(1<<20), p.Name)
				}
			}
		}
	}
	if r.ProfileTop != "" {
		fmt.Fprintln(w, "\n## CPU profile of pipeline c at saturation (top)")
		fmt.Fprintln(w, r.ProfileTop)
	}
}
