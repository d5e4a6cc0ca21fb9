// Package metadata holds the tenant processor's type, scope and stability.
package metadata

import "go.opentelemetry.io/collector/component"

var (
	// Type is the processor's configuration key.
	Type = component.MustNewType("tenant")
	// ScopeName names the processor's own telemetry.
	ScopeName = "github.com/otelcol-gpu/otelcol-gpu/processor/tenantprocessor"
)

// Stability is the processor's stability level, the same for every signal.
const Stability = component.StabilityLevelAlpha
