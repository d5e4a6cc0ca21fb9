// Command usagebench is `make bench`'s measure of the usage computation
// (internal/usage, what the tenant_usage receiver runs when an hour closes)
// against a real VictoriaMetrics holding agent-shaped data: for 10, 100 and
// 1,000 tenants of 10 VMs x 8 GPUs (380 series a VM, a sample every
// -step), one hour each on its own day (the store indexes by day, so the
// hours do not see each other's tenants), it computes the hour's records and
// reports the wall time, the store's CPU time during it, the queries sent,
// and whether every record is exact. The data is written straight into the
// store (/api/v1/import): the gateway is not what is measured here.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/loadgen"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/vmstore"
	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

type result struct {
	Tenants        int     `json:"tenants"`
	VMs            int     `json:"vms"`
	Series         int     `json:"series"`
	Samples        int64   `json:"samples"`
	IngestSeconds  float64 `json:"ingest_seconds"`
	ComputeSeconds float64 `json:"compute_seconds"`
	StoreCPU       float64 `json:"store_cpu_seconds"`
	Queries        int64   `json:"queries"`
	Records        int     `json:"records"`
	Exact          bool    `json:"exact"`
	StorePeakMiB   float64 `json:"store_peak_rss_mib"`
	// A customer's dashboard query (one tenant's GPUs, last hour) every
	// 200 ms, before and during the computation: how much it slows.
	ProbeIdleP50Ms, ProbeIdleP99Ms float64
	ProbeBusyP50Ms, ProbeBusyP99Ms float64
}

func main() {
	wd, _ := os.Getwd()
	storeBin := flag.String("store", "", "victoria-metrics binary (default: $VICTORIA_METRICS_BIN or .tools/bin/victoria-metrics)")
	tenantList := flag.String("tenants", "10,100,1000", "tenant counts, one hour each")
	vms := flag.Int("vms", 10, "VMs per tenant")
	gpus := flag.Int("gpus", 8, "GPUs per VM")
	step := flag.Duration("step", 5*time.Minute, "sample interval of the generated data")
	conc := flag.Int("concurrency", 2, "usage queries in flight (the receiver's default)")
	gpuMetrics := flag.Int("gpu-metrics", len(loadgen.GPUMetrics), "metrics per GPU (hw.status first, then the agent's others in order)")
	hostSeries := flag.Int("host-series", 100, "host series per VM")
	out := flag.String("out", "", "write the results as JSON here")
	flag.Parse()
	if *storeBin == "" {
		b, err := vmstore.FindBinary(wd)
		if err != nil {
			fail(err)
		}
		*storeBin = b
	}
	var counts []int
	for _, s := range strings.Split(*tenantList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fail(fmt.Errorf("-tenants: %q is not a count", s))
		}
		counts = append(counts, n)
	}
	if len(counts) > 6 {
		fail(errors.New("-tenants: at most 6 counts (one day each, within the store's 7-day retention)"))
	}
	dir, err := os.MkdirTemp("", "usagebench-")
	if err != nil {
		fail(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	ctx := context.Background()
	store, err := proc.RetryBind(3, func(f string, a ...any) { fmt.Printf(f+"\n", a...) }, func() (*vmstore.Store, error) {
		s := vmstore.New(*storeBin, filepath.Join(dir, "store"), proc.Addr(proc.MustReserve()), nil)
		return s, s.Start(ctx)
	})
	if err != nil {
		fail(err)
	}
	defer func() { _ = store.Stop() }()

	if *gpuMetrics < 1 || *gpuMetrics > len(loadgen.GPUMetrics) {
		fail(fmt.Errorf("-gpu-metrics: 1 to %d", len(loadgen.GPUMetrics)))
	}
	metrics := []string{"hw.status"}
	for _, m := range loadgen.GPUMetrics {
		if len(metrics) < *gpuMetrics && m != "hw.status" {
			metrics = append(metrics, m)
		}
	}
	shape := loadgen.Shape{GPUs: *gpus}
	perVM := *gpus*len(metrics) + *hostSeries
	samplesPerSeries := int(time.Hour / *step)
	fmt.Printf("usage computation: %d VMs x %d GPUs per tenant, %d series a VM, a sample every %s (%d an hour), one hour per tenant count; concurrency %d\n",
		*vms, shape.GPUs, perVM, *step, samplesPerSeries, *conc)
	fmt.Println("| tenants | series | samples | ingest (s) | compute (s) | store CPU (s) | queries | records | exact | dashboard query p50/p99 idle (ms) | ... during (ms) |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	var results []result
	for i, n := range counts {
		// Day i+1 before today, at 10:00: its own day in the store's index.
		hour := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -(len(counts) - i)).Add(10 * time.Hour)
		prefix := fmt.Sprintf("b%d-", n)
		t0 := time.Now()
		samples, err := fill(ctx, store.URL, prefix, n, *vms, *gpus, metrics, *hostSeries, hour, *step)
		if err != nil {
			fail(err)
		}
		if err := store.Flush(ctx); err != nil {
			fail(err)
		}
		ingest := time.Since(t0)
		var queries atomic.Int64
		client := &http.Client{Transport: countingTransport{next: http.DefaultTransport, n: &queries}, Timeout: 10 * time.Minute}
		src := &usage.Source{StoreURL: store.URL, TenantLabel: "tenant_id", Client: client, Concurrency: *conc}
		probeQuery := fmt.Sprintf(`max by (host.name, hw.id) (max_over_time(hw.gpu.utilization{tenant_id="%st0000"}[1h]))`, prefix)
		idle := probe(ctx, store, probeQuery, hour.Add(time.Hour), 3*time.Second, nil)
		cpu0 := store.CPU()
		t1 := time.Now()
		done := make(chan struct{})
		busyCh := make(chan []time.Duration, 1)
		go func() { busyCh <- probe(ctx, store, probeQuery, hour.Add(time.Hour), 0, done) }()
		hr, err := src.Compute(ctx, hour)
		close(done)
		busy := <-busyCh
		if err != nil {
			fail(err)
		}
		if len(hr.Deferred) > 0 {
			fail(fmt.Errorf("%d tenants deferred, e.g. %v", len(hr.Deferred), hr.Deferred))
		}
		recs := hr.Records
		r := result{
			Tenants: n, VMs: *vms, Series: n * *vms * perVM, Samples: samples,
			IngestSeconds: ingest.Seconds(), ComputeSeconds: time.Since(t1).Seconds(),
			StoreCPU: (store.CPU() - cpu0).Seconds(), Queries: queries.Load(), Records: len(recs),
			Exact: exact(recs, n, *vms, *gpus, perVM, samplesPerSeries), StorePeakMiB: store.PeakRSSMiB(),
			ProbeIdleP50Ms: pct(idle, 0.5), ProbeIdleP99Ms: pct(idle, 0.99), ProbeBusyP50Ms: pct(busy, 0.5), ProbeBusyP99Ms: pct(busy, 0.99),
		}
		results = append(results, r)
		fmt.Printf("| %d | %d | %d | %.1f | %.2f | %.2f | %d | %d | %v | %.1f / %.1f | %.1f / %.1f |\n",
			r.Tenants, r.Series, r.Samples, r.IngestSeconds, r.ComputeSeconds, r.StoreCPU, r.Queries, r.Records, r.Exact,
			r.ProbeIdleP50Ms, r.ProbeIdleP99Ms, r.ProbeBusyP50Ms, r.ProbeBusyP99Ms)
		if !r.Exact {
			fail(fmt.Errorf("%d tenants: the records are not what was written", n))
		}
	}
	fmt.Printf("store peak RSS %.0f MiB\n", store.PeakRSSMiB())
	if *out != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			fail(err)
		}
	}
}

// exact checks every record against what fill wrote.
func exact(recs []usage.Record, tenants, vms, gpus, perVM, samples int) bool {
	want := map[usage.Meter]int64{
		usage.DataPoints:   int64(vms * perVM * samples),
		usage.ActiveSeries: int64(vms * perVM),
		// The gateway saw every VM in every minute.
		usage.GPUMinutes: int64(vms * gpus * 60),
		usage.VMs:        int64(vms),
	}
	if len(recs) != tenants*len(usage.StoreMeters) {
		return false
	}
	for _, r := range recs {
		if r.Value != want[r.Meter] {
			fmt.Printf("  %s: %v, want %v\n", r.ID, r.Value, want[r.Meter])
			return false
		}
	}
	return true
}

// probe times the query every 200 ms, for d or until done.
func probe(ctx context.Context, store *vmstore.Store, query string, at time.Time, d time.Duration, done <-chan struct{}) []time.Duration {
	var out []time.Duration
	var stop <-chan time.Time
	if d > 0 {
		stop = time.After(d)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		t0 := time.Now()
		if _, err := store.QueryAt(ctx, query, "", at); err == nil {
			out = append(out, time.Since(t0))
		}
		select {
		case <-stop:
			return out
		case <-done:
			return out
		case <-tick.C:
		}
	}
}

func pct(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[int(q*float64(len(s)-1))].Microseconds()) / 1000
}

type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// fill writes the hour's data of n tenants through the store's JSON-lines
// import, two writers at once.
func fill(ctx context.Context, storeURL, prefix string, n, vms, gpus int, metrics []string, hostSeries int, hour time.Time, step time.Duration) (int64, error) {
	var ts []int64
	var vals []float64
	for t := hour; t.Before(hour.Add(time.Hour)); t = t.Add(step) {
		ts = append(ts, t.UnixMilli())
		vals = append(vals, 1)
	}
	tsJSON, _ := json.Marshal(ts)
	valsJSON, _ := json.Marshal(vals)
	tail := []byte(`,"values":` + string(valsJSON) + `,"timestamps":` + string(tsJSON) + "}\n")
	// What the gateway adds: one point per VM and minute it received
	// data, valued at the VM's GPUs.
	var minuteTS []int64
	var minuteVals []int
	for t := hour; t.Before(hour.Add(time.Hour)); t = t.Add(time.Minute) {
		minuteTS = append(minuteTS, t.UnixMilli())
		minuteVals = append(minuteVals, gpus)
	}
	mtsJSON, _ := json.Marshal(minuteTS)
	mvalsJSON, _ := json.Marshal(minuteVals)
	minutesTail := []byte(`,"values":` + string(mvalsJSON) + `,"timestamps":` + string(mtsJSON) + "}\n")
	jobs := make(chan int)
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	var samples atomic.Int64
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tenant := range jobs {
				var buf bytes.Buffer
				bw := bufio.NewWriter(&buf)
				name := fmt.Sprintf("%st%04d", prefix, tenant)
				for v := 0; v < vms; v++ {
					host := fmt.Sprintf("%s-vm-%d", name, v)
					for g := 0; g < gpus; g++ {
						for _, m := range metrics {
							fmt.Fprintf(bw, `{"metric":{"__name__":%q,"tenant_id":%q,"host.name":%q,"host.id":%q,"hw.id":"GPU-%s-%d"}`, m, name, host, host, host, g)
							_, _ = bw.Write(tail)
						}
					}
					fmt.Fprintf(bw, `{"metric":{"__name__":%q,"tenant_id":%q,"host.id":%q,%q:%q}`, usage.VMMinutesMetric, name, host, usage.GPUsFromAttribute, usage.GPUsFromProvisioning)
					_, _ = bw.Write(minutesTail)
					for h := 0; h < hostSeries; h++ {
						fmt.Fprintf(bw, `{"metric":{"__name__":"system.bench","tenant_id":%q,"host.name":%q,"host.id":%q,"series":"%d"}`, name, host, host, h)
						_, _ = bw.Write(tail)
					}
				}
				_ = bw.Flush()
				resp, err := http.Post(storeURL+"/api/v1/import", "application/json", &buf)
				if err == nil {
					_ = resp.Body.Close()
					if resp.StatusCode/100 != 2 {
						err = fmt.Errorf("import: %s", resp.Status)
					}
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					continue
				}
				samples.Add(int64(vms * (gpus*len(metrics) + hostSeries) * len(ts)))
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return samples.Load(), firstErr
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "usagebench:", err)
	os.Exit(1)
}
