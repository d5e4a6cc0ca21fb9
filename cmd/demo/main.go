// Command demo is `make demo`: on a machine without GPUs it runs the whole
// product on loopback. A store (VictoriaMetrics single-node), an event store
// (VictoriaLogs, for XID records), one gateway (config/gateway.yaml, with
// the customers' read API and UI) and agents (config/agent.yaml) for two or
// more tenants, each agent in a "VM" with simulated GPUs (test/nvmlsim, found
// through LD_LIBRARY_PATH the way a driver's library would be) plus the host's
// own metrics. Every VM is provisioned the way an operator would: a random
// token, its SHA-256 in the gateway's credentials file, the tenant id on the
// VM, and a read key per tenant. It prints where each customer reads their
// own data, where to look as the operator (the store's UI, with ready-made
// queries, and the events), a live summary per tenant, a usage table per
// tenant every minute (the usage job, config/usage.yaml, bills each closed
// hour to a billing sink), and stops everything on Ctrl-C, SIGTERM or a
// closed terminal (SIGTERM to each process, then waits), leaving nothing
// running.
//
// The simulated library is demo equipment: the production configs load the
// driver's libnvidia-ml.so.1 and nothing here changes them.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/alertengines"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/devcerts"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/vlstore"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/vmstore"
	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

var tenantNames = []string{"acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell"}

type options struct {
	root, dir, otelcol, nvmlsim, certs, storeBin, storeAddr string
	queryAddr, logStoreBin, logStoreAddr                    string
	vmalertBin, alertmanagerBin, vmalertAddr, amAddr        string
	agents, tenants, gpus                                   int
	interval, every, seconds, usageEvery                    time.Duration
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envDur(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if d, err := time.ParseDuration(v); err == nil {
		return d
	}
	if n, err := strconv.Atoi(v); err == nil { // plain seconds
		return time.Duration(n) * time.Second
	}
	return def
}

func envStr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() {
	wd, _ := os.Getwd()
	var o options
	flag.StringVar(&o.root, "root", wd, "repository root (config/ is read from here)")
	flag.StringVar(&o.dir, "dir", envStr("DEMO_DIR", filepath.Join(wd, ".demo")), "state, data and logs (emptied at start) [DEMO_DIR]")
	flag.StringVar(&o.otelcol, "otelcol", filepath.Join(wd, "bin", "otelcol-gpu"), "the otelcol-gpu binary")
	flag.StringVar(&o.nvmlsim, "nvmlsim", filepath.Join(wd, "build", "nvmlsim"), "folder of the simulated libnvidia-ml.so.1")
	flag.StringVar(&o.certs, "certs", filepath.Join(wd, ".certs"), "development certificates (written if missing)")
	flag.StringVar(&o.storeBin, "store", "", "victoria-metrics binary (default: $VICTORIA_METRICS_BIN or .tools/bin/victoria-metrics)")
	flag.StringVar(&o.storeAddr, "store-addr", envStr("DEMO_STORE_ADDR", "127.0.0.1:8428"), "the store's listen address (its UI is /vmui) [DEMO_STORE_ADDR]")
	flag.StringVar(&o.logStoreBin, "logstore", "", "victoria-logs binary, the GPU events' store (default: $VICTORIA_LOGS_BIN or .tools/bin/victoria-logs)")
	flag.StringVar(&o.logStoreAddr, "logstore-addr", envStr("DEMO_LOGSTORE_ADDR", "127.0.0.1:9428"), "the event store's listen address [DEMO_LOGSTORE_ADDR]")
	flag.StringVar(&o.vmalertBin, "vmalert", "", "vmalert binary, the alert rules' engine (default: $VMALERT_BIN or .tools/bin/vmalert)")
	flag.StringVar(&o.vmalertAddr, "vmalert-addr", envStr("DEMO_VMALERT_ADDR", "127.0.0.1:8880"), "vmalert's listen address [DEMO_VMALERT_ADDR]")
	flag.StringVar(&o.alertmanagerBin, "alertmanager", "", "Alertmanager binary, the alerts' router (default: $ALERTMANAGER_BIN or .tools/bin/alertmanager)")
	flag.StringVar(&o.amAddr, "alertmanager-addr", envStr("DEMO_ALERTMANAGER_ADDR", "127.0.0.1:9093"), "Alertmanager's listen address [DEMO_ALERTMANAGER_ADDR]")
	flag.StringVar(&o.queryAddr, "query-addr", envStr("DEMO_QUERY_ADDR", "127.0.0.1:9090"), "the customers' read API and UI (tenant_query, TLS) [DEMO_QUERY_ADDR]")
	flag.IntVar(&o.agents, "agents", envInt("DEMO_AGENTS", 2), "agents (VMs) [DEMO_AGENTS]")
	flag.IntVar(&o.tenants, "tenants", envInt("DEMO_TENANTS", 2), "tenants; agent i belongs to tenant i % tenants [DEMO_TENANTS]")
	flag.IntVar(&o.gpus, "gpus", envInt("DEMO_GPUS", 8), "simulated GPUs per agent, 1-64 [DEMO_GPUS]")
	flag.DurationVar(&o.interval, "interval", envDur("DEMO_INTERVAL", 5*time.Second), "the agents' scrape interval [DEMO_INTERVAL]")
	flag.DurationVar(&o.every, "summary-every", envDur("DEMO_SUMMARY_EVERY", 5*time.Second), "how often to print the summary [DEMO_SUMMARY_EVERY]")
	flag.DurationVar(&o.usageEvery, "usage-every", envDur("DEMO_USAGE_EVERY", time.Minute), "how often to print the usage table [DEMO_USAGE_EVERY]")
	flag.DurationVar(&o.seconds, "duration", envDur("DEMO_SECONDS", 0), "stop by itself after this long (0: run until Ctrl-C) [DEMO_SECONDS]")
	flag.Parse()
	if err := validate(&o); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(2)
	}
	// A closed terminal (SIGHUP) stops it as Ctrl-C does: killed, it would
	// leave its processes running until their next log line hit the closed pipe.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func validate(o *options) error {
	switch {
	case o.agents < 1:
		return fmt.Errorf("-agents must be >= 1, got %d", o.agents)
	case o.tenants < 1 || o.tenants > len(tenantNames) || o.tenants > o.agents:
		return fmt.Errorf("-tenants must be between 1 and min(agents, %d), got %d", len(tenantNames), o.tenants)
	case o.gpus < 1 || o.gpus > 64:
		return fmt.Errorf("-gpus must be between 1 and 64 (the simulated library's limit), got %d", o.gpus)
	case o.interval < time.Second:
		return fmt.Errorf("-interval must be at least 1s, got %s", o.interval)
	case o.every <= 0:
		return fmt.Errorf("-summary-every must be > 0, got %s", o.every)
	case o.usageEvery <= 0:
		return fmt.Errorf("-usage-every must be > 0, got %s", o.usageEvery)
	}
	for _, p := range []string{o.otelcol, filepath.Join(o.nvmlsim, "libnvidia-ml.so.1")} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s: %w (run it through 'make demo', which builds it)", p, err)
		}
	}
	if o.storeBin == "" {
		b, err := vmstore.FindBinary(o.root)
		if err != nil {
			return err
		}
		o.storeBin = b
	}
	if o.logStoreBin == "" {
		b, err := vlstore.FindBinary(o.root)
		if err != nil {
			return err
		}
		o.logStoreBin = b
	}
	if o.vmalertBin == "" {
		b, err := alertengines.FindVMAlert(o.root)
		if err != nil {
			return err
		}
		o.vmalertBin = b
	}
	if o.alertmanagerBin == "" {
		b, err := alertengines.FindAlertmanager(o.root)
		if err != nil {
			return err
		}
		o.alertmanagerBin = b
	}
	return nil
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "demo-" + hex.EncodeToString(b)
}

// fleet is agent i's simulated VM: its GPUs run one job in step (a few
// seconds apart, as data-parallel training does), so the VM's mean rises and
// falls; the tenants' workloads differ so their graphs do.
func fleet(i, gpus, tenant int) string {
	var b strings.Builder
	models := []string{"h100", "h200"}
	fmt.Fprintf(&b, "# demo VM %d (tenant %s)\ngpus = %d\nhost = %d\nmodel = %s\n", i, tenantNames[tenant], gpus, i+1, models[tenant%2])
	lo, hi, period := 55, 95, 180
	if tenant%2 == 1 {
		lo, hi, period = 10, 60, 120
	}
	for g := 0; g < gpus; g++ {
		fmt.Fprintf(&b, "gpu.%d.signal.utilization = wave %d %d %d %d\n", g, lo+g%4, hi-g%3, period, (i*37+g*3)%period)
	}
	b.WriteString("signal.memory_used = wave 20000 70000 300\n")
	// One XID error per VM, 20 s in, on its last GPU (XID 13: graphics engine
	// exception; 31: GPU memory page fault), for the event store to show.
	fmt.Fprintf(&b, "fault = 20 %d xid %d\n", gpus-1, []int{13, 31}[tenant%2])
	if i == 0 && gpus > 1 {
		// The first VM's GPU 1 falls off the bus 90 s in: its tenant's
		// GPUFailed and GPUXidNeedsAction alerts fire (the /alerts/ page).
		b.WriteString("fault = 90 1 xid 79\n")
	}
	return b.String()
}

// demoEvaluation is how often the demo's alert rules run.
const demoEvaluation = 10 * time.Second

// bindAttempts bounds the starts of a process whose port was taken.
const bindAttempts = 3

func logRetry(format string, args ...any) { fmt.Printf("demo: "+format+"\n", args...) }

func run(ctx context.Context, o options) error {
	if err := os.RemoveAll(o.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(o.certs, devcerts.CAFile)); err != nil {
		if err := devcerts.Write(devcerts.Options{Dir: o.certs}); err != nil {
			return fmt.Errorf("certificates: %w", err)
		}
	}
	var procs []*proc.Proc
	defer func() {
		fmt.Println()
		fmt.Println("demo: stopping (SIGTERM): agents, gateway, store...")
		for i := len(procs) - 1; i >= 0; i-- { // agents first, the store last
			if err := procs[i].Stop(20 * time.Second); err != nil {
				fmt.Println("demo:", err)
			}
		}
		fmt.Printf("demo: stopped; logs and data in %s\n", o.dir)
	}()

	// The store.
	storeLog := filepath.Join(o.dir, "store.log")
	logf, err := os.Create(storeLog)
	if err != nil {
		return err
	}
	defer func() { _ = logf.Close() }()
	store := vmstore.New(o.storeBin, filepath.Join(o.dir, "store-data"), o.storeAddr, logf)
	if err := store.Start(ctx); err != nil {
		return fmt.Errorf("%w (is something else listening on %s? set DEMO_STORE_ADDR)", err, o.storeAddr)
	}
	defer func() { _ = store.Stop() }()

	// The event store (XID log records).
	logStore, err := vlstore.Start(ctx, o.logStoreBin, filepath.Join(o.dir, "logstore-data"), o.logStoreAddr, logf)
	if err != nil {
		_ = logStore.Stop()
		return fmt.Errorf("%w (is something else listening on %s? set DEMO_LOGSTORE_ADDR)", err, o.logStoreAddr)
	}
	defer func() { _ = logStore.Stop() }()

	// Provision the VMs: token per VM, hash at the gateway, tenant on the VM.
	var creds strings.Builder
	creds.WriteString("credentials:\n")
	tokens := make([]string, o.agents)
	for i := range tokens {
		tokens[i] = randomToken()
		sum := sha256.Sum256([]byte(tokens[i]))
		// The provider's record of the VM: its instance id and GPUs, what
		// the gateway stamps as host.id and the usage job bills.
		fmt.Fprintf(&creds, "  - id: demo-vm-%d\n    tenant: %s\n    sha256: %s\n    instance_id: i-demo-%d\n    gpus: %d\n",
			i+1, tenantNames[i%o.tenants], hex.EncodeToString(sum[:]), i+1, o.gpus)
	}
	// A read key per tenant: what the customer's Grafana, curl or browser uses.
	readKeys := make([]string, o.tenants)
	for t := range readKeys {
		readKeys[t] = randomToken()
		sum := sha256.Sum256([]byte(readKeys[t]))
		fmt.Fprintf(&creds, "  - id: %s-demo-key\n    tenant: %s\n    scope: read\n    sha256: %s\n", tenantNames[t], tenantNames[t], hex.EncodeToString(sum[:]))
	}
	credsPath := filepath.Join(o.dir, "credentials.yaml")
	if err := os.WriteFile(credsPath, []byte(creds.String()), 0o600); err != nil {
		return err
	}

	// Ports are reserved (internal/testkit/proc); a port taken anyway by a
	// program outside the demo between the reservation and the bind means a
	// new set and another start.
	ports := map[string]int{}
	gwLog := filepath.Join(o.dir, "gateway.log")
	gw, err := proc.RetryBind(bindAttempts, logRetry, func() (*proc.Proc, error) {
		for _, k := range []string{"gw-grpc", "gw-http", "gw-health", "gw-metrics", "gw-relay"} {
			ports[k] = proc.MustReserve()
		}
		gw, err := proc.Start("gateway", o.otelcol, []string{"--config", filepath.Join(o.root, "config", "gateway.yaml")}, []string{
			"OTELCOL_GPU_GRPC_ENDPOINT=127.0.0.1:" + strconv.Itoa(ports["gw-grpc"]),
			"OTELCOL_GPU_HTTP_ENDPOINT=127.0.0.1:" + strconv.Itoa(ports["gw-http"]),
			"OTELCOL_GPU_TLS_CERT_FILE=" + filepath.Join(o.certs, devcerts.ServerCertFile),
			"OTELCOL_GPU_TLS_KEY_FILE=" + filepath.Join(o.certs, devcerts.ServerKeyFile),
			"OTELCOL_GPU_CREDENTIALS_FILE=" + credsPath,
			"OTELCOL_GPU_STORE_URL=" + store.URL,
			"OTELCOL_GPU_LOGS_STORE_URL=" + logStore.URL,
			"OTELCOL_GPU_STATE_DIR=" + filepath.Join(o.dir, "gateway-state"),
			"OTELCOL_GPU_HEALTH_ENDPOINT=127.0.0.1:" + strconv.Itoa(ports["gw-health"]),
			"OTELCOL_GPU_QUERY_ENDPOINT=" + o.queryAddr,
			"OTELCOL_GPU_METRICS_PORT=" + strconv.Itoa(ports["gw-metrics"]),
			"OTELCOL_GPU_VMALERT_URL=http://" + o.vmalertAddr,
			"OTELCOL_GPU_ALERTMANAGER_URL=http://" + o.amAddr,
			"OTELCOL_GPU_ALERTS_RELAY_ENDPOINT=127.0.0.1:" + strconv.Itoa(ports["gw-relay"]),
			// A demo shows an alert within seconds of its cause.
			"OTELCOL_GPU_ALERTS_EVALUATION_INTERVAL=" + demoEvaluation.String(),
			"OTELCOL_GPU_ALERTS_GROUP_WAIT=5s",
			"OTELCOL_GPU_ALERTS_GROUP_INTERVAL=1m",
		}, gwLog)
		if err != nil {
			return nil, err
		}
		return gw, gw.WaitHTTPOK(ctx, fmt.Sprintf("http://127.0.0.1:%d/", ports["gw-health"]), time.Minute)
	})
	if gw != nil {
		procs = append(procs, gw)
	}
	if err != nil {
		return err
	}

	// The alert engines, on the files the gateway's tenant_alerts wrote:
	// vmalert evaluates every tenant's rules on the store, Alertmanager
	// routes what fires to the tenants' receivers through the gateway.
	alertsDir := filepath.Join(o.dir, "gateway-state", "alerts")
	engineLog, err := os.Create(filepath.Join(o.dir, "alert-engines.log"))
	if err != nil {
		return err
	}
	defer func() { _ = engineLog.Close() }()
	am, err := alertengines.StartAlertmanager(ctx, o.alertmanagerBin, alertengines.AlertmanagerOptions{
		Addr: o.amAddr, ConfigFile: filepath.Join(alertsDir, "alertmanager.yml"), DataDir: filepath.Join(o.dir, "alertmanager-data"),
	}, engineLog)
	if err != nil {
		_ = am.Stop()
		return fmt.Errorf("%w (is something else listening on %s? set DEMO_ALERTMANAGER_ADDR)", err, o.amAddr)
	}
	defer func() { _ = am.Stop() }()
	vmalert, err := alertengines.StartVMAlert(ctx, o.vmalertBin, alertengines.VMAlertOptions{
		Addr: o.vmalertAddr, DatasourceURL: store.URL, NotifierURL: am.URL(),
		RulesGlob: filepath.Join(alertsDir, "rules", "*.yaml"), EvaluationInterval: demoEvaluation,
	}, engineLog)
	if err != nil {
		_ = vmalert.Stop()
		return fmt.Errorf("%w (is something else listening on %s? set DEMO_VMALERT_ADDR)", err, o.vmalertAddr)
	}
	defer func() { _ = vmalert.Stop() }()

	// The usage job (config/usage.yaml) and the billing system it sends to.
	billing, err := startBillingSink()
	if err != nil {
		return err
	}
	defer billing.close()
	usageLog := filepath.Join(o.dir, "usage.log")
	usageJob, err := proc.RetryBind(bindAttempts, logRetry, func() (*proc.Proc, error) {
		for _, k := range []string{"usage-health", "usage-metrics"} {
			ports[k] = proc.MustReserve()
		}
		u, err := proc.Start("usage", o.otelcol, []string{"--config", filepath.Join(o.root, "config", "usage.yaml")}, []string{
			"OTELCOL_GPU_STORE_URL=" + store.URL,
			"OTELCOL_GPU_LOGS_STORE_URL=" + logStore.URL,
			"OTELCOL_GPU_BILLING_URL=" + billing.url,
			// A demo that runs past the hour sees it billed a minute later.
			"OTELCOL_GPU_USAGE_GRACE=1m",
			"OTELCOL_GPU_GATEWAY_METRICS=[http://127.0.0.1:" + strconv.Itoa(ports["gw-metrics"]) + "/metrics]",
			"OTELCOL_GPU_STATE_DIR=" + filepath.Join(o.dir, "usage-state"),
			"OTELCOL_GPU_HEALTH_ENDPOINT=127.0.0.1:" + strconv.Itoa(ports["usage-health"]),
			"OTELCOL_GPU_METRICS_PORT=" + strconv.Itoa(ports["usage-metrics"]),
		}, usageLog)
		if err != nil {
			return nil, err
		}
		return u, u.WaitHTTPOK(ctx, fmt.Sprintf("http://127.0.0.1:%d/", ports["usage-health"]), time.Minute)
	})
	if usageJob != nil {
		procs = append(procs, usageJob)
	}
	if err != nil {
		return err
	}
	usageSrc := &usage.Source{StoreURL: store.URL, EventsURL: logStore.URL, TenantLabel: "tenant_id",
		EventsHeaders: map[string]string{"AccountID": "0", "ProjectID": "1"}}

	type agentInfo struct{ grpc, http int }
	agents := make([]agentInfo, o.agents)
	for i := 0; i < o.agents; i++ {
		dir := filepath.Join(o.dir, fmt.Sprintf("vm-%d", i+1))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		tenant := i % o.tenants
		files := map[string]string{"token": tokens[i] + "\n", "tenant": tenantNames[tenant] + "\n", "fleet": fleet(i, o.gpus, tenant)}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
				return err
			}
		}
		p := map[string]int{}
		log := filepath.Join(o.dir, fmt.Sprintf("agent-%d.log", i+1))
		a, err := proc.RetryBind(bindAttempts, logRetry, func() (*proc.Proc, error) {
			for _, k := range []string{"grpc", "http", "health", "metrics"} {
				p[k] = proc.MustReserve()
			}
			a, err := proc.Start(fmt.Sprintf("agent %d", i+1), o.otelcol, []string{"--config", filepath.Join(o.root, "config", "agent.yaml")}, []string{
				"LD_LIBRARY_PATH=" + o.nvmlsim,
				"NVMLSIM_FLEET=" + filepath.Join(dir, "fleet"),
				"OTELCOL_GPU_GATEWAY_ENDPOINT=localhost:" + strconv.Itoa(ports["gw-grpc"]),
				"OTELCOL_GPU_CA_FILE=" + filepath.Join(o.certs, devcerts.CAFile),
				"OTELCOL_GPU_TOKEN_FILE=" + filepath.Join(dir, "token"),
				"OTELCOL_GPU_TENANT_FILE=" + filepath.Join(dir, "tenant"),
				"OTELCOL_GPU_STATE_DIR=" + filepath.Join(dir, "state"),
				"OTELCOL_GPU_INTERVAL=" + o.interval.String(),
				"OTELCOL_GPU_OTLP_GRPC=127.0.0.1:" + strconv.Itoa(p["grpc"]),
				"OTELCOL_GPU_OTLP_HTTP=127.0.0.1:" + strconv.Itoa(p["http"]),
				"OTELCOL_GPU_HEALTH_ENDPOINT=127.0.0.1:" + strconv.Itoa(p["health"]),
				"OTELCOL_GPU_METRICS_PORT=" + strconv.Itoa(p["metrics"]),
			}, log)
			if err != nil {
				return nil, err
			}
			return a, a.WaitHTTPOK(ctx, fmt.Sprintf("http://127.0.0.1:%d/", p["health"]), time.Minute)
		})
		if a != nil {
			procs = append(procs, a)
		}
		if err != nil {
			return err
		}
		agents[i] = agentInfo{p["grpc"], p["http"]}
	}

	ui := store.URL + "/vmui/#/?" + url.Values{
		"g0.expr":          {`avg by (tenant_id) (hw.gpu.utilization{hw.gpu.task="general"}) * 100`},
		"g0.range_input":   {"15m"},
		"g0.relative_time": {"last_15_minutes"},
		"g0.tab":           {"0"},
	}.Encode()
	fmt.Printf("demo: store, gateway and %d agents (%d simulated GPUs each, host metrics, every %s) for %d tenants are running.\n",
		o.agents, o.gpus, o.interval, o.tenants)
	fmt.Printf("  the store's UI, GPU utilization per tenant (%%):\n    %s\n", ui)
	fmt.Println("  more queries to paste there:")
	fmt.Printf("    hw.gpu.utilization{tenant_id=%q,hw.gpu.task=\"general\"}   one tenant's GPUs\n", tenantNames[0])
	fmt.Println(`    sum by (tenant_id) (hw.power)                                   power per tenant (W)`)
	fmt.Println(`    hw.status{hw.state!="ok"} == 1                                  GPUs not ok`)
	fmt.Println(`    count by (tenant_id) ({__name__!=""})                           series per tenant`)
	printReadPath(o, readKeys)
	fmt.Printf("  the event store (GPU events of every tenant, the provider's view): its UI %s/select/vmui/\n", logStore.URL)
	fmt.Printf("  gateway: OTLP/gRPC+TLS 127.0.0.1:%d, own metrics http://127.0.0.1:%d/metrics\n", ports["gw-grpc"], ports["gw-metrics"])
	for i, a := range agents {
		fmt.Printf("  agent %d (tenant %s): local OTLP grpc 127.0.0.1:%d, http 127.0.0.1:%d\n", i+1, tenantNames[i%o.tenants], a.grpc, a.http)
	}
	fmt.Printf("  usage: the usage job (config/usage.yaml) bills each closed hour to a billing sink at %s (CloudEvents, as OpenMeter takes them);\n", billing.url)
	fmt.Printf("    each tenant sees its records as usage.* in its UI once the hour closed; a CSV of any hours:\n")
	fmt.Printf("    bin/usage report -store %s -events %s -from %s\n", store.URL, logStore.URL, time.Now().UTC().Truncate(time.Hour).Format(usage.HourLayout))
	fmt.Printf("  logs: %s\n", o.dir)
	fmt.Printf("Summary every %s, usage every %s; Ctrl-C stops everything.\n", o.every, o.usageEvery)

	var deadline <-chan time.Time
	if o.seconds > 0 {
		deadline = time.After(o.seconds)
	}
	tick := time.NewTicker(o.every)
	defer tick.Stop()
	usageTick := time.NewTicker(o.usageEvery)
	defer usageTick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-deadline:
			return nil
		case <-usageTick.C:
			usageTable(ctx, usageSrc, billing)
			continue
		case <-tick.C:
		}
		for _, p := range procs {
			if p.Exited() {
				return fmt.Errorf("%s exited unexpectedly; see %s", p.Name, p.Log)
			}
		}
		if !store.Running() {
			return errors.New("the store exited unexpectedly; see store.log")
		}
		summary(ctx, store, o)
	}
}

// printReadPath says how each tenant reads its own data through the
// gateway's tenant_query: the UI and its login, and a curl line that works
// as pasted (the key in a header, never in the URL).
func printReadPath(o options, keys []string) {
	base := "https://" + o.queryAddr
	ca, err := filepath.Abs(filepath.Join(o.certs, devcerts.CAFile))
	if err != nil {
		ca = filepath.Join(o.certs, devcerts.CAFile)
	}
	fmt.Printf("  customers read their own data at %s (TLS from the development CA %s: import it, or accept the browser's warning):\n", base, ca)
	for t, key := range keys {
		fmt.Printf("    %s: UI %s/vmui/ -> log in with the read key %s -> Dashboards shows %s's GPUs only; its GPU events at %s/events/\n", tenantNames[t], base, key, tenantNames[t], base)
		fmt.Printf("      curl --cacert %s -H 'Authorization: Bearer %s' %s/api/v1/query --data-urlencode 'query=avg by (host.name) (hw.gpu.utilization{hw.gpu.task=\"general\"})'\n",
			ca, key, base)
		fmt.Printf("      alerts: %s/alerts/ (the default GPU rule pack; add rules and a webhook there, or through %s/alerting/v1/)\n", base, base)
		fmt.Printf("      events (XID errors; each VM has one about 20 s in): curl --cacert %s -H 'Authorization: Bearer %s' %s/select/logsql/query --data-urlencode 'query=nvidia.xid.code:*'\n",
			ca, key, base)
	}
	fmt.Printf("    Grafana: Prometheus data source, URL %s, basic auth with any user and the key as password; the same for a VictoriaLogs data source (GPU events) (docs/read-path.md, \"Grafana\")\n", base)
}

// summary prints, per tenant, what the store holds: series, GPUs seen and
// their mean utilization now.
func summary(ctx context.Context, store *vmstore.Store, o options) {
	_ = store.Flush(ctx)
	now := time.Now().Format("15:04:05")
	for t := 0; t < o.tenants; t++ {
		scope := "tenant_id=" + tenantNames[t]
		series, err1 := store.Scalar(ctx, `count({__name__!=""})`, scope)
		gpus, err2 := store.Scalar(ctx, `count(count by (hw.id) (hw.gpu.utilization))`, scope)
		util, err3 := store.Scalar(ctx, `avg(hw.gpu.utilization{hw.gpu.task="general"})`, scope)
		if err := errors.Join(err1, err2, err3); err != nil {
			fmt.Printf("%s  %-8s  (query failed: %v)\n", now, tenantNames[t], err)
			continue
		}
		want := o.gpus * ((o.agents - t + o.tenants - 1) / o.tenants)
		fmt.Printf("%s  %-8s  series stored %6.0f   GPUs seen %3.0f/%d   mean GPU utilization %5.1f%%\n",
			now, tenantNames[t], series, gpus, want, util*100)
	}
}
