// Package metadata holds the tenant_alerts extension's type, scope and stability.
package metadata

import "go.opentelemetry.io/collector/component"

var (
	// Type is the extension's configuration key.
	Type = component.MustNewType("tenant_alerts")
	// ScopeName names the extension's own telemetry.
	ScopeName = "github.com/otelcol-gpu/otelcol-gpu/extension/tenantalertsextension"
)

// ExtensionStability is the extension's stability level.
const ExtensionStability = component.StabilityLevelAlpha
