package proc

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BinaryEnv names the variable that points the tests at the built binary.
const BinaryEnv = "OTELCOL_GPU_BIN"

// RepoRoot is the repository root, so tests in any package can reach
// config/ and bin/: the nearest folder above the test's working directory
// (go test runs a test in its package's folder) whose go.mod is the root
// module's. Not this file's compiled-in path: the Makefile builds tests with
// -trimpath, which leaves a module path there, not a folder.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("proc: cannot locate the repository root: %v", err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module "+rootModule+"\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("proc: no go.mod of %s above the working directory", rootModule)
		}
		dir = parent
	}
}

const rootModule = "github.com/otelcol-gpu/otelcol-gpu"

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
