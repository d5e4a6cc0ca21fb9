package tenantprocessor

import (
	"testing"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/readmetable"
)

func TestReadmeTelemetryTableMatchesTheCode(t *testing.T) {
	readmetable.CheckTelemetry(t, (&tenantProcessor{}).metrics(), "processor.go")
}
