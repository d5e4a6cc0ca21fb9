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
	}
}

func createExtension(_ context.Context, set extension.Settings, cfg component.Config) (extension.Extension, error) {
	return newAuthenticator(cfg.(*Config), set.TelemetrySettings)
}
