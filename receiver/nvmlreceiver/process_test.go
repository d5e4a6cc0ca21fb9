package nvmlreceiver

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func fakeProc(t *testing.T, ns string) string {
	t.Helper()
	dir := t.TempDir()
	old := procRoot
	procRoot = dir
	t.Cleanup(func() { procRoot = old })
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "self", "ns"), 0o755))
	require.NoError(t, os.Symlink(ns, filepath.Join(dir, "self", "ns", "pid")))
	return dir
}

func fakeProcess(t *testing.T, dir, pid, exe, comm string) {
	t.Helper()
	p := filepath.Join(dir, pid)
	require.NoError(t, os.MkdirAll(p, 0o755))
	if exe != "" {
		require.NoError(t, os.Symlink(exe, filepath.Join(p, "exe")))
	}
	require.NoError(t, os.WriteFile(filepath.Join(p, "comm"), []byte(comm+"\n"), 0o644))
}

func TestProcessExecutableName(t *testing.T) {
	dir := fakeProc(t, initialPIDNamespace)
	fakeProcess(t, dir, "41", "/opt/conda/bin/python3.11-training-worker", "python3.11-trai")
	fakeProcess(t, dir, "42", "/usr/bin/old-server (deleted)", "old-server")
	fakeProcess(t, dir, "43", "", "someone-elses") // exe unreadable: another user's process
	require.True(t, hostPIDs())
	for pid, want := range map[uint32]string{41: "python3.11-training-worker", 42: "old-server", 43: "someone-elses"} {
		got, ok := processName(pid)
		require.True(t, ok)
		require.Equal(t, want, got, "pid %d", pid)
	}
	_, ok := processName(44)
	require.False(t, ok, "gone: no name")
}

func TestProcessNamesOnlyInTheHostPIDNamespace(t *testing.T) {
	fakeProc(t, "pid:[4026532001]") // a container's own PID namespace
	require.False(t, hostPIDs(), "the driver's PIDs are not this namespace's")
}
