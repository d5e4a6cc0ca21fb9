package nvmlreceiver

import (
	"context"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/scraper"
	"go.opentelemetry.io/collector/scraper/scraperhelper"

	"github.com/otelcol-gpu/otelcol-gpu/internal/sharedcomponent"
	"github.com/otelcol-gpu/otelcol-gpu/receiver/nvmlreceiver/internal/metadata"
)

const (
	defaultCollectionInterval = 10 * time.Second
	defaultInitRetryInterval  = 30 * time.Second
	// GPUs rarely come and go; a minute finds a hot-added or reset GPU
	// soon enough and costs one nvmlDeviceGetCount a minute.
	defaultRediscoverInterval = time.Minute
	// A refused reading costs one call when asked again; half an hour
	// follows a permission or mode change soon enough.
	defaultRefusedRetryInterval = 30 * time.Minute
)

// NewFactory returns the factory of the nvml receiver.
func NewFactory() receiver.Factory {
	return receiver.NewFactory(metadata.Type, createDefaultConfig,
		receiver.WithMetrics(createMetrics, metadata.MetricsStability),
		receiver.WithLogs(createLogs, metadata.LogsStability))
}

func createDefaultConfig() component.Config {
	cc := scraperhelper.NewDefaultControllerConfig()
	cc.CollectionInterval = defaultCollectionInterval
	return &Config{
		ControllerConfig:     cc,
		InitRetryInterval:    defaultInitRetryInterval,
		RediscoverInterval:   defaultRediscoverInterval,
		RefusedRetryInterval: defaultRefusedRetryInterval,
	}
}

// newLibrary opens NVML the way production does; tests replace it.
var newLibrary = func(cfg *Config) nvml.Interface {
	if cfg.LibraryPath != "" {
		return nvml.New(nvml.WithLibraryPath(cfg.LibraryPath))
	}
	return nvml.New()
}

// sessions shares one NVML session (and one XID event goroutine) between the
// metrics and logs pipelines of one receiver id.
var sessions sharedcomponent.Map[component.ID, *session]

func sharedSession(set receiver.Settings, cfg *Config) (*sharedcomponent.Component[*session], error) {
	return sessions.LoadOrStore(set.ID, func() (*session, error) {
		return newSession(cfg, newLibrary(cfg), set.TelemetrySettings)
	})
}

func createMetrics(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
	rcfg := cfg.(*Config)
	s, err := sharedSession(set, rcfg)
	if err != nil {
		return nil, err
	}
	sc, err := scraper.NewMetrics(s.Unwrap.scrape, scraper.WithStart(s.Start), scraper.WithShutdown(s.Shutdown))
	if err != nil {
		return nil, err
	}
	return scraperhelper.NewMetricsController(&rcfg.ControllerConfig, set, next, scraperhelper.AddMetricsScraper(metadata.Type, sc))
}

// logsReceiver hands XID events to a logs pipeline.
type logsReceiver struct {
	*sharedcomponent.Component[*session]
	next consumer.Logs
}

func (r *logsReceiver) Start(ctx context.Context, host component.Host) error {
	r.Unwrap.setLogsConsumer(r.next)
	return r.Component.Start(ctx, host)
}

func createLogs(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Logs) (receiver.Logs, error) {
	s, err := sharedSession(set, cfg.(*Config))
	if err != nil {
		return nil, err
	}
	return &logsReceiver{Component: s, next: next}, nil
}
