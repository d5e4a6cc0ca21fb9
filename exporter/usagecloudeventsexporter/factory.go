package usagecloudeventsexporter

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"

	"github.com/otelcol-gpu/otelcol-gpu/exporter/usagecloudeventsexporter/internal/metadata"
)

const (
	defaultSource     = "otelcol-gpu"
	defaultTypePrefix = "dev.otelcol-gpu.usage."
	// One hour of a few hundred tenants' records in a handful of requests,
	// well under the body limits billing systems set.
	defaultMaxBatchEvents = 500
	defaultMaxBatchBytes  = 1 << 20
	// Longer than any recheck (24 h by default) and any outage the queue
	// rides out.
	defaultDeliveredKeep = 7 * 24 * time.Hour
)

// NewFactory returns the factory of the usage_cloudevents exporter.
func NewFactory() exporter.Factory {
	return exporter.NewFactory(metadata.Type, createDefaultConfig,
		exporter.WithMetrics(createMetrics, metadata.MetricsStability))
}

func createDefaultConfig() component.Config {
	client := confighttp.NewDefaultClientConfig()
	client.Timeout = 30 * time.Second
	queue := exporterhelper.NewDefaultQueueConfig()
	// One consumer: records leave in the order they were made, and a
	// billing system that is down holds one request, not ten.
	queue.NumConsumers = 1
	retry := configretry.NewDefaultBackOffConfig()
	// Records are money: retried until delivered (the queue bounds what is
	// kept), never dropped after a deadline.
	retry.MaxElapsedTime = 0
	return &Config{
		ClientConfig:   client,
		QueueConfig:    configoptional.Some(queue),
		RetryConfig:    retry,
		Source:         defaultSource,
		TypePrefix:     defaultTypePrefix,
		MaxBatchEvents: defaultMaxBatchEvents,
		MaxBatchBytes:  defaultMaxBatchBytes,
		Delivered:      DeliveredConfig{Keep: defaultDeliveredKeep},
	}
}

func createMetrics(ctx context.Context, set exporter.Settings, cfg component.Config) (exporter.Metrics, error) {
	c := cfg.(*Config)
	e, err := newEventsExporter(c, set)
	if err != nil {
		return nil, err
	}
	return exporterhelper.NewMetrics(ctx, set, cfg, e.push,
		exporterhelper.WithStart(e.start),
		exporterhelper.WithShutdown(e.shutdown),
		exporterhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}),
		exporterhelper.WithTimeout(exporterhelper.TimeoutConfig{Timeout: 0}),
		exporterhelper.WithRetry(c.RetryConfig),
		exporterhelper.WithQueue(c.QueueConfig))
}
