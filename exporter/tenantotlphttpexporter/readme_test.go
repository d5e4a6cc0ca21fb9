package tenantotlphttpexporter

import (
	"testing"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/readmetable"
)

func TestReadmeTelemetryTableMatchesTheCode(t *testing.T) {
	readmetable.CheckTelemetry(t, (&tenantExporter{}).metrics(), "exporter.go")
}
