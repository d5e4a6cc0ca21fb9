package exepages

import (
	"os"
	"slices"
	"strings"
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
	inReadOnlyExe := false
	for _, line := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			// A mapping's header: range perms offset dev inode path.
			inReadOnlyExe = f[5] == exe && f[1][1] != 'w'
			if inReadOnlyExe {
				readOnly++
			}
			continue
		}
		if inReadOnlyExe && len(f) > 0 && f[0] == "VmFlags:" && slices.Contains(f[1:], "rr") {
			random++
		}
	}
	require.Positive(t, readOnly)
	require.Equal(t, readOnly, random, "every read-only mapping of the executable is advised MADV_RANDOM")
}
