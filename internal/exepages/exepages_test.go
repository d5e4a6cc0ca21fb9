package exepages

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// The constructor ran when this test binary was loaded: its read-only
// mappings carry the advice (smaps shows "rr" for MADV_RANDOM).
func TestTheExecutableIsReadAsUsed(t *testing.T) {
	if os.Getenv("OTELCOL_GPU_EXE_READAHEAD") == "1" {
		t.Skip("turned off")
	}
	require.True(t, Advised())
	exe, err := os.Readlink("/proc/self/exe")
	require.NoError(t, err)
	smaps, err := os.ReadFile("/proc/self/smaps")
	require.NoError(t, err)
	random, readOnly := 0, 0
	var inExe bool
	var perms string
	for _, line := range splitLines(string(smaps)) {
		if f := fields(line); len(f) >= 6 && len(f[0]) > 0 && isHexRange(f[0]) {
			inExe, perms = f[5] == exe, f[1]
			if inExe && perms[1] != 'w' {
				readOnly++
			}
			continue
		}
		if inExe && perms[1] != 'w' && len(line) > 8 && line[:8] == "VmFlags:" && contains(fields(line), "rr") {
			random++
		}
	}
	require.Positive(t, readOnly)
	require.Equal(t, readOnly, random, "every read-only mapping of the executable is advised MADV_RANDOM")
}
