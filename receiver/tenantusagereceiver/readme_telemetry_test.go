package tenantusagereceiver

import (
	"testing"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/readmetable"
)

func TestReadmeTelemetryTableMatchesTheCode(t *testing.T) {
	readmetable.CheckTelemetry(t, (&telemetry{}).metrics(), "telemetry.go")
}
