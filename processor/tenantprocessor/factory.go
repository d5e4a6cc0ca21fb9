package tenantprocessor

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"

	"github.com/otelcol-gpu/otelcol-gpu/internal/sharedcomponent"
	"github.com/otelcol-gpu/otelcol-gpu/processor/tenantprocessor/internal/metadata"
)

const (
	defaultAttribute       = "tenant.id"
	defaultOnMismatch      = OnMismatchOverride
	defaultSourceTimeout   = 2 * time.Second
	defaultRefreshInterval = 5 * time.Minute
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

// base is what the three signal processors have in common.
type base struct {
	*sharedcomponent.Component[*tenantProcessor]
}

func (base) Capabilities() consumer.Capabilities { return consumer.Capabilities{MutatesData: true} }

type metricsProcessor struct {
	base
	next consumer.Metrics
}

func (p *metricsProcessor) ConsumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	rms := md.ResourceMetrics()
	ctx, err := p.Unwrap.apply(ctx, resources{n: rms.Len(), at: func(i int) pcommon.Resource { return rms.At(i).Resource() }})
	if err != nil {
		return err
	}
	return p.next.ConsumeMetrics(ctx, md)
}

type logsProcessor struct {
	base
	next consumer.Logs
}

func (p *logsProcessor) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	rls := ld.ResourceLogs()
	ctx, err := p.Unwrap.apply(ctx, resources{n: rls.Len(), at: func(i int) pcommon.Resource { return rls.At(i).Resource() }})
	if err != nil {
		return err
	}
	return p.next.ConsumeLogs(ctx, ld)
}

type tracesProcessor struct {
	base
	next consumer.Traces
}

func (p *tracesProcessor) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	rss := td.ResourceSpans()
	ctx, err := p.Unwrap.apply(ctx, resources{n: rss.Len(), at: func(i int) pcommon.Resource { return rss.At(i).Resource() }})
	if err != nil {
		return err
	}
	return p.next.ConsumeTraces(ctx, td)
}

func createMetrics(_ context.Context, set processor.Settings, cfg component.Config, next consumer.Metrics) (processor.Metrics, error) {
	c, err := shared(set, cfg)
	if err != nil {
		return nil, err
	}
	return &metricsProcessor{base: base{c}, next: next}, nil
}

func createLogs(_ context.Context, set processor.Settings, cfg component.Config, next consumer.Logs) (processor.Logs, error) {
	c, err := shared(set, cfg)
	if err != nil {
		return nil, err
	}
	return &logsProcessor{base: base{c}, next: next}, nil
}

func createTraces(_ context.Context, set processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, error) {
	c, err := shared(set, cfg)
	if err != nil {
		return nil, err
	}
	return &tracesProcessor{base: base{c}, next: next}, nil
}
