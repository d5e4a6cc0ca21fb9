package nvmlreceiver

import (
	"testing"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/readmetable"
)

func TestReadmeTelemetryTableMatchesTheCode(t *testing.T) {
	readmetable.CheckTelemetry(t, (&receiverTelemetry{}).metrics(), "telemetry.go")
}
