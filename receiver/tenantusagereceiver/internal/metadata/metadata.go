// Package metadata holds the tenant_usage receiver's type, scope and stability.
package metadata

import "go.opentelemetry.io/collector/component"

var (
	// Type is the receiver's configuration key.
	Type = component.MustNewType("tenant_usage")
	// ScopeName names the receiver's records and its own telemetry.
	ScopeName = "github.com/otelcol-gpu/otelcol-gpu/receiver/tenantusagereceiver"
)

// MetricsStability is the receiver's stability level.
const MetricsStability = component.StabilityLevelAlpha
