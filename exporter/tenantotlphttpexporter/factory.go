package tenantotlphttpexporter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/otelcol-gpu/otelcol-gpu/exporter/tenantotlphttpexporter/internal/metadata"
	"github.com/otelcol-gpu/otelcol-gpu/internal/sharedcomponent"
	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
)

// Defaults: batches of a few agent requests, queues that ride out a store
// outage of minutes for a tenant sending ~20k points/s, a budget a gateway
// can hold in memory.
const (
	defaultAttribute         = "tenant.id"
	defaultBatchItems        = 8192
	defaultBatchBytes        = 4 << 20
	defaultFlushInterval     = 200 * time.Millisecond
	defaultMaxItemsPerTenant = 1_000_000
	defaultMaxBytes          = 256 << 20
	defaultSenders           = 16
	defaultSendersPerTenant  = 4
	defaultMaxTenants        = 10_000
	defaultIdleTimeout       = 5 * time.Minute
	defaultDrainTimeout      = 10 * time.Second
)

// defaultRetryOnStatus is what the upstream otlp_http exporter retries: the
// statuses that say "later", not "never" (a 500 is a bug in the request or
// the store, and retrying it forever would hold the tenant's queue).
var defaultRetryOnStatus = []int{http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}

// NewFactory returns the factory of the tenant_otlp_http exporter.
func NewFactory() exporter.Factory {
	return exporter.NewFactory(metadata.Type, createDefaultConfig,
		exporter.WithMetrics(createMetrics, metadata.Stability),
		exporter.WithLogs(createLogs, metadata.Stability),
		exporter.WithTraces(createTraces, metadata.Stability))
}

func createDefaultConfig() component.Config {
	client := confighttp.NewDefaultClientConfig()
	client.Timeout = 30 * time.Second
	client.Compression = "gzip"
	retry := configretry.NewDefaultBackOffConfig()
	retry.MaxElapsedTime = 0 // the queue bounds what is kept; never give up on a tenant
	return &Config{
		ClientConfig:     client,
		RouteBy:          RouteByAuth,
		Attribute:        defaultAttribute,
		Batch:            BatchConfig{MaxItems: defaultBatchItems, MaxBytes: defaultBatchBytes, FlushInterval: defaultFlushInterval},
		Queue:            QueueConfig{MaxItemsPerTenant: defaultMaxItemsPerTenant, MaxBytes: defaultMaxBytes},
		Senders:          defaultSenders,
		SendersPerTenant: defaultSendersPerTenant,
		MaxTenants:       defaultMaxTenants,
		IdleTimeout:      defaultIdleTimeout,
		DrainTimeout:     defaultDrainTimeout,
		RetryOnFailure:   retry,
		RetryOnStatus:    append([]int(nil), defaultRetryOnStatus...),
	}
}

// exporters shares one set of queues, senders and storage between the
// signals of one exporter id.
var exporters sharedcomponent.Map[component.ID, *tenantExporter]

func shared(set exporter.Settings, cfg component.Config) (*sharedcomponent.Component[*tenantExporter], error) {
	return exporters.LoadOrStore(set.ID, func() (*tenantExporter, error) {
		e, err := newTenantExporter(cfg.(*Config), set.TelemetrySettings)
		if err == nil {
			e.id = set.ID
		}
		return e, err
	})
}

type base struct {
	*sharedcomponent.Component[*tenantExporter]
}

// Capabilities: the exporter mutates data (route drops a request's data
// once it is encoded), so a pipeline that fans out gives it its own copy.
func (base) Capabilities() consumer.Capabilities { return consumer.Capabilities{MutatesData: true} }

// consume enqueues every tenant's part; untagged data is refused for good.
// A retryable refusal of one tenant's part is returned as it is (the
// receiver then asks the agent to retry the whole request; parts already
// accepted may arrive twice, which the store's deduplication absorbs).
func (b base) consume(ctx context.Context, sig signal, res splitResult, err error) error {
	if err != nil {
		return consumererror.NewPermanent(fmt.Errorf("tenant_otlp_http: cannot encode: %w", err))
	}
	e := b.Unwrap
	// A request of several tenants (route_by: attribute) has a part for
	// each, queued at once: with the queue on disk they go into one group
	// write and wait for one sync, not one after another.
	errs := make([]error, len(res.parts))
	if len(res.parts) == 1 {
		errs[0] = e.enqueue(ctx, sig, res.parts[0])
	} else {
		var wg sync.WaitGroup
		for i, p := range res.parts {
			wg.Go(func() { errs[i] = e.enqueue(ctx, sig, p) })
		}
		wg.Wait()
	}
	if err := firstError(errs); err != nil {
		return err
	}
	if res.untagged > 0 {
		e.failed.Add(ctx, int64(res.untagged), e.attrs(queueKey{sig: sig, tenant: ""}))
		return consumererror.NewPermanent(fmt.Errorf("tenant_otlp_http: %d %s item(s) have no valid %q resource attribute; not sent",
			res.untagged, sig, e.cfg.Attribute))
	}
	return nil
}

func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// route splits a request into tenants' parts: by the authenticated tenant
// of the request (route_by: auth), or by each resource's attribute
// (route_by: attribute).
func route[T any, R any](ctx context.Context, b base, sig signal, sp splitter[T, R], data T) error {
	e := b.Unwrap
	if e.cfg.RouteBy == RouteByAttribute {
		res, err := splitGeneric(sp, data, e.cfg.Attribute)
		if err == nil {
			sp.drop(data)
		}
		return b.consume(ctx, sig, res, err)
	}
	tenant, ok := authenticatedTenant(ctx)
	if !ok {
		items := 0
		for i := 0; i < sp.resources(data); i++ {
			items += sp.items(sp.resource(data, i))
		}
		e.failed.Add(ctx, int64(items), e.attrs(queueKey{sig: sig, tenant: ""}))
		return consumererror.NewPermanent(errNoAuthTenant)
	}
	res, err := whole(sp, data, tenant)
	if err == nil {
		// The parts are bytes of their own now: the decoded request (about
		// 200 bytes a data point, pointers the garbage collector follows)
		// need not stay live while they wait for the log's sync.
		sp.drop(data)
	}
	return b.consume(ctx, sig, res, err)
}

// errNoAuthTenant refuses a request that carries no authenticated tenant:
// nothing without one reaches the store.
var errNoAuthTenant = errors.New("tenant_otlp_http: the request carries no authenticated tenant; " +
	"the receiver needs tenant_auth as its authenticator, with no batching component before this exporter " +
	"(or set route_by: attribute where the tenant was authenticated upstream)")

// authenticatedTenant is the tenant tenant_auth put into the request's auth
// data, if it is a valid id.
func authenticatedTenant(ctx context.Context) (string, bool) {
	auth := client.FromContext(ctx).Auth
	if auth == nil {
		return "", false
	}
	tenant, _ := auth.GetAttribute(tenantid.AuthAttributeTenant).(string)
	return tenant, tenantid.Validate(tenant) == nil
}

type metricsExporter struct{ base }

func (x *metricsExporter) ConsumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	return route(ctx, x.base, sigMetrics, metricsSplitter, md)
}

type logsExporter struct{ base }

func (x *logsExporter) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	return route(ctx, x.base, sigLogs, logsSplitter, ld)
}

type tracesExporter struct{ base }

func (x *tracesExporter) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	return route(ctx, x.base, sigTraces, tracesSplitter, td)
}

func createMetrics(_ context.Context, set exporter.Settings, cfg component.Config) (exporter.Metrics, error) {
	c, err := shared(set, cfg)
	if err != nil {
		return nil, err
	}
	return &metricsExporter{base{c}}, nil
}

func createLogs(_ context.Context, set exporter.Settings, cfg component.Config) (exporter.Logs, error) {
	c, err := shared(set, cfg)
	if err != nil {
		return nil, err
	}
	return &logsExporter{base{c}}, nil
}

func createTraces(_ context.Context, set exporter.Settings, cfg component.Config) (exporter.Traces, error) {
	c, err := shared(set, cfg)
	if err != nil {
		return nil, err
	}
	return &tracesExporter{base{c}}, nil
}
