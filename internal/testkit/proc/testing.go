package proc

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// BinaryEnv names the variable that points the tests at the built binary.
const BinaryEnv = "OTELCOL_GPU_BIN"

// RepoRoot is the repository root, found from this file's location so tests
// in any package can reach config/ and bin/.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("proc: cannot locate the repository root")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// Binary returns the otelcol-gpu binary under test: $OTELCOL_GPU_BIN, else
// bin/otelcol-gpu. A missing binary fails the test with the command that builds it.
func Binary(t testing.TB) string {
	t.Helper()
	path := os.Getenv(BinaryEnv)
	if path == "" {
		path = filepath.Join(RepoRoot(t), "bin", "otelcol-gpu")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("proc: %s not found (%v): run 'make build' or set %s", path, err, BinaryEnv)
	}
	return path
}

// StartTest runs path with args and the current environment plus env for
// the rest of the test: it is killed when the test ends if still running,
// and its output goes to the test log when the test fails.
func StartTest(t testing.TB, name, path string, args []string, env ...string) *Proc {
	t.Helper()
	p, err := StartWriter(name, path, args, env, nil)
	if err != nil {
		t.Fatalf("proc: %v", err)
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("---- output of %s ----\n%s", name, p.Output())
		}
	})
	return p
}

// Run runs path to completion and returns its combined output and exit code.
func Run(t testing.TB, path string, args []string, env ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exitErr):
		return string(out), exitErr.ExitCode()
	default:
		t.Fatalf("proc: run %s: %v", path, err)
		return "", -1
	}
}
