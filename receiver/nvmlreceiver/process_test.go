package nvmlreceiver

import (
	"os"
	"path/filepath"
	"strings"
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

// A GPU process's workload from its cgroup, as each runtime writes it.
func TestProcessWorkloadFromCgroup(t *testing.T) {
	const id = "3f0a8cbbd7e1c4d5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9"
	const uid = "7c1b9f2e-5a4d-4e3f-9b8a-0c1d2e3f4a5b"
	for name, c := range map[string]struct {
		cgroup string
		want   workload
	}{
		"kubernetes, systemd driver, containerd (cgroup v2)": {
			"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice/cri-containerd-" + id + ".scope\n",
			workload{container: id, pod: uid}},
		"kubernetes, cgroupfs driver (cgroup v1)": {
			"12:memory:/kubepods/besteffort/pod" + uid + "/" + id + "\n11:devices:/kubepods/besteffort/pod" + uid + "/" + id + "\n",
			workload{container: id, pod: uid}},
		"kubernetes, cri-o":          {"0::/kubepods.slice/kubepods-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice/crio-" + id + ".scope\n", workload{container: id, pod: uid}},
		"docker, systemd driver":     {"0::/system.slice/docker-" + id + ".scope\n", workload{container: id}},
		"docker, cgroupfs (v1)":      {"4:cpu,cpuacct:/docker/" + id + "\n1:name=systemd:/docker/" + id + "\n", workload{container: id}},
		"podman":                     {"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id + ".scope\n", workload{container: id}},
		"slurm, cgroup v2":           {"0::/system.slice/slurmstepd.scope/job_4711/step_0/user/task_0\n", workload{slurmJob: "4711"}},
		"slurm, cgroup v1":           {"7:devices:/slurm/uid_1000/job_4712/step_batch/task_0\n", workload{slurmJob: "4712"}},
		"a plain process":            {"0::/user.slice/user-1000.slice/session-3.scope\n", workload{}},
		"a service named like a job": {"0::/system.slice/backup.service/job_9\n", workload{}},
		"short hex is no container":  {"0::/system.slice/docker-3f0a8cbb.scope\n", workload{}},
	} {
		dir := fakeProc(t, initialPIDNamespace)
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "77"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "77", "cgroup"), []byte(c.cgroup), 0o644))
		require.Equal(t, c.want, processWorkload(77), name)
	}
	require.Equal(t, workload{}, processWorkload(78), "gone: nothing known")
}
