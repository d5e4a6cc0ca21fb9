// Package metadata holds the tenant_otlp_http exporter's type, scope and stability.
package metadata

import "go.opentelemetry.io/collector/component"

var (
	// Type is the exporter's configuration key.
	Type = component.MustNewType("tenant_otlp_http")
	// ScopeName names the exporter's own telemetry.
	ScopeName = "github.com/otelcol-gpu/otelcol-gpu/exporter/tenantotlphttpexporter"
)

// Stability is the exporter's stability level, the same for every signal.
const Stability = component.StabilityLevelAlpha
