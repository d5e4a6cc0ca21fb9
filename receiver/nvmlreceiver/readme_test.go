package nvmlreceiver

import (
	"strings"
	"testing"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/readmetable"
)

const tableStart = "<!-- metrics:start (generated from metrics.go by `go test -run TestReadme -update`) -->"

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
	readmetable.Check(t, "README.md", tableStart, metricTable(), "metrics.go", *update)
}
