package tenantusagereceiver

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"

	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
	"github.com/otelcol-gpu/otelcol-gpu/receiver/tenantusagereceiver/internal/metadata"
)

const (
	defaultStoreEndpoint = "http://localhost:8428"
	defaultTenantLabel   = "tenant_id"
	defaultInterval      = time.Minute
	// Agents batch for seconds and retry for minutes; ten minutes lets an
	// hour's data arrive before the hour is billed.
	defaultGracePeriod = 10 * time.Minute
	defaultBackfill    = 24 * time.Hour
	defaultConcurrency = 2
	defaultTimeout     = 2 * time.Minute
)

// Data that arrives after its hour closed (an agent's queue after an outage)
// is billed by the rechecks: after one hour, six hours and a day.
var defaultRechecks = []time.Duration{time.Hour, 6 * time.Hour, 24 * time.Hour}

// NewFactory returns the factory of the tenant_usage receiver.
func NewFactory() receiver.Factory {
	return receiver.NewFactory(metadata.Type, createDefaultConfig,
		receiver.WithMetrics(createMetrics, metadata.MetricsStability))
}

func createDefaultConfig() component.Config {
	store := confighttp.NewDefaultClientConfig()
	store.Endpoint = defaultStoreEndpoint
	store.Timeout = defaultTimeout
	events := confighttp.NewDefaultClientConfig()
	events.Timeout = defaultTimeout
	return &Config{
		Store:       StoreConfig{ClientConfig: store, TenantLabel: defaultTenantLabel, VMLabel: usage.DefaultVMLabel, Verify: true},
		Decreases:   DecreasesHold,
		Events:      events,
		Interval:    defaultInterval,
		GracePeriod: defaultGracePeriod,
		Rechecks:    append([]time.Duration(nil), defaultRechecks...),
		Backfill:    defaultBackfill,
		Concurrency: defaultConcurrency,
		Crosscheck:  CrosscheckConfig{Tolerance: 0.01},
	}
}

func createMetrics(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
	return newReceiver(cfg.(*Config), set, next)
}
