// Package metadata holds the usage_cloudevents exporter's type, scope and stability.
package metadata

import "go.opentelemetry.io/collector/component"

var (
	// Type is the exporter's configuration key.
	Type = component.MustNewType("usage_cloudevents")
	// ScopeName names the exporter's own telemetry.
	ScopeName = "github.com/otelcol-gpu/otelcol-gpu/exporter/usagecloudeventsexporter"
)

// MetricsStability is the exporter's stability level.
const MetricsStability = component.StabilityLevelAlpha
