//go:build e2e

package readpath

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/vlstore"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/vmstore"
)

// TestDemoPrintsWorkingReadPath runs `make demo`'s program and pastes the
// curl line it prints for each tenant into a shell: the line must work as
// printed and answer that tenant's GPUs; likewise the line that shows a
// tenant's GPU events.
func TestDemoPrintsWorkingReadPath(t *testing.T) {
	demo := os.Getenv("DEMO_BIN")
	nvmlsim := os.Getenv("NVMLSIM_LIB")
	if demo == "" || nvmlsim == "" {
		t.Skip("DEMO_BIN and NVMLSIM_LIB are set by make readpath")
	}
	root := proc.RepoRoot(t)
	store, err := vmstore.FindBinary(root)
	require.NoError(t, err)
	logStore, err := vlstore.FindBinary(root)
	require.NoError(t, err)
	dir := t.TempDir()
	d := proc.StartTest(t, "demo", demo, []string{
		"-root", root, "-otelcol", proc.Binary(t), "-store", store, "-logstore", logStore, "-logstore-addr", proc.Addr(proc.Port(t)), "-nvmlsim", filepath.Dir(nvmlsim), "-certs", filepath.Join(dir, "certs"),
		"-dir", filepath.Join(dir, "demo"), "-store-addr", proc.Addr(proc.Port(t)), "-query-addr", proc.Addr(proc.Port(t)),
		"-gpus", "2", "-interval", "1s", "-summary-every", "1s", "-duration", "3m",
	})
	seen := regexp.MustCompile(`(?m)^\S+\s+(acme|globex)\s+series stored\s+\d+\s+GPUs seen\s+2/2`)
	require.Eventually(t, func() bool {
		return len(seen.FindAllString(d.Output(), -1)) >= 2 || d.Exited()
	}, 2*time.Minute, 500*time.Millisecond)
	require.False(t, d.Exited(), "the demo stopped:\n%s", d.Output())

	out := d.Output()
	curls := regexp.MustCompile(`(?m)^\s+(curl --cacert .*)$`).FindAllStringSubmatch(out, -1)
	require.Len(t, curls, 2, "one curl line per tenant:\n%s", out)
	for _, tenant := range []string{"acme", "globex"} {
		require.Regexp(t, `(?m)^\s+`+tenant+`: UI https://127\.0\.0\.1:\d+/vmui/ -> log in with the read key demo-[0-9a-f]+`, out)
	}
	for i, c := range curls {
		tenant := []string{"acme", "globex"}[i]
		line := c[1]
		require.NotRegexp(t, `https://\S*demo-[0-9a-f]{32}`, line, "the key is never in the URL")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		got, err := exec.CommandContext(ctx, "bash", "-c", line+" --silent --show-error --fail").Output()
		cancel()
		require.NoError(t, err, "pasted as printed: %s", line)
		var resp struct {
			Status string `json:"status"`
			Data   struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(got, &resp), "%s", got)
		require.Equal(t, "success", resp.Status)
		require.NotEmpty(t, resp.Data.Result, "%s", got)

		// The same line, asking which tenants it sees: only its own.
		whose := regexp.MustCompile(`--data-urlencode 'query=.*'`).ReplaceAllString(line, `--data-urlencode 'query=count by (tenant_id) (hw.gpu.utilization)'`)
		got, err = exec.Command("bash", "-c", whose+" --silent --show-error --fail").Output()
		require.NoError(t, err, whose)
		require.Equal(t, 1, strings.Count(string(got), `"tenant_id":`), "one tenant per key: %s", got)
		require.Contains(t, string(got), `"tenant_id":"`+tenant+`"`)
	}

	// The events lines, pasted: each tenant's XID (the demo's VMs each
	// have one 20 s in) through the gateway with its key, and only its own.
	events := regexp.MustCompile(`(?m)^\s+events \(.*\): (curl --cacert .*)$`).FindAllStringSubmatch(out, -1)
	require.Len(t, events, 2, "an events line per tenant:\n%s", out)
	for i, ev := range events {
		own, other, otherXID := "acme", "globex", `"nvidia.xid.code":"31"`
		if i == 1 {
			own, other, otherXID = "globex", "acme", `"nvidia.xid.code":"13"`
		}
		var records string
		require.Eventually(t, func() bool {
			got, err := exec.Command("bash", "-c", ev[1]+" --silent --show-error --fail").Output()
			records = string(got)
			return err == nil && strings.Contains(records, `"tenant_id":"`+own+`"`)
		}, time.Minute, time.Second, "%s's XID through the printed line: %s", own, records)
		require.NotContains(t, records, `"tenant_id":"`+other+`"`)
		require.NotContains(t, records, otherXID, "%s's XID", other)
	}

	// Stopped as a person stops it (Ctrl-C, or the terminal's SIGTERM), the
	// demo stops everything it started: nothing is left holding its ports,
	// its folder or its parent's open files.
	require.NoError(t, d.Stop(2*time.Minute), "the demo stops cleanly:\n%s", d.Output())
	require.Contains(t, d.Output(), "demo: stopped")
	require.Empty(t, leftovers(dir), "processes of the demo still running after it stopped")
}

// leftovers lists the processes whose command line or environment names
// dir: what the demo started there and did not stop.
func leftovers(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == strconv.Itoa(os.Getpid()) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		environ, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if bytes.Contains(cmdline, []byte(dir)) || bytes.Contains(environ, []byte(dir)) {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return out
}
