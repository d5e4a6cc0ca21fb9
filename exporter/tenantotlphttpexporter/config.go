package tenantotlphttpexporter

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configretry"

	"github.com/otelcol-gpu/otelcol-gpu/internal/telemetry"
	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
	"github.com/otelcol-gpu/otelcol-gpu/internal/tenanttemplate"
)

// Config configures the tenant_otlp_http exporter.
type Config struct {
	// ClientConfig is the upstream HTTP client: endpoint (a template: the
	// base URL, /v1/<signal> appended), tls, timeout, compression, static
	// headers. One transport serves every tenant.
	ClientConfig confighttp.ClientConfig `mapstructure:",squash"` // named, so its Unmarshal is not promoted to Config
	// MetricsEndpoint, LogsEndpoint and TracesEndpoint override endpoint per
	// signal, as templates.
	MetricsEndpoint string `mapstructure:"metrics_endpoint"`
	LogsEndpoint    string `mapstructure:"logs_endpoint"`
	TracesEndpoint  string `mapstructure:"traces_endpoint"`
	// TenantHeaders are header templates rendered per tenant, e.g.
	// X-Scope-OrgID: "{tenant}".
	TenantHeaders map[string]string `mapstructure:"tenant_headers"`
	// RouteBy says where a request's tenant comes from: auth (default), the
	// tenant tenant_auth authenticated for the request, so no payload and no
	// other component's setting can choose it; or attribute, each resource's
	// Attribute, for pipelines whose requests carry no authentication
	// because the tenant was enforced before them (a Kafka tier, a replay).
	RouteBy string `mapstructure:"route_by"`
	// Attribute is the resource attribute that carries the tenant id
	// (route_by: attribute).
	Attribute string `mapstructure:"attribute"`
	// Tenants holds per-tenant template variables, e.g. acme: {account: "12"}.
	Tenants map[string]map[string]string `mapstructure:"tenants"`
	// Batch says when a tenant's queued data leaves as one request.
	Batch BatchConfig `mapstructure:"batch"`
	// Queue bounds what waits to be sent.
	Queue QueueConfig `mapstructure:"queue"`
	// RateLimit bounds each tenant's intake.
	RateLimit RateLimitConfig `mapstructure:"rate_limit"`
	// Senders is the shared pool of requests in flight (one per tenant at a time).
	Senders int `mapstructure:"senders"`
	// SendersPerTenant is how many requests of one tenant may be in flight
	// at once; more than one only while a full batch more is waiting (a
	// backlog), so a slow destination holds at most this many senders.
	SendersPerTenant int `mapstructure:"senders_per_tenant"`
	// MaxTenants bounds the tenant queues alive at once.
	MaxTenants int `mapstructure:"max_tenants"`
	// IdleTimeout releases a tenant whose queue has been empty this long.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// DrainTimeout is how long shutdown tries to send what is queued; with
	// storage the rest stays on disk for the next start.
	DrainTimeout time.Duration `mapstructure:"drain_timeout"`
	// Telemetry says whether the exporter's own metrics carry the tenant.
	Telemetry telemetry.Tenancy `mapstructure:"telemetry"`
	// RetryOnFailure is each tenant's backoff; max_elapsed_time 0 retries forever.
	RetryOnFailure configretry.BackOffConfig `mapstructure:"retry_on_failure"`
	// RetryOnStatus lists the HTTP statuses that are retried (with the
	// Retry-After the store sends); any other non-2xx answer drops the
	// request as permanently refused. Transport errors are always retried.
	RetryOnStatus []int `mapstructure:"retry_on_status"`
}

// BatchConfig says when queued data is sent.
type BatchConfig struct {
	// MaxItems (data points, log records or spans) in one request.
	MaxItems int `mapstructure:"max_items"`
	// MaxBytes of protobuf in one request (before compression).
	MaxBytes int `mapstructure:"max_bytes"`
	// FlushInterval: data waits at most this long for a batch to fill.
	FlushInterval time.Duration `mapstructure:"flush_interval"`
}

// QueueConfig bounds the queues.
type QueueConfig struct {
	// MaxItemsPerTenant a tenant may have queued before its data is refused
	// (retryably) while the others go on.
	MaxItemsPerTenant int `mapstructure:"max_items_per_tenant"`
	// MaxBytes queued for all tenants together (the memory, or disk, budget).
	MaxBytes int64 `mapstructure:"max_bytes"`
	// Directory keeps the queues across restarts in an append-only log of
	// their own (a subfolder per exporter id): group-committed writes,
	// parts read back by position, no memory mapping. Empty: in memory
	// only.
	Directory string `mapstructure:"directory"`
	// Fsync (with directory): a part is acknowledged only once its write is
	// on the disk, so a power cut loses nothing acknowledged. Without it, an
	// acknowledged part survives the gateway being killed, not the machine
	// losing power.
	Fsync bool `mapstructure:"fsync"`
}

// RateLimitConfig is a token bucket per tenant, in items.
type RateLimitConfig struct {
	// ItemsPerSecond per tenant; 0 turns the limit off.
	ItemsPerSecond float64 `mapstructure:"items_per_second"`
	// Burst items above the rate.
	Burst int `mapstructure:"burst"`
}

// Where the tenant of a request comes from.
const (
	RouteByAuth      = "auth"
	RouteByAttribute = "attribute"
)

var _ component.Config = (*Config)(nil)

// templates are the parsed endpoint and header templates.
type templates struct {
	endpoints [numSignals]tenanttemplate.Template
	headers   map[string]tenanttemplate.Template
}

func (c *Config) endpointTemplate(s signal) string {
	explicit := [numSignals]string{c.MetricsEndpoint, c.LogsEndpoint, c.TracesEndpoint}[s]
	if explicit != "" {
		return explicit
	}
	if c.ClientConfig.Endpoint == "" {
		return ""
	}
	return strings.TrimSuffix(c.ClientConfig.Endpoint, "/") + "/v1/" + s.String()
}

func (c *Config) parseTemplates() (templates, []error) {
	var t templates
	var errs []error
	for s := signal(0); s < numSignals; s++ {
		raw := c.endpointTemplate(s)
		if raw == "" {
			continue
		}
		tmpl, err := tenanttemplate.Parse(raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s endpoint: %w", s, err))
			continue
		}
		t.endpoints[s] = tmpl
	}
	var herrs []error
	t.headers, herrs = tenanttemplate.ParseHeaders("tenant_headers", c.TenantHeaders)
	return t, append(errs, herrs...)
}

// Validate checks the configuration; every error names its field.
func (c *Config) Validate() error {
	var errs []error
	if c.ClientConfig.Endpoint == "" && c.MetricsEndpoint == "" && c.LogsEndpoint == "" && c.TracesEndpoint == "" {
		errs = append(errs, errors.New("endpoint: must be set, or metrics_endpoint, logs_endpoint or traces_endpoint for the signals exported"))
	}
	t, terrs := c.parseTemplates()
	errs = append(errs, terrs...)
	// Every variable a template uses must be given for every listed tenant;
	// tenants not listed may only use {tenant}.
	for tenant, vars := range c.Tenants {
		if err := tenantid.Validate(tenant); err != nil {
			errs = append(errs, fmt.Errorf("tenants: %w", err))
			continue
		}
		for _, tmpl := range append(t.endpoints[:], headerTemplates(t)...) {
			for _, v := range tmpl.Vars() {
				if _, ok := vars[v]; !ok {
					errs = append(errs, fmt.Errorf("tenants.%s: no %q, which %q needs", tenant, v, tmpl.Raw()))
				}
			}
		}
	}
	switch c.RouteBy {
	case RouteByAuth:
	case RouteByAttribute:
		if strings.TrimSpace(c.Attribute) == "" {
			errs = append(errs, errors.New("attribute: must not be empty with route_by: attribute"))
		}
	default:
		errs = append(errs, fmt.Errorf("route_by: must be %q or %q, got %q", RouteByAuth, RouteByAttribute, c.RouteBy))
	}
	if c.Batch.MaxItems < 1 || c.Batch.MaxBytes < 1 || c.Batch.FlushInterval <= 0 {
		errs = append(errs, fmt.Errorf("batch: max_items, max_bytes and flush_interval must be positive, got %d, %d, %s",
			c.Batch.MaxItems, c.Batch.MaxBytes, c.Batch.FlushInterval))
	}
	if c.Queue.MaxItemsPerTenant < c.Batch.MaxItems {
		errs = append(errs, fmt.Errorf("queue.max_items_per_tenant: %d must be at least batch.max_items %d", c.Queue.MaxItemsPerTenant, c.Batch.MaxItems))
	}
	if c.Queue.MaxBytes < int64(c.Batch.MaxBytes) {
		errs = append(errs, fmt.Errorf("queue.max_bytes: %d must be at least batch.max_bytes %d", c.Queue.MaxBytes, c.Batch.MaxBytes))
	}
	if c.Queue.Fsync && c.Queue.Directory == "" {
		errs = append(errs, errors.New("queue.fsync: needs queue.directory"))
	}
	if c.RateLimit.ItemsPerSecond < 0 || (c.RateLimit.ItemsPerSecond > 0 && c.RateLimit.Burst < c.Batch.MaxItems) {
		errs = append(errs, fmt.Errorf("rate_limit: items_per_second must not be negative and burst at least batch.max_items (%d), got %g, %d",
			c.Batch.MaxItems, c.RateLimit.ItemsPerSecond, c.RateLimit.Burst))
	}
	if c.Senders < 1 {
		errs = append(errs, fmt.Errorf("senders: must be at least 1, got %d", c.Senders))
	}
	if c.SendersPerTenant < 1 || c.SendersPerTenant > max(1, c.Senders) {
		errs = append(errs, fmt.Errorf("senders_per_tenant: must be between 1 and senders (%d), got %d", c.Senders, c.SendersPerTenant))
	}
	if c.MaxTenants < 1 {
		errs = append(errs, fmt.Errorf("max_tenants: must be at least 1, got %d", c.MaxTenants))
	}
	if c.IdleTimeout <= 0 || c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("idle_timeout must be positive and drain_timeout not negative, got %s, %s", c.IdleTimeout, c.DrainTimeout))
	}
	for _, code := range c.RetryOnStatus {
		if code < 300 || code > 599 {
			errs = append(errs, fmt.Errorf("retry_on_status: %d is not an HTTP error status (300-599)", code))
		}
	}
	return errors.Join(errs...)
}

func headerTemplates(t templates) []tenanttemplate.Template {
	out := make([]tenanttemplate.Template, 0, len(t.headers))
	for _, h := range t.headers {
		out = append(out, h)
	}
	return out
}
