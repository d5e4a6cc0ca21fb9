//go:build system

// Package smoke starts the built otelcol-gpu binary with the shipped configs
// and checks that it validates, lists its components, runs in both roles
// (agent -> gateway over TLS with a bearer token), stops cleanly on SIGTERM,
// and refuses bad configs with an error that names the culprit.
package smoke

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/devcerts"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/otlpsink"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
)

const shutdownDeadline = 10 * time.Second

func configPath(t *testing.T, name string) string {
	return filepath.Join(proc.RepoRoot(t), "config", name)
}

func TestValidateShippedConfigs(t *testing.T) {
	bin := proc.Binary(t)
	for _, cfg := range []string{"agent.yaml", "gateway.yaml", "query.yaml"} {
		t.Run(cfg, func(t *testing.T) {
			args := []string{"validate", "--config", configPath(t, cfg)}
			if cfg == "query.yaml" {
				// The read tier has no pipelines (its unit passes the gate).
				args = append(args, "--feature-gates=service.AllowNoPipelines")
			}
			out, code := proc.Run(t, bin, args)
			require.Equal(t, 0, code, out)
		})
	}
}

func TestComponentsListsTheDistribution(t *testing.T) {
	out, code := proc.Run(t, proc.Binary(t), []string{"components"})
	require.Equal(t, 0, code, out)
	want := map[string][]string{
		"receivers":  {"otlp", "host_metrics", "nvml"},
		"processors": {"memory_limiter", "batch", "resource", "attributes", "tenant"},
		"exporters":  {"otlp_grpc", "otlp_http", "debug", "tenant_otlp_http"},
		"extensions": {"health_check", "file_storage", "bearertokenauth", "zpages", "pprof", "tenant_auth"},
		"providers":  {"env", "file", "yaml"},
	}
	for kind, names := range want {
		section := componentSection(t, out, kind)
		for _, name := range names {
			require.Regexp(t, regexp.MustCompile(`(?m)^\s+- (name|scheme): `+regexp.QuoteMeta(name)+`$`), section,
				"%s %q missing from 'components'", kind, name)
		}
	}
}

// componentSection cuts one top-level list ("receivers:", ...) out of the
// YAML that 'components' prints.
func componentSection(t *testing.T, out, kind string) string {
	t.Helper()
	start := strings.Index(out, "\n"+kind+":")
	require.GreaterOrEqual(t, start, 0, "no %q section in:\n%s", kind, out)
	rest := out[start+len(kind)+2:]
	if end := regexp.MustCompile(`\n[a-z]`).FindStringIndex(rest); end != nil {
		rest = rest[:end[0]]
	}
	return rest
}

// stack is a gateway and an agent wired together on loopback.
type stack struct {
	dir, certs, token                 string
	gwGRPC, gwHTTP, gwHealth, gwQuery int
	gwMetrics, agHealth               int
	agMetrics, agGRPC, agHTTP         int
	store                             int
	storeURL                          string // default: a port nothing listens on
}

func newStack(t *testing.T) *stack {
	s := &stack{dir: t.TempDir()}
	s.certs = filepath.Join(s.dir, "certs")
	require.NoError(t, devcerts.Write(devcerts.Options{Dir: s.certs}))
	s.token = "smoke-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	require.NoError(t, os.WriteFile(filepath.Join(s.dir, "agent-token"), []byte(s.token+"\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(s.dir, "tenant"), []byte("acme\n"), 0o600))
	creds := "credentials:\n" + credential("vm-other", "globex", "some-other-token") + credential("vm-smoke", "acme", s.token)
	require.NoError(t, os.WriteFile(filepath.Join(s.dir, "credentials.yaml"), []byte(creds), 0o600))
	for _, p := range []*int{&s.gwGRPC, &s.gwHTTP, &s.gwHealth, &s.gwQuery, &s.gwMetrics, &s.agHealth, &s.agMetrics, &s.agGRPC, &s.agHTTP, &s.store} {
		*p = proc.Port(t)
	}
	return s
}

func (s *stack) gatewayEnv() []string {
	return []string{
		"OTELCOL_GPU_GRPC_ENDPOINT=" + proc.Addr(s.gwGRPC),
		"OTELCOL_GPU_HTTP_ENDPOINT=" + proc.Addr(s.gwHTTP),
		"OTELCOL_GPU_TLS_CERT_FILE=" + filepath.Join(s.certs, devcerts.ServerCertFile),
		"OTELCOL_GPU_TLS_KEY_FILE=" + filepath.Join(s.certs, devcerts.ServerKeyFile),
		"OTELCOL_GPU_CREDENTIALS_FILE=" + filepath.Join(s.dir, "credentials.yaml"),
		// Nothing listens here: the smoke test checks what the gateway accepted.
		"OTELCOL_GPU_STORE_URL=" + s.storeOrNothing(),
		"OTELCOL_GPU_LOGS_STORE_URL=" + s.storeOrNothing(),
		"OTELCOL_GPU_STATE_DIR=" + filepath.Join(s.dir, "gateway-state"),
		"OTELCOL_GPU_ALERTS_RELAY_ENDPOINT=" + proc.Addr(proc.MustReserve()),
		"OTELCOL_GPU_HEALTH_ENDPOINT=" + proc.Addr(s.gwHealth),
		"OTELCOL_GPU_QUERY_ENDPOINT=" + proc.Addr(s.gwQuery),
		"OTELCOL_GPU_METRICS_PORT=" + strconv.Itoa(s.gwMetrics),
	}
}

func (s *stack) storeOrNothing() string {
	if s.storeURL != "" {
		return s.storeURL
	}
	return "http://" + proc.Addr(s.store)
}

func (s *stack) agentEnv() []string {
	return []string{
		"OTELCOL_GPU_GATEWAY_ENDPOINT=localhost:" + strconv.Itoa(s.gwGRPC),
		"OTELCOL_GPU_CA_FILE=" + filepath.Join(s.certs, devcerts.CAFile),
		"OTELCOL_GPU_TOKEN_FILE=" + filepath.Join(s.dir, "agent-token"),
		"OTELCOL_GPU_TENANT_FILE=" + filepath.Join(s.dir, "tenant"),
		"OTELCOL_GPU_STATE_DIR=" + filepath.Join(s.dir, "agent-state"),
		"OTELCOL_GPU_INTERVAL=1s",
		"OTELCOL_GPU_OTLP_GRPC=" + proc.Addr(s.agGRPC),
		"OTELCOL_GPU_OTLP_HTTP=" + proc.Addr(s.agHTTP),
		"OTELCOL_GPU_HEALTH_ENDPOINT=" + proc.Addr(s.agHealth),
		"OTELCOL_GPU_METRICS_PORT=" + strconv.Itoa(s.agMetrics),
	}
}

// credential is one entry of tenant_auth's credentials file.
func credential(id, tenant, token string) string {
	sum := sha256.Sum256([]byte(token))
	return fmt.Sprintf("  - id: %s\n    tenant: %s\n    sha256: %s\n", id, tenant, hex.EncodeToString(sum[:]))
}

// start runs the gateway, then the agent, each until its health check
// answers; a process whose reserved port was taken anyway (by a program
// outside the project) is started again on new ones.
func (s *stack) start(t *testing.T, bin string) (gw, agent *proc.Proc) {
	const attempts = 3
	gw, err := proc.RetryBind(attempts, t.Logf, func() (*proc.Proc, error) {
		gw := proc.StartTest(t, "gateway", bin, []string{"--config", configPath(t, "gateway.yaml")}, s.gatewayEnv()...)
		err := gw.WaitHTTPOK(context.Background(), healthURL(s.gwHealth), 30*time.Second)
		if gw.BindFailed() {
			s.gwGRPC, s.gwHTTP, s.gwHealth, s.gwQuery, s.gwMetrics = proc.Port(t), proc.Port(t), proc.Port(t), proc.Port(t), proc.Port(t)
		}
		return gw, err
	})
	require.NoError(t, err)
	agent, err = proc.RetryBind(attempts, t.Logf, func() (*proc.Proc, error) {
		agent := proc.StartTest(t, "agent", bin, []string{"--config", configPath(t, "agent.yaml")}, s.agentEnv()...)
		err := agent.WaitHTTPOK(context.Background(), healthURL(s.agHealth), 30*time.Second)
		if agent.BindFailed() {
			s.agHealth, s.agMetrics, s.agGRPC, s.agHTTP = proc.Port(t), proc.Port(t), proc.Port(t), proc.Port(t)
		}
		return agent, err
	})
	require.NoError(t, err)
	return gw, agent
}

func healthURL(port int) string { return "http://" + proc.Addr(port) + "/" }

// acceptedPoints reads the gateway's own counter of metric points its otlp
// receiver accepted.
func acceptedPoints(t *testing.T, metricsPort int) float64 {
	return ownMetric(t, metricsPort, "otelcol_receiver_accepted_metric_points")
}

// ownMetric sums every series of one of the collector's own counters.
func ownMetric(t *testing.T, metricsPort int, name string) float64 {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	if err != nil {
		return 0
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.NoError(t, err)
	total := 0.0
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(?:_[a-z]+)?(?:_total)?(?:\{[^}]*\})? ([0-9.e+]+)$`)
	for _, m := range re.FindAllStringSubmatch(string(body), -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		require.NoError(t, err)
		total += v
	}
	return total
}

func TestAgentAndGatewayRunAndStopCleanly(t *testing.T) {
	bin := proc.Binary(t)
	s := newStack(t)

	gw, agent := s.start(t, bin)

	// The agent's host metrics reach the gateway through TLS and the token.
	require.Eventually(t, func() bool { return acceptedPoints(t, s.gwMetrics) > 0 }, 30*time.Second, 250*time.Millisecond,
		"the gateway accepted no metric points from the agent")
	// No NVIDIA driver on this machine: the agent runs on, and says so once.
	require.Equal(t, 1, strings.Count(agent.Output(), "NVML library not found"), agent.Output())
	// The shipped gateway keeps its queues in the queue log, synced before
	// each answer: its own metrics time every group write and count the
	// log's bytes on disk.
	require.Eventually(t, func() bool {
		return ownMetric(t, s.gwMetrics, "otelcol_exporter_tenant_queue_log_write_duration_count") > 0 &&
			ownMetric(t, s.gwMetrics, "otelcol_exporter_tenant_queue_log_group_parts_count") > 0 &&
			ownMetric(t, s.gwMetrics, "otelcol_exporter_tenant_queue_log_bytes") > 0
	}, 30*time.Second, 250*time.Millisecond, "the gateway's queue log metrics")

	start := time.Now()
	require.NoError(t, agent.Stop(shutdownDeadline))
	require.NoError(t, gw.Stop(shutdownDeadline))
	t.Logf("agent and gateway stopped in %s", time.Since(start))
}

func TestAgentClaimingAnotherTenantLandsAsItsTokensTenant(t *testing.T) {
	bin := proc.Binary(t)
	s := newStack(t)
	store := otlpsink.Start(t)
	s.storeURL = store.URL
	// The VM's root edits the tenant the agent stamps; the token is still acme's.
	require.NoError(t, os.WriteFile(filepath.Join(s.dir, "tenant"), []byte("globex\n"), 0o600))

	gw, agent := s.start(t, bin)

	require.Eventually(t, func() bool {
		return ownMetric(t, s.gwMetrics, "otelcol_processor_tenant_mismatched_resources") > 0
	}, 30*time.Second, 250*time.Millisecond, "the gateway did not see the spoofed tenant")
	require.Eventually(t, func() bool { return strings.Contains(gw.Output(), "payload claimed another tenant") }, 10*time.Second, 100*time.Millisecond)
	require.Contains(t, gw.Output(), `"claimed": "globex"`)

	// What reaches the store: acme's label and attribute only (tenant_otlp_http).
	require.Eventually(t, func() bool { return len(store.Metrics()) > 0 }, 30*time.Second, 250*time.Millisecond)
	for i, md := range store.Metrics() {
		require.Equal(t, "extra_label=tenant_id=acme", store.MetricsQueries()[i])
		rms := md.ResourceMetrics()
		for j := 0; j < rms.Len(); j++ {
			v, _ := rms.At(j).Resource().Attributes().Get("tenant.id")
			require.Equal(t, "acme", v.Str())
		}
	}
	require.NoError(t, agent.Stop(shutdownDeadline))
	require.NoError(t, gw.Stop(shutdownDeadline))
}

func TestMutualTLSOnlyLetsProviderCertificatesIn(t *testing.T) {
	bin := proc.Binary(t)
	s := newStack(t)
	gwEnv := append(s.gatewayEnv(), "OTELCOL_GPU_CLIENT_CA_FILE="+filepath.Join(s.certs, devcerts.CAFile))
	gw := proc.StartTest(t, "gateway", bin, []string{"--config", configPath(t, "gateway.yaml")}, gwEnv...)
	require.NoError(t, gw.WaitHTTPOK(context.Background(), healthURL(s.gwHealth), 30*time.Second))

	// An agent with the right token but no client certificate: the handshake fails.
	agent := proc.StartTest(t, "agent", bin, []string{"--config", configPath(t, "agent.yaml")}, s.agentEnv()...)
	require.NoError(t, agent.WaitHTTPOK(context.Background(), healthURL(s.agHealth), 30*time.Second))
	require.Eventually(t, func() bool {
		return strings.Contains(agent.Output(), "tls") && strings.Contains(agent.Output(), "Unavailable")
	},
		30*time.Second, 250*time.Millisecond, "the agent without a certificate should fail the handshake")
	require.Zero(t, acceptedPoints(t, s.gwMetrics))
	require.NoError(t, agent.Stop(shutdownDeadline))

	// With the provider-issued client certificate it gets in.
	withCert := append(s.agentEnv(),
		"OTELCOL_GPU_CLIENT_CERT_FILE="+filepath.Join(s.certs, devcerts.ClientCertFile),
		"OTELCOL_GPU_CLIENT_KEY_FILE="+filepath.Join(s.certs, devcerts.ClientKeyFile))
	agent = proc.StartTest(t, "agent-with-cert", bin, []string{"--config", configPath(t, "agent.yaml")}, withCert...)
	require.NoError(t, agent.WaitHTTPOK(context.Background(), healthURL(s.agHealth), 30*time.Second))
	require.Eventually(t, func() bool { return acceptedPoints(t, s.gwMetrics) > 0 }, 30*time.Second, 250*time.Millisecond)
	require.NoError(t, agent.Stop(shutdownDeadline))
	require.NoError(t, gw.Stop(shutdownDeadline))
}

func TestGatewayRefusesAnAgentWithAWrongToken(t *testing.T) {
	bin := proc.Binary(t)
	s := newStack(t)
	require.NoError(t, os.WriteFile(filepath.Join(s.dir, "agent-token"), []byte("not-a-listed-token\n"), 0o600))

	gw, agent := s.start(t, bin)

	require.Eventually(t, func() bool { return strings.Contains(agent.Output(), "Unauthenticated") }, 30*time.Second, 250*time.Millisecond,
		"the agent never reported that the gateway refused its token")
	require.Zero(t, acceptedPoints(t, s.gwMetrics), "points accepted with a wrong token")
	require.NoError(t, agent.Stop(shutdownDeadline))
	require.NoError(t, gw.Stop(shutdownDeadline))
}

func TestBadConfigIsRefusedNamingTheKey(t *testing.T) {
	bin := proc.Binary(t)
	agent, err := os.ReadFile(configPath(t, "agent.yaml"))
	require.NoError(t, err)

	cases := []struct {
		name, from, to, want string
	}{
		// host_metrics ignores unknown keys at its top level (upstream
		// Unmarshal uses WithIgnoreUnused); otlp, like most components, does not.
		{"unknown key", "        endpoint: ${env:OTELCOL_GPU_OTLP_GRPC", "        endpiont: ${env:OTELCOL_GPU_OTLP_GRPC", "endpiont"},
		{"bad value", "${env:OTELCOL_GPU_INTERVAL:-10s}", "every-ten-seconds", "collection_interval"},
		{"unknown component", "  memory_limiter:\n", "  memory_limitter:\n", "memory_limitter"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Contains(t, string(agent), tc.from)
			path := filepath.Join(t.TempDir(), "agent.yaml")
			require.NoError(t, os.WriteFile(path, []byte(strings.Replace(string(agent), tc.from, tc.to, 1)), 0o600))
			for _, args := range [][]string{{"validate", "--config", path}, {"--config", path}} {
				out, code := proc.Run(t, bin, args)
				require.NotEqual(t, 0, code, "%v accepted a bad config:\n%s", args, out)
				require.Contains(t, out, tc.want, "%v: the error does not name %q", args, tc.want)
			}
		})
	}
}
