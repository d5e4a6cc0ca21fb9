// Package metadata holds the tenant_query extension's type, scope and stability.
package metadata

import "go.opentelemetry.io/collector/component"

var (
	// Type is the extension's configuration key.
	Type = component.MustNewType("tenant_query")
	// ScopeName names the extension's own telemetry.
	ScopeName = "github.com/otelcol-gpu/otelcol-gpu/extension/tenantqueryextension"
)

// ExtensionStability is the extension's stability level.
const ExtensionStability = component.StabilityLevelAlpha
