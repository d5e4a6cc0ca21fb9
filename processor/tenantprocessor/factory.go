package tenantprocessor

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"

	"github.com/otelcol-gpu/otelcol-gpu/internal/sharedcomponent"
	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
	"github.com/otelcol-gpu/otelcol-gpu/processor/tenantprocessor/internal/metadata"
)

const (
	defaultAttribute       = "tenant.id"
	defaultOnMismatch      = OnMismatchOverride
	defaultSourceTimeout   = 2 * time.Second
	defaultRefreshInterval = 5 * time.Minute
	// host.id: for a cloud host, the provider's instance id (semantic
	// conventions), which is what the credential carries.
	defaultVMAttribute    = "host.id"
	defaultReservedPrefix = "usage."
	defaultRenamePrefix   = "customer."
	// Below the usage job's last recheck (24 h) plus its grace period
	// (config/usage.yaml), so every stored sample is billed.
	defaultMaxAge    = 23 * time.Hour
	defaultMaxFuture = 5 * time.Minute
)

// NewFactory returns the factory of the tenant processor.
func NewFactory() processor.Factory {
	return processor.NewFactory(metadata.Type, createDefaultConfig,
		processor.WithMetrics(createMetrics, metadata.Stability),
		processor.WithLogs(createLogs, metadata.Stability),
		processor.WithTraces(createTraces, metadata.Stability))
}

func createDefaultConfig() component.Config {
	return &Config{
		Attribute:  defaultAttribute,
		OnMismatch: defaultOnMismatch,
		Source: SourceConfig{
			Timeout:         defaultSourceTimeout,
			RefreshInterval: defaultRefreshInterval,
		},
		VMAttribute:          defaultVMAttribute,
		VMMinutesMetric:      usage.VMMinutesMetric,
		ReservedPrefixes:     []string{defaultReservedPrefix},
		ReservedRenamePrefix: defaultRenamePrefix,
		Timestamps:           TimestampsConfig{MaxAge: defaultMaxAge, MaxFuture: defaultMaxFuture},
	}
}

// processors shares one tenantProcessor between the signals of one id, so
// an agent reads its tenant source once.
var processors sharedcomponent.Map[component.ID, *tenantProcessor]

func shared(set processor.Settings, cfg component.Config) (*sharedcomponent.Component[*tenantProcessor], error) {
	return processors.LoadOrStore(set.ID, func() (*tenantProcessor, error) {
		return newTenantProcessor(cfg.(*Config), set.TelemetrySettings)
	})
}

// metadataNext passes the authenticated tenant on in the request's client
// metadata (set_metadata, gateway mode). processorhelper hands the next
// consumer the context it was given, so the tenant is put in here, from the
// same auth data enforce read.
func metadataNext[T any](p *tenantProcessor, next func(context.Context, T) error) func(context.Context, T) error {
	if !p.cfg.SetMetadata || p.cfg.Mode != ModeGateway {
		return next
	}
	return func(ctx context.Context, data T) error {
		info := client.FromContext(ctx)
		if info.Auth != nil {
			if tenant, ok := info.Auth.GetAttribute(tenantid.AuthAttributeTenant).(string); ok {
				ctx = withTenantMetadata(ctx, info, p.cfg.Attribute, tenant)
			}
		}
		return next(ctx, data)
	}
}

// options are what every signal's processorhelper gets: the shared
// instance's lifecycle, and the fact that the processor rewrites data.
func options(c *sharedcomponent.Component[*tenantProcessor]) []processorhelper.Option {
	return []processorhelper.Option{
		processorhelper.WithStart(c.Start),
		processorhelper.WithShutdown(c.Shutdown),
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: true}),
	}
}

func metricsResources(md pmetric.Metrics) resources {
	rms := md.ResourceMetrics()
	return resources{
		n:     rms.Len(),
		at:    func(i int) pcommon.Resource { return rms.At(i).Resource() },
		below: func(i int, l *lookalikes, tenant string, t *scrubTally) { scrubMetrics(rms.At(i), l, tenant, t) },
	}
}

func logsResources(ld plog.Logs) resources {
	rls := ld.ResourceLogs()
	return resources{
		n:     rls.Len(),
		at:    func(i int) pcommon.Resource { return rls.At(i).Resource() },
		below: func(i int, l *lookalikes, tenant string, t *scrubTally) { scrubLogs(rls.At(i), l, tenant, t) },
	}
}

func tracesResources(td ptrace.Traces) resources {
	rss := td.ResourceSpans()
	return resources{
		n:     rss.Len(),
		at:    func(i int) pcommon.Resource { return rss.At(i).Resource() },
		below: func(i int, l *lookalikes, tenant string, t *scrubTally) { scrubTraces(rss.At(i), l, tenant, t) },
	}
}

func createMetrics(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Metrics) (processor.Metrics, error) {
	c, err := shared(set, cfg)
	if err != nil {
		return nil, err
	}
	p := c.Unwrap
	nextFn, err := consumer.NewMetrics(metadataNext(p, next.ConsumeMetrics))
	if err != nil {
		return nil, err
	}
	return processorhelper.NewMetrics(ctx, set, cfg, nextFn, func(ctx context.Context, md pmetric.Metrics) (pmetric.Metrics, error) {
		return md, p.applyMetrics(ctx, md)
	}, options(c)...)
}

func createLogs(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Logs) (processor.Logs, error) {
	c, err := shared(set, cfg)
	if err != nil {
		return nil, err
	}
	p := c.Unwrap
	nextFn, err := consumer.NewLogs(metadataNext(p, next.ConsumeLogs))
	if err != nil {
		return nil, err
	}
	return processorhelper.NewLogs(ctx, set, cfg, nextFn, func(ctx context.Context, ld plog.Logs) (plog.Logs, error) {
		return ld, p.apply(ctx, logsResources(ld))
	}, options(c)...)
}

func createTraces(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, error) {
	c, err := shared(set, cfg)
	if err != nil {
		return nil, err
	}
	p := c.Unwrap
	nextFn, err := consumer.NewTraces(metadataNext(p, next.ConsumeTraces))
	if err != nil {
		return nil, err
	}
	return processorhelper.NewTraces(ctx, set, cfg, nextFn, func(ctx context.Context, td ptrace.Traces) (ptrace.Traces, error) {
		return td, p.apply(ctx, tracesResources(td))
	}, options(c)...)
}
