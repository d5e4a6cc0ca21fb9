// Command readbench is `make bench`'s measure of the customers' read path
// (tenant_query) in the real otelcol-gpu gateway against a real
// VictoriaMetrics:
//
//   - added latency: the GPU dashboard's queries (query_range, one hour),
//     each sent to the store directly with the tenant's extra_label and
//     through the component, alternating, one at a time, in the same run:
//     p50 and p99 of both and of the difference;
//   - memory under 1,000 concurrent dashboard refreshes from 100 tenants
//     (every panel of each at once) with the shipped limits: the gateway's
//     peak RSS, and how many queries were answered or refused (429).
//
// The read listener runs without TLS here (a config override): the figure
// is the component's cost, not a TLS handshake's.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/devcerts"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/vmstore"
)

const bindAttempts = 3

// The dashboard's panels (extension/tenantqueryextension/dashboards/gpu.json).
var panels = []string{
	`max by (host.name, hw.name) (hw.gpu.utilization{hw.gpu.task="general"}) * 100`,
	`max by (host.name, hw.name) (hw.gpu.memory.utilization) * 100`,
	`max by (host.name, hw.name) (hw.power{hw.type="gpu"})`,
	`max by (host.name, hw.name) (hw.temperature{hw.sensor_location="gpu"})`,
	`max by (host.name, hw.name) (nvidia.gpu.clock.frequency{nvidia.gpu.clock="sm"}) / 1e6`,
	`sum by (host.name, hw.name, nvidia.gpu.throttle.reason) (nvidia.gpu.clock.throttle.active{nvidia.gpu.throttle.reason!="gpu_idle"}) > 0`,
	`sum by (host.name, hw.name, nvidia.xid.code) (increase(hw.errors{error.type="xid"}[1h]))`,
	`max by (host.name, hw.name, hw.state) (hw.status{hw.type="gpu", hw.state!="ok"}) > 0`,
}

type report struct {
	Tenants         int     `json:"tenants"`
	SeriesPerTenant int     `json:"series_per_tenant"`
	Queries         int     `json:"latency_queries"`
	DirectP50Ms     float64 `json:"direct_p50_ms"`
	DirectP99Ms     float64 `json:"direct_p99_ms"`
	ViaP50Ms        float64 `json:"via_p50_ms"`
	ViaP99Ms        float64 `json:"via_p99_ms"`
	AddedP50Ms      float64 `json:"added_p50_ms"`
	AddedP99Ms      float64 `json:"added_p99_ms"`
	Refreshes       int     `json:"concurrent_refreshes"`
	RefreshQueries  int     `json:"refresh_queries"`
	Answered        int     `json:"answered"`
	Refused429      int     `json:"refused_429"`
	Failed          int     `json:"failed"`
	RefreshSeconds  float64 `json:"refresh_seconds"`
	RSSBeforeMiB    float64 `json:"rss_before_mib"`
	PeakRSSMiB      float64 `json:"peak_rss_mib"`
}

func main() {
	wd, _ := os.Getwd()
	otelcol := flag.String("otelcol", filepath.Join(wd, "bin", "otelcol-gpu"), "the otelcol-gpu binary")
	root := flag.String("root", wd, "repository root (config/ is read from here)")
	out := flag.String("out", "", "write the report as JSON here")
	tenants := flag.Int("tenants", 100, "tenants")
	queries := flag.Int("queries", 2000, "latency samples (each: once direct, once through the component)")
	refreshes := flag.Int("refreshes", 1000, "concurrent dashboard refreshes")
	flag.Parse()
	r, err := run(*root, *otelcol, *tenants, *queries, *refreshes)
	if err != nil {
		fmt.Fprintln(os.Stderr, "readbench:", err)
		os.Exit(1)
	}
	fmt.Printf("read path: %d tenants x %d series; %d dashboard queries each way, one at a time\n", r.Tenants, r.SeriesPerTenant, r.Queries)
	fmt.Printf("  store directly:      p50 %.3f ms  p99 %.3f ms\n", r.DirectP50Ms, r.DirectP99Ms)
	fmt.Printf("  through tenant_query: p50 %.3f ms  p99 %.3f ms\n", r.ViaP50Ms, r.ViaP99Ms)
	fmt.Printf("  added:               p50 %.3f ms  p99 %.3f ms (per query, paired)\n", r.AddedP50Ms, r.AddedP99Ms)
	fmt.Printf("%d concurrent dashboard refreshes (%d queries) from %d tenants, shipped limits: answered %d, 429 %d, failed %d in %.1f s; gateway RSS %.0f MiB before, peak %.0f MiB\n",
		r.Refreshes, r.RefreshQueries, r.Tenants, r.Answered, r.Refused429, r.Failed, r.RefreshSeconds, r.RSSBeforeMiB, r.PeakRSSMiB)
	if *out != "" {
		b, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "readbench:", err)
			os.Exit(1)
		}
	}
}

func run(root, otelcol string, tenants, queries, refreshes int) (*report, error) {
	dir, err := os.MkdirTemp("", "readbench-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	ctx := context.Background()
	storeBin, err := vmstore.FindBinary(root)
	if err != nil {
		return nil, err
	}
	store, err := proc.RetryBind(bindAttempts, logf, func() (*vmstore.Store, error) {
		s := vmstore.New(storeBin, filepath.Join(dir, "store"), proc.Addr(proc.MustReserve()), nil)
		return s, s.Start(ctx)
	})
	if err != nil {
		return nil, err
	}
	defer func() { _ = store.Stop() }()

	end := time.Now().Truncate(time.Minute)
	series, err := seed(store, tenants, end)
	if err != nil {
		return nil, err
	}
	keys, creds := readKeys(tenants)
	credFile := filepath.Join(dir, "credentials.yaml")
	if err := os.WriteFile(credFile, []byte(creds), 0o600); err != nil {
		return nil, err
	}
	if err := devcerts.Write(devcerts.Options{Dir: filepath.Join(dir, "certs")}); err != nil {
		return nil, err
	}
	override := filepath.Join(dir, "override.yaml")
	if err := os.WriteFile(override, []byte("extensions:\n  tenant_query:\n    tls: null\nservice:\n  telemetry:\n    metrics: {level: none}\n"), 0o600); err != nil {
		return nil, err
	}
	var readURL string
	var health int
	gw, err := proc.RetryBind(bindAttempts, logf, func() (*proc.Proc, error) {
		health = proc.MustReserve()
		query := proc.MustReserve()
		readURL = "http://" + proc.Addr(query)
		gw, err := proc.Start("gateway", otelcol, []string{"--config", filepath.Join(root, "config", "gateway.yaml"), "--config", override}, []string{
			"OTELCOL_GPU_GRPC_ENDPOINT=" + proc.Addr(proc.MustReserve()),
			"OTELCOL_GPU_HTTP_ENDPOINT=" + proc.Addr(proc.MustReserve()),
			"OTELCOL_GPU_QUERY_ENDPOINT=" + proc.Addr(query),
			"OTELCOL_GPU_TLS_CERT_FILE=" + filepath.Join(dir, "certs", devcerts.ServerCertFile),
			"OTELCOL_GPU_TLS_KEY_FILE=" + filepath.Join(dir, "certs", devcerts.ServerKeyFile),
			"OTELCOL_GPU_CREDENTIALS_FILE=" + credFile,
			"OTELCOL_GPU_STORE_URL=" + store.URL,
			"OTELCOL_GPU_STATE_DIR=" + filepath.Join(dir, "state"),
			"OTELCOL_GPU_ALERTS_RELAY_ENDPOINT=" + proc.Addr(proc.MustReserve()),
			"OTELCOL_GPU_HEALTH_ENDPOINT=" + proc.Addr(health),
		}, filepath.Join(dir, "gateway.log"))
		if err != nil {
			return nil, err
		}
		return gw, gw.WaitHTTPOK(ctx, fmt.Sprintf("http://%s/", proc.Addr(health)), time.Minute)
	})
	if err != nil {
		return nil, err
	}
	defer func() { _ = gw.Stop(20 * time.Second) }()

	r := &report{Tenants: tenants, SeriesPerTenant: series, Queries: queries, Refreshes: refreshes}
	if err := latency(r, store.URL, readURL, keys, end); err != nil {
		return nil, err
	}
	r.RSSBeforeMiB = proc.PeakRSSMiB(gw.Pid())
	if err := refresh(r, readURL, keys, end); err != nil {
		return nil, err
	}
	r.PeakRSSMiB = proc.PeakRSSMiB(gw.Pid())
	if gw.Exited() {
		return nil, errors.New("the gateway exited during the run")
	}
	return r, nil
}

func logf(format string, args ...any) { fmt.Printf("readbench: "+format+"\n", args...) }

// seed writes, for each tenant, 2 VMs x 8 GPUs of the dashboard's metrics,
// one point a minute for the hour before end, under the tenant's label.
func seed(store *vmstore.Store, tenants int, end time.Time) (int, error) {
	type line struct {
		Metric     map[string]string `json:"metric"`
		Values     []float64         `json:"values"`
		Timestamps []int64           `json:"timestamps"`
	}
	metrics := []map[string]string{
		{"__name__": "hw.gpu.utilization", "hw.gpu.task": "general"},
		{"__name__": "hw.gpu.memory.utilization"},
		{"__name__": "hw.power", "hw.type": "gpu"},
		{"__name__": "hw.temperature", "hw.sensor_location": "gpu"},
		{"__name__": "nvidia.gpu.clock.frequency", "nvidia.gpu.clock": "sm"},
		{"__name__": "nvidia.gpu.clock.throttle.active", "nvidia.gpu.throttle.reason": "sw_power_cap"},
		{"__name__": "hw.errors", "error.type": "xid", "nvidia.xid.code": "79"},
		{"__name__": "hw.status", "hw.type": "gpu", "hw.state": "ok"},
	}
	perTenant := 0
	for t := range tenants {
		var body bytes.Buffer
		enc := json.NewEncoder(&body)
		perTenant = 0
		for vm := range 2 {
			for gpu := range 8 {
				for _, m := range metrics {
					l := line{Metric: map[string]string{"host.name": fmt.Sprintf("t%d-vm-%d", t, vm), "hw.name": fmt.Sprintf("nvidia%d", gpu)}}
					for k, v := range m {
						l.Metric[k] = v
					}
					for i := range 60 {
						l.Timestamps = append(l.Timestamps, end.Add(-time.Duration(59-i)*time.Minute).UnixMilli())
						l.Values = append(l.Values, float64((t+gpu+i)%100))
					}
					if err := enc.Encode(l); err != nil {
						return 0, err
					}
					perTenant++
				}
			}
		}
		resp, err := http.Post(store.URL+"/api/v1/import?extra_label=tenant_id="+tenantName(t), "application/json", &body)
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return 0, fmt.Errorf("seeding tenant %d: %s", t, resp.Status)
		}
	}
	return perTenant, store.Flush(context.Background())
}

func tenantName(t int) string { return "tenant-" + strconv.Itoa(t) }

func readKeys(tenants int) ([]string, string) {
	keys := make([]string, tenants)
	var b strings.Builder
	b.WriteString("credentials:\n")
	for t := range keys {
		keys[t] = fmt.Sprintf("bench-read-key-%d-%x", t, rand.Uint64())
		sum := sha256.Sum256([]byte(keys[t]))
		fmt.Fprintf(&b, "  - id: key-%d\n    tenant: %s\n    scope: read\n    sha256: %s\n", t, tenantName(t), hex.EncodeToString(sum[:]))
	}
	return keys, b.String()
}

func rangeParams(panel string, end time.Time) url.Values {
	return url.Values{"query": {panel}, "start": {strconv.FormatInt(end.Add(-time.Hour).Unix(), 10)},
		"end": {strconv.FormatInt(end.Unix(), 10)}, "step": {"60"}}
}

// latency sends each sampled query to the store directly and through the
// component, in alternating order, and reports both and the difference.
func latency(r *report, storeURL, readURL string, keys []string, end time.Time) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 30 * time.Second}
	var direct, via, added []float64
	for i := range r.Queries + r.Queries/10 { // the first tenth warms up
		t := rand.IntN(len(keys))
		p := rangeParams(panels[rand.IntN(len(panels))], end)
		d := url.Values{}
		for k, v := range p {
			d[k] = v
		}
		d.Set("extra_label", "tenant_id="+tenantName(t))
		var dd, vd time.Duration
		var err error
		one := func() { dd, err = timed(client, storeURL+"/api/v1/query_range?"+d.Encode(), "") }
		two := func() {
			var e2 error
			vd, e2 = timed(client, readURL+"/api/v1/query_range?"+p.Encode(), keys[t])
			err = errors.Join(err, e2)
		}
		if i%2 == 0 {
			one()
			two()
		} else {
			two()
			one()
		}
		if err != nil {
			return err
		}
		if i < r.Queries/10 {
			continue
		}
		direct = append(direct, ms(dd))
		via = append(via, ms(vd))
		added = append(added, ms(vd-dd))
	}
	r.DirectP50Ms, r.DirectP99Ms = pct(direct, 50), pct(direct, 99)
	r.ViaP50Ms, r.ViaP99Ms = pct(via, 50), pct(via, 99)
	r.AddedP50Ms, r.AddedP99Ms = pct(added, 50), pct(added, 99)
	return nil
}

func timed(client *http.Client, u, key string) (time.Duration, error) {
	req, err := http.NewRequest(http.MethodGet, u, http.NoBody)
	if err != nil {
		return 0, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	d := time.Since(start)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", u[:strings.IndexByte(u, '?')], resp.Status)
	}
	return d, err
}

// refresh has refreshes browsers (spread over the tenants) reload the
// dashboard at once: every panel's query in parallel.
func refresh(r *report, readURL string, keys []string, end time.Time) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2000, MaxConnsPerHost: 0}, Timeout: 60 * time.Second}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for b := range r.Refreshes {
		key := keys[b%len(keys)]
		for _, panel := range panels {
			wg.Go(func() {
				<-start
				req, _ := http.NewRequest(http.MethodPost, readURL+"/api/v1/query_range", strings.NewReader(rangeParams(panel, end).Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Authorization", "Bearer "+key)
				resp, err := client.Do(req)
				mu.Lock()
				defer mu.Unlock()
				r.RefreshQueries++
				switch {
				case err != nil:
					r.Failed++
				case resp.StatusCode == http.StatusOK:
					r.Answered++
				case resp.StatusCode == http.StatusTooManyRequests:
					r.Refused429++
				default:
					r.Failed++
				}
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			})
		}
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	r.RefreshSeconds = time.Since(t0).Seconds()
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func pct(v []float64, p int) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}
