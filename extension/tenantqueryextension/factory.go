package tenantqueryextension

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/extension"

	"github.com/otelcol-gpu/otelcol-gpu/extension/tenantqueryextension/internal/metadata"
)

const (
	// The Prometheus API's usual port, on loopback unless configured.
	defaultEndpoint      = "localhost:9090"
	defaultStoreEndpoint = "http://localhost:8428"
	// The label the gateway's exporter has the store enforce on write
	// (config/gateway.yaml: extra_label=tenant_id={tenant}).
	defaultTenantLabel    = "tenant_id"
	defaultReloadInterval = 5 * time.Second
	// A dashboard refresh sends one query per panel (about ten at once);
	// eight at the store with a short queue serves it without letting one
	// tenant hold more than a few of the store's cores.
	defaultMaxConcurrent    = 8
	defaultMaxQueued        = 32
	defaultQueueWait        = 5 * time.Second
	defaultQueriesPerSecond = 20
	defaultBurst            = 40
	defaultQueryTimeout     = 30 * time.Second
	defaultMaxSeries        = 10_000
	defaultMaxResponseBytes = 64 << 20
	defaultSessionTTL       = 12 * time.Hour
	defaultMaxSessions      = 10_000
	// A team's browsers, and a few kept by a bot, fit; one tenant can
	// hold 0.5% of the table.
	defaultMaxSessionsPerTenant = 50
	defaultTimezone             = "UTC"
	defaultStoreTimeout         = 60 * time.Second
	// A read event is about 250 bytes: 64 MiB holds some 250,000, over an
	// hour of an event store outage at 50 answered queries a second.
	defaultUsageMaxBytes      = 64 << 20
	defaultUsageFlushInterval = time.Second
	defaultUsageTimeout       = 10 * time.Second
)

// NewFactory returns the factory of the tenant_query extension.
func NewFactory() extension.Factory {
	return extension.NewFactory(metadata.Type, createDefaultConfig, createExtension, metadata.ExtensionStability)
}

func createDefaultConfig() component.Config {
	server := confighttp.NewDefaultServerConfig()
	server.NetAddr.Endpoint = defaultEndpoint
	client := confighttp.NewDefaultClientConfig()
	client.Endpoint = defaultStoreEndpoint
	client.Timeout = defaultStoreTimeout
	events := confighttp.NewDefaultClientConfig()
	events.Timeout = defaultUsageTimeout
	return &Config{
		ServerConfig:   server,
		ReloadInterval: defaultReloadInterval,
		Store: StoreConfig{
			ClientConfig:     client,
			TenantLabel:      defaultTenantLabel,
			MaxResponseBytes: defaultMaxResponseBytes,
		},
		Limits: LimitsConfig{
			MaxConcurrent:    defaultMaxConcurrent,
			MaxQueued:        defaultMaxQueued,
			QueueWait:        defaultQueueWait,
			QueriesPerSecond: defaultQueriesPerSecond,
			Burst:            defaultBurst,
			QueryTimeout:     defaultQueryTimeout,
			MaxSeries:        defaultMaxSeries,
		},
		UI: UIConfig{
			Enabled:              true,
			SessionTTL:           defaultSessionTTL,
			MaxSessions:          defaultMaxSessions,
			MaxSessionsPerTenant: defaultMaxSessionsPerTenant,
			Timezone:             defaultTimezone,
		},
		UsageEvents: UsageEventsConfig{
			ClientConfig:  events,
			FlushInterval: defaultUsageFlushInterval,
			MaxBytes:      defaultUsageMaxBytes,
			OnFull:        onFullRefuse,
		},
	}
}

func createExtension(_ context.Context, set extension.Settings, cfg component.Config) (extension.Extension, error) {
	return newQueryServer(cfg.(*Config), set.TelemetrySettings)
}
