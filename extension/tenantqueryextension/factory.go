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
	// As tenant_auth's: a broken credentials file keeps the last good keys
	// this long at most.
	defaultCredentialsMaxStale = 10 * time.Minute
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
	// A tenant keeps one query running at the store on average, and may
	// spend 30 s of store time at once (ten heavy panels of 3 s): enough
	// for any dashboard, and a flood of heavy queries holds the store for
	// seconds, not for as long as it lasts.
	defaultStoreTimePerSecond = 1.0
	defaultStoreTimeBurst     = 30 * time.Second
	defaultMaxResponseBytes   = 64 << 20
	defaultSessionTTL         = 12 * time.Hour
	defaultMaxSessions        = 10_000
	// A team's browsers, and a few kept by a bot, fit; one tenant can
	// hold 0.5% of the table.
	defaultMaxSessionsPerTenant = 50
	defaultTimezone             = "UTC"
	defaultStoreTimeout         = 60 * time.Second
	// One tenant holds at most 64 MiB of answers here (one answer of the
	// largest size, or many dashboard panels); all tenants at most 512 MiB.
	defaultMaxAnswerBytes      = 64 << 20
	defaultMaxAnswerBytesTotal = 512 << 20
	// A request's headers within 10 s and its whole body within 20 s of
	// its start; a query's answer within a minute (queue_wait +
	// query_timeout + margins: validateTimeouts).
	defaultReadHeaderTimeout = 10 * time.Second
	defaultReadTimeout       = 20 * time.Second
	defaultWriteTimeout      = 60 * time.Second
	// As tenant_auth's on ingest.
	defaultFailuresPerMinute = 30
	defaultTrackedSources    = 65536
	// An events page shows a few hundred records; a query asks for more
	// with limit, up to this.
	defaultMaxEventRecords = 1000
	defaultEventsTimeout   = 30 * time.Second
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
	server.ReadHeaderTimeout = defaultReadHeaderTimeout
	server.ReadTimeout = defaultReadTimeout
	server.WriteTimeout = defaultWriteTimeout
	client := confighttp.NewDefaultClientConfig()
	client.Endpoint = defaultStoreEndpoint
	client.Timeout = defaultStoreTimeout
	events := confighttp.NewDefaultClientConfig()
	events.Timeout = defaultUsageTimeout
	logs := confighttp.NewDefaultClientConfig()
	logs.Timeout = defaultEventsTimeout
	return &Config{
		ServerConfig:        server,
		ReloadInterval:      defaultReloadInterval,
		CredentialsMaxStale: defaultCredentialsMaxStale,
		Store: StoreConfig{
			ClientConfig:     client,
			TenantLabel:      defaultTenantLabel,
			MaxResponseBytes: defaultMaxResponseBytes,
		},
		Limits: LimitsConfig{
			MaxConcurrent:       defaultMaxConcurrent,
			MaxQueued:           defaultMaxQueued,
			QueueWait:           defaultQueueWait,
			QueriesPerSecond:    defaultQueriesPerSecond,
			Burst:               defaultBurst,
			QueryTimeout:        defaultQueryTimeout,
			MaxSeries:           defaultMaxSeries,
			StoreTimePerSecond:  defaultStoreTimePerSecond,
			StoreTimeBurst:      defaultStoreTimeBurst,
			Replicas:            1,
			MaxAnswerBytes:      defaultMaxAnswerBytes,
			MaxAnswerBytesTotal: defaultMaxAnswerBytesTotal,
		},
		FailureLimit: FailureLimit{PerMinute: defaultFailuresPerMinute, TrackedSources: defaultTrackedSources},
		Events: EventsConfig{
			ClientConfig: logs,
			TenantField:  defaultTenantLabel,
			MaxRecords:   defaultMaxEventRecords,
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
