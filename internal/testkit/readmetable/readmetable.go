// Package readmetable keeps a generated table in a component's README.md
// true to the code: the table between two marker lines must equal what the
// code renders, and -update rewrites it. Test equipment.
package readmetable

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// End is the line that closes every generated metric table.
const End = "<!-- metrics:end -->"

// Check compares the table between start and End in the README at path
// with want; with update it writes want there instead. source names the
// file the table is generated from, for the failure message.
func Check(t *testing.T, path, start, want, source string, update bool) {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	readme := string(raw)
	from := strings.Index(readme, start)
	to := strings.Index(readme, End)
	require.True(t, from >= 0 && to > from, "%s lacks the metric table markers", path)
	body := readme[from+len(start)+1 : to]
	if update {
		readme = readme[:from+len(start)+1] + want + readme[to:]
		require.NoError(t, os.WriteFile(path, []byte(readme), 0o644))
		return
	}
	require.Equal(t, want, body, "%s's metric table differs from %s: run go test -run TestReadme -update", path, source)
}
