// Package metadata holds the nvml receiver's type, scope and stability.
package metadata

import "go.opentelemetry.io/collector/component"

var (
	// Type is the receiver's configuration key.
	Type = component.MustNewType("nvml")
	// ScopeName is the instrumentation scope of the metrics and logs it emits
	// and of its own telemetry.
	ScopeName = "github.com/otelcol-gpu/otelcol-gpu/receiver/nvmlreceiver"
)

// Stability levels.
const (
	MetricsStability = component.StabilityLevelAlpha
	LogsStability    = component.StabilityLevelAlpha
)
