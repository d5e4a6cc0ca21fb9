package tenantprocessor

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/otelcol-gpu/otelcol-gpu/internal/periodic"
	"github.com/otelcol-gpu/otelcol-gpu/internal/telemetry"
	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
	"github.com/otelcol-gpu/otelcol-gpu/processor/tenantprocessor/internal/metadata"
)

// warnLogEvery bounds how often a spoofing attempt (or a renamed
// metric, or a refused data point) is logged; every one is counted.
const warnLogEvery = 10 * time.Second

// maxLoggedClaim bounds how much of a payload's claimed tenant reaches the log.
const maxLoggedClaim = 64

// Refusals carry gRPC status codes so the otlp receiver answers with the
// right non-retryable code: Unauthenticated (HTTP 401) without a tenant,
// PermissionDenied (HTTP 403) for a payload rejected for claiming another.
var (
	errNoAuth     = status.Error(codes.Unauthenticated, "tenant: request carries no authenticated tenant (is tenant_auth the receiver's authenticator?)")
	errBadAuthTen = status.Error(codes.Unauthenticated, "tenant: authenticated tenant id is not valid")
	errNoInstance = status.Error(codes.Unauthenticated, "tenant: request carries no authenticated VM identity (instance_id; is tenant_auth the receiver's authenticator?)")
)

var (
	reasonNoAuth      = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", "no_auth")))
	reasonNoInstance  = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", "no_instance")))
	reasonMismatch    = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", "mismatch")))
	reasonOutOfWindow = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", "out_of_window")))
	reasonTooOld      = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", "too_old")))
	reasonTooNew      = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", "too_new")))
)

// resources hands out the resources of one request, whatever the signal,
// and walks what lies below each (scopes, items).
type resources struct {
	n     int
	at    func(int) pcommon.Resource
	below func(i int, l *lookalikes, tenant string, t *scrubTally)
}

// sender is what the gateway knows of a request's sender, from the auth data.
type sender struct {
	info   client.Info
	tenant string
	vm     string
}

// gpus is the VM's provisioned GPUs, when its credential says.
func (s sender) gpus() (int64, bool) {
	n, ok := s.info.Auth.GetAttribute(tenantid.AuthAttributeGPUs).(int64)
	return n, ok
}

// credentialID is the credential that authenticated the request, for logs.
func (s sender) credentialID() string {
	id, _ := s.info.Auth.GetAttribute(tenantid.AuthAttributeCredential).(string)
	return id
}

// tenantProcessor is shared by the metrics, logs and traces instances of one
// configured id.
type tenantProcessor struct {
	// host is what host_attributes sets (agent mode; nil: off).
	host   map[string]string
	cfg    *Config
	logger *zap.Logger

	// agent mode
	source   *tenantSource
	current  atomic.Pointer[identity]
	warnOnce sync.Once
	failure  periodic.ErrorLatch // owned by Start, then the refresher
	refresh  *periodic.Runner

	// gateway mode
	like        *lookalikes // names that would become the tenant's or the VM's label in the store
	reserved    reservedNames
	mismatchLog periodic.Every
	renameLog   periodic.Every
	windowLog   periodic.Every
	// now is the clock the timestamp window is measured against.
	now func() time.Time

	untagged      metric.Int64Counter
	mismatches    metric.Int64Counter
	removed       metric.Int64Counter
	refused       metric.Int64Counter
	renamed       metric.Int64Counter
	refusedPoints metric.Int64Counter
}

func newTenantProcessor(cfg *Config, set component.TelemetrySettings) (*tenantProcessor, error) {
	p := &tenantProcessor{
		cfg: cfg, logger: set.Logger, like: newLookalikes(cfg), reserved: newReservedNames(cfg), now: time.Now,
		mismatchLog: periodic.Every{Interval: warnLogEvery},
		renameLog:   periodic.Every{Interval: warnLogEvery},
		windowLog:   periodic.Every{Interval: warnLogEvery},
	}
	// The counters live as long as the process's meter: nothing observed
	// to unregister.
	if _, err := telemetry.Register(set, metadata.ScopeName, p.metrics()); err != nil {
		return nil, err
	}
	if cfg.Mode == ModeAgent {
		p.source = newTenantSource(cfg)
	}
	return p, nil
}

// metrics is the processor's own metrics (the README's table is rendered
// from it).
func (p *tenantProcessor) metrics() []telemetry.Metric {
	return []telemetry.Metric{
		{Name: "otelcol_processor_tenant_untagged_resources", Unit: "{resource}", Counter: &p.untagged,
			Description: "Resources an agent forwarded without a tenant because none was known yet."},
		{Name: "otelcol_processor_tenant_mismatched_resources", Unit: "{resource}", Attrs: []string{telemetry.TenantAttr}, Counter: &p.mismatches,
			Description: "Resources whose payload claimed a tenant other than the authenticated one (the authenticated tenant)."},
		{Name: "otelcol_processor_tenant_refused_requests", Unit: "{request}", Attrs: []string{"reason"}, Counter: &p.refused,
			Description: "Requests refused by the gateway, by reason (no_auth, no_instance, mismatch, out_of_window)."},
		{Name: "otelcol_processor_tenant_removed_attributes", Unit: "{attribute}", Attrs: []string{telemetry.TenantAttr}, Counter: &p.removed,
			Description: "Attributes named like the tenant or the VM attribute that the gateway removed (on scopes, data points, log records, spans; look-alikes on resources)."},
		{Name: "otelcol_processor_tenant_renamed_metrics", Unit: "{metric}", Counter: &p.renamed,
			Description: "Customer metrics whose name began with a reserved prefix, renamed by the gateway."},
		{Name: "otelcol_processor_tenant_refused_points", Unit: "{datapoint}", Attrs: []string{"reason"}, Counter: &p.refusedPoints,
			Description: "Data points the gateway removed for a timestamp outside its window, by reason (too_old, too_new)."},
	}
}

// Start resolves the agent's identity: the source, else the cache file. With
// required: true, start fails while neither gives a tenant.
func (p *tenantProcessor) Start(ctx context.Context, _ component.Host) error {
	if p.cfg.Mode != ModeAgent {
		return nil
	}
	if p.cfg.HostAttributes {
		name, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("tenant: host_attributes: the host name: %w", err)
		}
		p.host = map[string]string{hostNameAttribute: name, osTypeAttribute: runtime.GOOS}
	}
	err := p.read(ctx)
	if err != nil && p.cfg.CacheFile != "" {
		if cached, cerr := readCache(p.cfg.CacheFile); cerr == nil {
			p.current.Store(cached)
			p.logger.Warn("source unavailable, using the cached tenant", zap.String("source", p.source.describe()),
				zap.String("tenant", cached.Tenant), zap.Error(err))
		}
	}
	if p.current.Load() == nil {
		if p.cfg.Required {
			return fmt.Errorf("tenant: no tenant from %s and required is true: %w", p.source.describe(), err)
		}
		p.failure.Changed(err)
		p.logger.Warn("no tenant known yet; forwarding data untagged (the gateway tags it from the credential)",
			zap.String("source", p.source.describe()), zap.Error(err))
	}
	if p.cfg.Source.Type == SourceFile || p.cfg.Source.Type == SourceHTTP {
		p.refresh = periodic.Start(p.cfg.Source.RefreshInterval, func() {
			ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Source.RefreshInterval)
			defer cancel()
			if err := p.read(ctx); p.failure.Changed(err) {
				p.logger.Warn("source read failed; keeping the last known tenant", zap.String("source", p.source.describe()), zap.Error(err))
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
	p.logger.Info("identity set", fields...)
	if p.cfg.CacheFile != "" {
		if err := writeCache(p.cfg.CacheFile, id); err != nil {
			p.logger.Warn("cannot write the cache file", zap.String("cache_file", p.cfg.CacheFile), zap.Error(err))
		}
	}
	return nil
}

// apply runs the mode's rule over one request's resources. An error is
// permanent: the data must not go further.
func (p *tenantProcessor) apply(ctx context.Context, rs resources) error {
	if p.cfg.Mode == ModeGateway {
		var tally scrubTally
		_, err := p.enforce(ctx, rs, &tally)
		return err
	}
	p.stamp(ctx, rs)
	return nil
}

// applyMetrics is apply, plus in gateway mode the rules only metrics have:
// reserved names and the timestamp window, checked on enforce's walk.
func (p *tenantProcessor) applyMetrics(ctx context.Context, md pmetric.Metrics) error {
	if p.cfg.Mode != ModeGateway {
		p.stamp(ctx, metricsResources(md))
		return nil
	}
	var tally scrubTally
	tally.metrics = p.metricChecks()
	from, err := p.enforce(ctx, metricsResources(md), &tally)
	if err != nil {
		return err
	}
	if err := p.settleMetrics(ctx, from, md, &tally.metrics); err != nil {
		return err
	}
	p.stampVMMinute(from, md)
	return nil
}

// stampVMMinute adds the VM's minute to a request that holds data: one
// point of vm_minutes_metric in a resource of its own (only the tenant and
// VM attributes, so every VM has one series), stamped with the minute the
// gateway received it and valued at the VM's provisioned GPUs. Requests in
// the same minute, or the same request retried, give the same point: the
// store keeps one.
func (p *tenantProcessor) stampVMMinute(from sender, md pmetric.Metrics) {
	if p.cfg.VMMinutesMetric == "" || from.vm == "" || md.DataPointCount() == 0 {
		return
	}
	rm := md.ResourceMetrics().AppendEmpty()
	attrs := rm.Resource().Attributes()
	attrs.PutStr(p.cfg.Attribute, from.tenant)
	attrs.PutStr(p.cfg.VMAttribute, from.vm)
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(metadata.ScopeName)
	m := sm.Metrics().AppendEmpty()
	m.SetName(p.cfg.VMMinutesMetric)
	m.SetUnit("{gpu}")
	m.SetDescription("The VM's provisioned GPUs, once per minute in which the gateway received its data.")
	dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(pcommon.NewTimestampFromTime(p.now().UTC().Truncate(time.Minute)))
	if n, ok := from.gpus(); ok {
		dp.SetIntValue(n)
		dp.Attributes().PutStr(usage.GPUsFromAttribute, usage.GPUsFromProvisioning)
	} else {
		dp.SetIntValue(0)
		dp.Attributes().PutStr(usage.GPUsFromAttribute, usage.GPUsFromAgent)
	}
}

// The semantic conventions' names of what host_attributes sets.
const (
	hostNameAttribute = "host.name"
	osTypeAttribute   = "os.type"
)

// stamp (agent mode) sets the host's attributes and the known identity on
// every resource. It never fails: an error would make the scraper helper
// drop the scrape.
func (p *tenantProcessor) stamp(ctx context.Context, rs resources) {
	for i := 0; i < rs.n && p.host != nil; i++ {
		attrs := rs.at(i).Attributes()
		for k, v := range p.host {
			attrs.PutStr(k, v)
		}
	}
	id := p.current.Load()
	if id == nil {
		if rs.n > 0 {
			p.untagged.Add(ctx, int64(rs.n))
			p.warnOnce.Do(func() {
				p.logger.Warn("forwarding data without a tenant until the source answers", zap.String("source", p.source.describe()))
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

// enforce (gateway mode) overwrites every resource's tenant, and VM
// identity, with the authenticated ones.
func (p *tenantProcessor) enforce(ctx context.Context, rs resources, tally *scrubTally) (sender, error) {
	info := client.FromContext(ctx)
	if info.Auth == nil {
		p.refused.Add(ctx, 1, reasonNoAuth)
		return sender{}, consumererror.NewPermanent(errNoAuth)
	}
	tenant, _ := info.Auth.GetAttribute(tenantid.AuthAttributeTenant).(string)
	if err := tenantid.Validate(tenant); err != nil {
		p.refused.Add(ctx, 1, reasonNoAuth)
		p.logger.Error("the authenticator supplied an invalid tenant id", zap.Error(err))
		return sender{}, consumererror.NewPermanent(errBadAuthTen)
	}
	from := sender{info: info, tenant: tenant}
	if p.cfg.VMAttribute != "" {
		// Never the payload's word: the meters count VMs and bill GPUs by it.
		from.vm, _ = info.Auth.GetAttribute(tenantid.AuthAttributeInstance).(string)
		if from.vm == "" {
			p.refused.Add(ctx, 1, reasonNoInstance)
			return sender{}, consumererror.NewPermanent(errNoInstance)
		}
	}

	// One pass per resource: its own claim, then every name like the
	// tenant or the VM attribute elsewhere (it would become, or override,
	// the tenant's or the VM's label in the store): removed, counted. The
	// same pass renames reserved metrics and tallies point timestamps.
	mismatched, claim := 0, ""
	for i := 0; i < rs.n; i++ {
		attrs := rs.at(i).Attributes()
		if v, ok := attrs.Get(p.cfg.Attribute); ok && (v.Type() != pcommon.ValueTypeStr || v.Str() != tenant) {
			if mismatched == 0 {
				claim = v.AsString()
			}
			mismatched++
		}
		p.like.remove(attrs, true, tenant, tally)
		rs.below(i, p.like, tenant, tally)
	}
	if tally.removed > 0 {
		p.removed.Add(ctx, int64(tally.removed), p.cfg.Telemetry.With(tenant))
	}
	if mismatched > 0 || tally.claims > 0 {
		if mismatched > 0 {
			p.mismatches.Add(ctx, int64(mismatched), p.cfg.Telemetry.With(tenant))
		}
		p.logMismatch(from, claim, mismatched, tally.claims)
		if p.cfg.OnMismatch == OnMismatchReject {
			p.refused.Add(ctx, 1, reasonMismatch)
			return sender{}, consumererror.NewPermanent(status.Errorf(codes.PermissionDenied,
				"tenant: %d resource(s) and %d other attribute(s) claim a tenant other than the authenticated one", mismatched, tally.claims))
		}
	}
	for i := 0; i < rs.n; i++ {
		attrs := rs.at(i).Attributes()
		putStr(attrs, p.cfg.Attribute, tenant)
		if from.vm != "" {
			putStr(attrs, p.cfg.VMAttribute, from.vm)
		}
	}
	return from, nil
}

// putStr sets k to v unless it holds exactly v already: pdata allocates for
// every string value it sets, and an honest agent's tenant is right.
func putStr(m pcommon.Map, k, v string) {
	if cur, ok := m.Get(k); ok && cur.Type() == pcommon.ValueTypeStr && cur.Str() == v {
		return
	}
	m.PutStr(k, v)
}

func (p *tenantProcessor) logMismatch(from sender, claim string, resources, below int) {
	if !p.mismatchLog.Allow() {
		return
	}
	action := "overwritten"
	if p.cfg.OnMismatch == OnMismatchReject {
		action = "rejected"
	}
	p.logger.Warn("payload claimed another tenant; "+action+" (logged at most every 10s, every one is counted)",
		zap.String("tenant", from.tenant), zap.String("credential_id", from.credentialID()), zap.String("claimed", cut(claim)),
		zap.Int("resources", resources), zap.Int("attributes_below_resources", below))
}

// cut bounds what a payload's value brings into the log.
func cut(s string) string {
	if len(s) > maxLoggedClaim {
		return s[:maxLoggedClaim] + "..."
	}
	return s
}

// withTenantMetadata returns ctx with the tenant in its client metadata.
func withTenantMetadata(ctx context.Context, info client.Info, key, tenant string) context.Context {
	info.Metadata = withMetadata(info.Metadata, key, tenant)
	return client.NewContext(ctx, info)
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
