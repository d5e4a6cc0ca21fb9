package tenantauthextension

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"

	"github.com/otelcol-gpu/otelcol-gpu/extension/tenantauthextension/internal/metadata"
)

const (
	defaultReloadInterval = 5 * time.Second
	defaultHeader         = "Authorization"
	defaultScheme         = "Bearer"
	// An agent's request nests attribute values 1 deep; 16 leaves room for
	// any real customer payload and keeps decoding far from the stack limit.
	defaultMaxNestingDepth = 16
	// A 380-point agent request holds ~780 attributes; a batched one a few
	// thousand.
	defaultMaxValues         = 100_000
	defaultFailuresPerMinute = 30
	defaultTrackedSources    = 65536
)

// NewFactory returns the factory of the tenant_auth extension.
func NewFactory() extension.Factory {
	return extension.NewFactory(metadata.Type, createDefaultConfig, createExtension, metadata.ExtensionStability)
}

func createDefaultConfig() component.Config {
	return &Config{
		ReloadInterval: defaultReloadInterval,
		Header:         defaultHeader,
		Scheme:         defaultScheme,
		DecodeLimits:   DecodeLimits{MaxNestingDepth: defaultMaxNestingDepth, MaxValues: defaultMaxValues},
		FailureLimit:   FailureLimit{PerMinute: defaultFailuresPerMinute, TrackedSources: defaultTrackedSources},
	}
}

func createExtension(_ context.Context, set extension.Settings, cfg component.Config) (extension.Extension, error) {
	return newAuthenticator(cfg.(*Config), set.TelemetrySettings)
}
