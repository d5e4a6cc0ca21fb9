package tenantprocessor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/otelcol-gpu/otelcol-gpu/internal/periodic"
	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
	"github.com/otelcol-gpu/otelcol-gpu/processor/tenantprocessor/internal/metadata"
)

// mismatchLogEvery bounds how often a spoofing attempt is logged; every one is counted.
const mismatchLogEvery = 10 * time.Second

// maxLoggedClaim bounds how much of a payload's claimed tenant reaches the log.
const maxLoggedClaim = 64

// Refusals carry gRPC status codes so the otlp receiver answers with the
// right non-retryable code: Unauthenticated (HTTP 401) without a tenant,
// PermissionDenied (HTTP 403) for a payload rejected for claiming another.
var (
	errNoAuth     = status.Error(codes.Unauthenticated, "tenant: request carries no authenticated tenant (is tenant_auth the receiver's authenticator?)")
	errBadAuthTen = status.Error(codes.Unauthenticated, "tenant: authenticated tenant id is not valid")
)

// resources hands out the resources of one request, whatever the signal.
type resources struct {
	n  int
	at func(int) pcommon.Resource
}

// tenantProcessor is shared by the metrics, logs and traces instances of one
// configured id.
type tenantProcessor struct {
	cfg    *Config
	logger *zap.Logger

	// agent mode
	source   *tenantSource
	current  atomic.Pointer[identity]
	warnOnce sync.Once
	failure  periodic.ErrorLatch // owned by Start, then the refresher
	refresh  *periodic.Runner

	// gateway mode
	lastMismatchLog atomic.Int64

	untagged   metric.Int64Counter
	mismatches metric.Int64Counter
	refused    metric.Int64Counter
}

func newTenantProcessor(cfg *Config, set component.TelemetrySettings) (*tenantProcessor, error) {
	meter := set.MeterProvider.Meter(metadata.ScopeName)
	p := &tenantProcessor{cfg: cfg, logger: set.Logger}
	var errs [3]error
	p.untagged, errs[0] = meter.Int64Counter("otelcol_processor_tenant_untagged_resources",
		metric.WithDescription("Resources an agent forwarded without a tenant because none was known yet."), metric.WithUnit("{resource}"))
	p.mismatches, errs[1] = meter.Int64Counter("otelcol_processor_tenant_mismatched_resources",
		metric.WithDescription("Resources whose payload claimed a tenant other than the authenticated one, by authenticated tenant."), metric.WithUnit("{resource}"))
	p.refused, errs[2] = meter.Int64Counter("otelcol_processor_tenant_refused_requests",
		metric.WithDescription("Requests refused by the gateway, by reason (no_auth, mismatch)."), metric.WithUnit("{request}"))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	if cfg.Mode == ModeAgent {
		p.source = newTenantSource(cfg)
	}
	return p, nil
}

// Start resolves the agent's identity: the source, else the cache file. With
// required: true, start fails while neither gives a tenant.
func (p *tenantProcessor) Start(ctx context.Context, _ component.Host) error {
	if p.cfg.Mode != ModeAgent {
		return nil
	}
	err := p.read(ctx)
	if err != nil && p.cfg.CacheFile != "" {
		if cached, cerr := readCache(p.cfg.CacheFile); cerr == nil {
			p.current.Store(cached)
			p.logger.Warn("tenant: source unavailable, using the cached tenant", zap.String("source", p.source.describe()),
				zap.String("tenant", cached.Tenant), zap.Error(err))
		}
	}
	if p.current.Load() == nil {
		if p.cfg.Required {
			return fmt.Errorf("tenant: no tenant from %s and required is true: %w", p.source.describe(), err)
		}
		p.failure.Changed(err)
		p.logger.Warn("tenant: no tenant known yet; forwarding data untagged (the gateway tags it from the credential)",
			zap.String("source", p.source.describe()), zap.Error(err))
	}
	if p.cfg.Source.Type == SourceFile || p.cfg.Source.Type == SourceHTTP {
		p.refresh = periodic.Start(p.cfg.Source.RefreshInterval, func() {
			ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Source.RefreshInterval)
			defer cancel()
			if err := p.read(ctx); p.failure.Changed(err) {
				p.logger.Warn("tenant: source read failed; keeping the last known tenant", zap.String("source", p.source.describe()), zap.Error(err))
			}
		})
	}
	return nil
}

// Shutdown stops the refresh loop.
func (p *tenantProcessor) Shutdown(context.Context) error {
	p.refresh.Stop()
	return nil
}

// read reads the source and, on a change, swaps in and caches the new identity.
func (p *tenantProcessor) read(ctx context.Context) error {
	id, missing, err := p.source.fetch(ctx)
	if err != nil {
		return err
	}
	old := p.current.Load()
	if id.equal(old) {
		return nil
	}
	p.current.Store(id)
	fields := []zap.Field{zap.String("tenant", id.Tenant), zap.String("source", p.source.describe())}
	if len(missing) > 0 {
		fields = append(fields, zap.Strings("attributes_not_found", missing))
	}
	if old != nil {
		fields = append(fields, zap.String("previous", old.Tenant))
	}
	p.logger.Info("tenant: identity set", fields...)
	if p.cfg.CacheFile != "" {
		if err := writeCache(p.cfg.CacheFile, id); err != nil {
			p.logger.Warn("tenant: cannot write the cache file", zap.String("cache_file", p.cfg.CacheFile), zap.Error(err))
		}
	}
	return nil
}

// apply runs the mode's rule over one request's resources and returns the
// context to pass on. An error is permanent: the data must not go further.
func (p *tenantProcessor) apply(ctx context.Context, rs resources) (context.Context, error) {
	if p.cfg.Mode == ModeGateway {
		return p.enforce(ctx, rs)
	}
	p.stamp(ctx, rs)
	return ctx, nil
}

// stamp (agent mode) sets the known identity on every resource. It never
// fails: an error would make the scraper helper drop the scrape.
func (p *tenantProcessor) stamp(ctx context.Context, rs resources) {
	id := p.current.Load()
	if id == nil {
		if rs.n > 0 {
			p.untagged.Add(ctx, int64(rs.n))
			p.warnOnce.Do(func() {
				p.logger.Warn("tenant: forwarding data without a tenant until the source answers", zap.String("source", p.source.describe()))
			})
		}
		return
	}
	for i := 0; i < rs.n; i++ {
		attrs := rs.at(i).Attributes()
		attrs.PutStr(p.cfg.Attribute, id.Tenant)
		for k, v := range id.Attributes {
			attrs.PutStr(k, v)
		}
	}
}

// enforce (gateway mode) overwrites every resource's tenant with the
// authenticated one.
func (p *tenantProcessor) enforce(ctx context.Context, rs resources) (context.Context, error) {
	info := client.FromContext(ctx)
	if info.Auth == nil {
		p.refused.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "no_auth")))
		return ctx, consumererror.NewPermanent(errNoAuth)
	}
	tenant, _ := info.Auth.GetAttribute(tenantid.AuthAttributeTenant).(string)
	if err := tenantid.Validate(tenant); err != nil {
		p.refused.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "no_auth")))
		p.logger.Error("tenant: the authenticator supplied an invalid tenant id", zap.Error(err))
		return ctx, consumererror.NewPermanent(errBadAuthTen)
	}

	mismatched, claim := 0, ""
	for i := 0; i < rs.n; i++ {
		v, ok := rs.at(i).Attributes().Get(p.cfg.Attribute)
		if !ok {
			continue
		}
		if v.Type() != pcommon.ValueTypeStr || v.Str() != tenant {
			if mismatched == 0 {
				claim = v.AsString()
			}
			mismatched++
		}
	}
	if mismatched > 0 {
		p.mismatches.Add(ctx, int64(mismatched), metric.WithAttributes(attribute.String("tenant", tenant)))
		p.logMismatch(info, tenant, claim, mismatched)
		if p.cfg.OnMismatch == OnMismatchReject {
			p.refused.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "mismatch")))
			return ctx, consumererror.NewPermanent(status.Errorf(codes.PermissionDenied,
				"tenant: %d resource(s) claim a tenant other than the authenticated one", mismatched))
		}
	}
	for i := 0; i < rs.n; i++ {
		rs.at(i).Attributes().PutStr(p.cfg.Attribute, tenant)
	}
	if p.cfg.SetMetadata {
		info.Metadata = withMetadata(info.Metadata, p.cfg.Attribute, tenant)
		ctx = client.NewContext(ctx, info)
	}
	return ctx, nil
}

func (p *tenantProcessor) logMismatch(info client.Info, tenant, claim string, n int) {
	now := time.Now().UnixNano()
	last := p.lastMismatchLog.Load()
	if now-last < int64(mismatchLogEvery) || !p.lastMismatchLog.CompareAndSwap(last, now) {
		return
	}
	if len(claim) > maxLoggedClaim {
		claim = claim[:maxLoggedClaim] + "..."
	}
	credential, _ := info.Auth.GetAttribute(tenantid.AuthAttributeCredential).(string)
	action := "overwritten"
	if p.cfg.OnMismatch == OnMismatchReject {
		action = "rejected"
	}
	p.logger.Warn("tenant: payload claimed another tenant; "+action+" (logged at most every 10s, every one is counted)",
		zap.String("tenant", tenant), zap.String("credential_id", credential), zap.String("claimed", claim), zap.Int("resources", n))
}

// withMetadata returns md plus key=value (replacing any value under key).
func withMetadata(md client.Metadata, key, value string) client.Metadata {
	m := map[string][]string{}
	for k := range md.Keys() {
		m[k] = md.Get(k)
	}
	m[strings.ToLower(key)] = []string{value}
	return client.NewMetadata(m)
}
