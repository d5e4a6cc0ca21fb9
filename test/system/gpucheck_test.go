//go:build system

package system

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
)

// gpu-check against the simulated library and a stand-in nvidia-smi that
// prints what the fleet file fixes: the comparison, the tolerances and the
// exit code of the real program, without a GPU.
func TestGPUCheckComparesWithNvidiaSMI(t *testing.T) {
	bin := os.Getenv("GPU_CHECK_BIN")
	if bin == "" {
		bin = filepath.Join(proc.RepoRoot(t), "bin", "gpu-check")
	}
	dir := t.TempDir()
	fleet := filepath.Join(dir, "fleet")
	require.NoError(t, os.WriteFile(fleet, []byte(`gpus = 2
signal.utilization = const 50
signal.memory_used = const 10240
signal.power = const 300
signal.temperature = const 60
`), 0o600))
	uuid := func(i int) string { return fmt.Sprintf("GPU-5e1f0000-%04x-4000-8000-%012x", i, 0x51a000+i) }
	smi := func(name, power1 string) string {
		path := filepath.Join(dir, name)
		script := "#!/bin/sh\n" +
			"echo '" + uuid(0) + ", 00000000:18:00.0, NVIDIA H100 80GB HBM3, 50, 10240, 81559, 300.00, 60, 1980, 2619, 0, 0, 5, 16, 550.90.07'\n" +
			"echo '" + uuid(1) + ", 00000000:28:00.0, NVIDIA H100 80GB HBM3, 48, 10250, 81559, " + power1 + ", 61, 1980, 2619, 0, 0, 5, 16, 550.90.07'\n"
		require.NoError(t, os.WriteFile(path, []byte(script), 0o755))
		return path
	}
	args := func(smiPath string) []string {
		return []string{"-duration", "3s", "-interval", "500ms", "-library", simLibrary(t, "NVMLSIM_LIB"), "-nvidia-smi", smiPath}
	}

	out, code := proc.Run(t, bin, args(smi("agree", "305.10")), "NVMLSIM_FLEET="+fleet)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "every compared value is within tolerance")
	require.Equal(t, 2, strings.Count(out, "energy rate W"), out)
	require.NotContains(t, out, "DIFF")

	out, code = proc.Run(t, bin, args(smi("disagree", "450.00")), "NVMLSIM_FLEET="+fleet)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "1 value(s) outside tolerance")
	require.Regexp(t, uuid(1)+`\s+power W\s+300.0\s+450.0\s+.*DIFF`, out)
}
