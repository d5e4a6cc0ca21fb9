//go:build system

package smoke

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/loadgen"

	"github.com/stretchr/testify/require"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
)

func toolBinary(t *testing.T, env, name string) string {
	p := os.Getenv(env)
	if p == "" {
		p = filepath.Join(proc.RepoRoot(t), "bin", name)
	}
	_, err := os.Stat(p)
	require.NoError(t, err, "build it with 'make %s' or set %s", name, env)
	return p
}

// The load generator's command line: a sink, load against it for a couple
// of seconds, a JSON report whose count the sink confirms.
func TestLoadgenCommand(t *testing.T) {
	bin := toolBinary(t, "LOADGEN_BIN", "loadgen")
	out, code := proc.Run(t, bin, []string{"credentials", "-tenants", "3"})
	require.Equal(t, 0, code, out)
	require.Equal(t, 3, strings.Count(out, "sha256: "))

	port := proc.Port(t)
	sink := exec.Command(bin, "sink", "-listen", proc.Addr(port))
	stdout, err := sink.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, sink.Start())
	t.Cleanup(func() { _ = sink.Process.Kill(); _ = sink.Wait() })
	require.Eventually(t, func() bool {
		_, code := proc.Run(t, bin, []string{"-protocol", "http", "-endpoint", "http://" + proc.Addr(port), "-agents", "1", "-tenants", "1", "-requests", "1", "-duration", "0"})
		return code == 0
	}, 10*time.Second, 200*time.Millisecond)

	out, code = proc.Run(t, bin, []string{"-protocol", "http", "-endpoint", "http://" + proc.Addr(port), "-agents", "4", "-tenants", "2", "-duration", "2s", "-rate", "100"})
	require.Equal(t, 0, code, out)
	var rep struct {
		Points    int64                       `json:"points_accepted"`
		PerReq    int                         `json:"points_per_request"`
		Latency   map[string]float64          `json:"latency_ms"`
		PerTenant map[string]map[string]int64 `json:"per_tenant"`
	}
	require.NoError(t, json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &rep), out)
	require.Equal(t, loadgen.DefaultShape.Points(), rep.PerReq)
	require.Positive(t, rep.Points)
	require.Len(t, rep.PerTenant, 2)
	require.Contains(t, rep.Latency, "p99")

	require.NoError(t, sink.Process.Signal(syscall.SIGTERM))
	var counts struct {
		Points int64 `json:"points"`
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(line), &counts), line)
	require.Equal(t, rep.Points+int64(loadgen.DefaultShape.Points()), counts.Points, "the sink counted every point loadgen had acknowledged (and the probe's)")

	out, code = proc.Run(t, bin, []string{"-protocol", "udp"})
	require.Equal(t, 1, code)
	require.Contains(t, out, `protocol "udp"`)
}

// make bench's harness runs for a few seconds (-quick) and writes a
// report with every pipeline, the ratios and the agent's footprint.
func TestBenchHarnessQuick(t *testing.T) {
	bin := toolBinary(t, "GWBENCH_BIN", "gwbench")
	lib := os.Getenv("NVMLSIM_LIB")
	if lib == "" {
		lib = filepath.Join(proc.RepoRoot(t), "build", "nvmlsim", "libnvidia-ml.so.1")
	}
	out := filepath.Join(t.TempDir(), "report.json")
	cmd := exec.Command(bin, "-quick", "-otelcol", proc.Binary(t), "-nvmlsim", filepath.Dir(lib),
		"-root", proc.RepoRoot(t), "-out", out, "-profile", "")
	text, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", text)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	var rep struct {
		Rows []struct {
			Pipeline  string  `json:"pipeline"`
			Transport string  `json:"transport"`
			Tenants   int     `json:"tenants"`
			PPS       float64 `json:"delivered_points_per_second"`
			CPU       float64 `json:"gateway_cpu_percent_of_one_core"`
			RSS       float64 `json:"gateway_peak_rss_mib"`
		} `json:"gateway"`
		Ratios map[string]float64 `json:"ratios"`
		Agent  []struct {
			CPU float64 `json:"cpu_percent_of_one_core"`
			RSS float64 `json:"peak_rss_mib"`
			PSS float64 `json:"pss_end_mib"`
		} `json:"agent"`
	}
	require.NoError(t, json.Unmarshal(b, &rep), string(b))
	seen := map[string]bool{}
	for _, r := range rep.Rows {
		require.Positive(t, r.PPS, "%+v", r)
		require.Positive(t, r.CPU, "%+v", r)
		require.Positive(t, r.RSS, "%+v", r)
		seen[r.Pipeline+"/"+r.Transport+"@"+strconv.Itoa(r.Tenants)] = true
	}
	for _, k := range []string{"a/grpc@1", "b/grpc@1", "c/grpc@1", "a/grpc@10", "b/grpc@10", "c/grpc@10", "c+tls/grpc@10",
		"a/http@1", "b/http@1", "c/http@1", "c/grpc@10", "c+disk/grpc@10"} {
		require.True(t, seen[k], "no %s row in %s", k, b)
	}
	for _, k := range []string{"c/a@grpc/1", "c/b@grpc/1", "c/a@grpc/10", "c/b@grpc/10", "c/a@http/1", "c/b@http/1", "d/c@grpc/10", "d/a@grpc/10", "d/a@grpc/10/in-flight-8"} {
		require.Positive(t, rep.Ratios[k], k)
	}
	require.Len(t, rep.Agent, 1)
	require.Positive(t, rep.Agent[0].RSS)
	require.Positive(t, rep.Agent[0].PSS)
	require.Contains(t, string(text), "ratios (median over alternating rounds")
	require.Contains(t, string(text), "| grpc | 10 | 256 | 1 per agent |", "the summary table has the durable gateway's row")
	require.Contains(t, string(text), "| grpc | 10 | 256 | 8 |", "... and its row with 8 requests in flight")
	require.Contains(t, string(text), "core 0 idle %", "the rows say how the gateway's core spent the window")
}
