package nvmlreceiver

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	tableStart = "<!-- metrics:start (generated from metrics.go by `go test -run TestReadme -update`) -->"
	tableEnd   = "<!-- metrics:end -->"
)

// metricTable renders the metric table from metricDefs.
func metricTable() string {
	var b strings.Builder
	b.WriteString("| metric | unit | type | attributes (besides hw.id, hw.name) | default | NVML source |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, d := range metricDefs {
		attrs := "-"
		if len(d.attrs) > 0 {
			attrs = "`" + strings.Join(d.attrs, "`, `") + "`"
		}
		def := "on"
		if !d.enabled {
			def = "off"
		}
		b.WriteString("| `" + d.name + "` | " + d.unit + " | " + d.kind.String() + " | " + attrs + " | " + def + " | " + d.source + " |\n")
	}
	return b.String()
}

func TestReadmeMetricTableMatchesTheCode(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	require.NoError(t, err)
	readme := string(raw)
	start := strings.Index(readme, tableStart)
	end := strings.Index(readme, tableEnd)
	require.True(t, start >= 0 && end > start, "README.md lacks the metric table markers")
	body := readme[start+len(tableStart)+1 : end]
	want := metricTable()
	if *update {
		readme = readme[:start+len(tableStart)+1] + want + readme[end:]
		require.NoError(t, os.WriteFile("README.md", []byte(readme), 0o644))
		return
	}
	require.Equal(t, want, body, "README.md's metric table differs from metrics.go: run go test -run TestReadme -update")
}
