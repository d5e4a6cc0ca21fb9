//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startAgentReleasable is startAgent with the agent's NVML release file
// (OTELCOL_GPU_NVML_RELEASE_FILE) in the test's own directory, so an
// operator's reset can be played without touching any other agent on the
// machine. The agent is started, stopped and started again with the file
// in its environment: the simulated library's clock, and so the fleet's
// fault times, count from the second start.
func (e *env) startAgentReleasable(o agentOpts) (*agent, string) {
	e.t.Helper()
	a := e.startAgent(o)
	require.NoError(e.t, a.proc.Stop(10*time.Second))
	release := filepath.Join(e.t.TempDir(), "release-nvml")
	a.env = append(a.env, "OTELCOL_GPU_NVML_RELEASE_FILE="+release)
	a.restart(e)
	return a, release
}

// 11. A GPU that turns ERROR_UNKNOWN for every call mid-run (what a GPU
// looks like after XID 119, a GSP RPC timeout) shows failed with its
// reason in the store, and a health event in the event store, within two
// intervals, stays failed, and is ok again only after its reset.
func TestScenario13UnknownErrorsFailedUntilReset(t *testing.T) {
	e := newEnv(t)
	e.startLogStore()
	token := e.provision("acme")
	e.startGateway()
	const faultAt = 6
	a, release := e.startAgentReleasable(agentOpts{tenant: "acme", token: token, fleet: fmt.Sprintf(
		"gpus = 2\nhost = 1\nsignal.utilization = const 50\nfault = %d 1 unknown until_reset\nfault = %d 1 xid 119\nfault = %d 1 gpu_reset\n",
		faultAt, faultAt, faultAt+2)})
	ctx := context.Background()
	gpu := gpuID(1, 1)
	failed := fmt.Sprintf(`hw.status{hw.id=%q,hw.state="failed",nvidia.gpu.health.reason="unknown_errors"}`, gpu)
	require.Eventually(t, func() bool {
		_ = e.store.Flush(ctx)
		v, err := e.store.Scalar(ctx, fmt.Sprintf(`max_over_time(%s[1h])`, failed), "tenant_id=acme")
		return err == nil && v == 1
	}, settle, time.Second, "hw.status failed, reason unknown_errors, in the store")

	// Within two intervals (1 s each) of the GPU's last answer.
	lastGood, err := e.store.Scalar(ctx, fmt.Sprintf(`tlast_over_time(hw.gpu.utilization{hw.id=%q,hw.gpu.task="general"}[1h])`, gpu), "tenant_id=acme")
	require.NoError(t, err)
	firstFailed, err := e.store.Scalar(ctx, fmt.Sprintf(`tfirst_over_time(%s[1h])`, failed), "tenant_id=acme")
	require.NoError(t, err)
	took := time.Duration((firstFailed - lastGood) * float64(time.Second))
	require.LessOrEqual(t, took, 2*time.Second+500*time.Millisecond, "failed within two intervals of the last answer")

	var events []map[string]string
	require.Eventually(t, func() bool {
		events, err = e.logs.Query(ctx, `nvidia.gpu.health.reason:unknown_errors`, "acme")
		return err == nil && len(events) >= 1
	}, settle, time.Second, "a health event in the event store")
	ev := events[0]
	require.Equal(t, gpu, ev["hw.id"])
	require.Equal(t, "failed", ev["hw.state"])
	require.Equal(t, "ok", ev["nvidia.gpu.health.previous_state"])
	require.Contains(t, ev["_msg"], "reset")
	evAt, err := time.Parse(time.RFC3339Nano, ev["_time"])
	require.NoError(t, err)
	require.LessOrEqual(t, evAt.Sub(time.Unix(0, int64(lastGood*1e9))), 2*time.Second+500*time.Millisecond, "the event within two intervals")

	// It holds: 5 s later the GPU is still failed, never ok.
	require.Eventually(t, func() bool {
		_ = e.store.Flush(ctx)
		last, err := e.store.Scalar(ctx, fmt.Sprintf(`tlast_over_time(%s[1h])`, failed), "tenant_id=acme")
		return err == nil && last > firstFailed+5
	}, settle, time.Second, "5 s of samples after the failure")
	still, err := e.store.Scalar(ctx, fmt.Sprintf(`last_over_time(%s[1h])`, failed), "tenant_id=acme")
	require.NoError(t, err)
	require.EqualValues(t, 1, still, "failed until the reset")
	okSince, err := e.store.Scalar(ctx, fmt.Sprintf(`max_over_time(hw.status{hw.id=%q,hw.state="ok"}[%ds])`, gpu,
		int(float64(time.Now().Unix())-firstFailed)-1), "tenant_id=acme")
	require.NoError(t, err)
	require.EqualValues(t, 0, okSince, "never ok before the reset")

	// The operator's reset: release file, the reset proceeds, file removed.
	resetAt := time.Now()
	require.NoError(t, os.WriteFile(release, nil, 0o600))
	require.Eventually(t, func() bool { return strings.Contains(a.proc.Output(), "NVML released for a GPU reset") }, 30*time.Second, 100*time.Millisecond)
	require.NoError(t, os.Remove(release))
	okQuery := fmt.Sprintf(`hw.status{hw.id=%q,hw.state="ok"}`, gpu)
	require.Eventually(t, func() bool {
		_ = e.store.Flush(ctx)
		at, err1 := e.store.Scalar(ctx, fmt.Sprintf(`tlast_over_time(%s[1h])`, okQuery), "tenant_id=acme")
		v, err2 := e.store.Scalar(ctx, fmt.Sprintf(`last_over_time(%s[1h])`, okQuery), "tenant_id=acme")
		return err1 == nil && err2 == nil && at > float64(resetAt.Unix()) && v == 1
	}, settle, time.Second, "ok again after the reset")
	closed, err := e.store.Scalar(ctx, fmt.Sprintf(`last_over_time(%s[1m])`, failed), "tenant_id=acme")
	require.NoError(t, err)
	require.EqualValues(t, 0, closed, "the failed series closed at 0")
	require.Eventually(t, func() bool {
		recs, err := e.logs.Query(ctx, fmt.Sprintf(`event_name:"nvidia.gpu.health" AND hw.id:%q AND hw.state:ok`, gpu), "acme")
		return err == nil && len(recs) >= 1
	}, settle, time.Second, "a health event for the recovery")
	fmt.Printf("e2e: %-34s sent=n/a stored=n/a lost=n/a dup=n/a failed_after=%s event_after=%s\n",
		"13 GPU failed until reset", took.Round(10*time.Millisecond), evAt.Sub(time.Unix(0, int64(lastGood*1e9))).Round(10*time.Millisecond))
}
