package tenantqueryextension

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"

	"github.com/otelcol-gpu/otelcol-gpu/internal/telemetry"
	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
	"github.com/otelcol-gpu/otelcol-gpu/internal/tenanttemplate"
)

// Config configures the tenant_query extension.
type Config struct {
	// ServerConfig is the customers' listener (endpoint, tls, timeouts).
	ServerConfig confighttp.ServerConfig `mapstructure:",squash"`
	// CredentialsFile is the credentials file tenant_auth reads; entries
	// with scope: read are the customers' API keys. Required.
	CredentialsFile string `mapstructure:"credentials_file"`
	// ReloadInterval is how often the file's content is checked: a revoked
	// key stops working (and its browser sessions end) within it.
	ReloadInterval time.Duration `mapstructure:"reload_interval"`
	// CredentialsMaxStale is how long the last good credentials stay in
	// force while the file fails to load (a key removed in the broken
	// edit works that long at most); past it every request is answered
	// 503 until the file loads again. 0 keeps them until it does.
	CredentialsMaxStale time.Duration `mapstructure:"credentials_max_stale"`
	// Store is where queries go, and how it is told the tenant.
	Store StoreConfig `mapstructure:"store"`
	// Limits bound each tenant's queries.
	Limits LimitsConfig `mapstructure:"limits"`
	// UI serves vmui and a login page.
	UI UIConfig `mapstructure:"ui"`
	// UsageEvents records every answered query in the event store, for the
	// tenant_usage receiver's read meters.
	UsageEvents UsageEventsConfig `mapstructure:"usage_events"`
	// Events serves the customers' GPU events (XID records) from the event
	// store's LogsQL API, each tenant held to its own records by the store.
	Events EventsConfig `mapstructure:"events"`
	// FailureLimit refuses, for the rest of the minute, the failing keys and
	// logins of a source address that failed this often in it; valid keys
	// from the same address (a team behind one NAT) still pass.
	FailureLimit FailureLimit `mapstructure:"failure_limit"`
	// Alerts names the tenant_alerts extension (e.g. tenant_alerts) whose
	// tenant API this listener serves under /alerting/v1/, to the tenant of
	// the read key, and whose page the UI shows at /alerts/; empty: no
	// alerting here.
	Alerts string `mapstructure:"alerts"`
	// Telemetry says whether the extension's own metrics carry the tenant.
	Telemetry telemetry.Tenancy `mapstructure:"telemetry"`
}

// FailureLimit is the per-address budget of failed keys and logins.
type FailureLimit struct {
	// PerMinute failures per source address; 0 turns the limit off.
	PerMinute int `mapstructure:"per_minute"`
	// TrackedSources is the size of the table that counts them (memory is
	// bounded by it, whatever the number of sources).
	TrackedSources int `mapstructure:"tracked_sources"`
}

// EventsConfig is the way to the event store (VictoriaLogs) for the
// customers' GPU events: its LogsQL read endpoints, allowlisted like the
// metrics ones, with the tenant added as extra_filters={"<tenant_field>":
// "<tenant>"}, which the store ANDs with every query and subquery.
type EventsConfig struct {
	// ClientConfig's endpoint is the event store's base URL
	// (http://localhost:9428); empty: no events endpoints. Its headers name
	// the store's tenant (AccountID, ProjectID) that holds the customers'
	// events: never the one usage_events writes to.
	ClientConfig confighttp.ClientConfig `mapstructure:",squash"`
	// TenantField is the record field the gateway's exporter sets to the
	// tenant on write (extra_fields=tenant_id={tenant}).
	TenantField string `mapstructure:"tenant_field"`
	// MaxRecords caps the limit parameter of /select/logsql/query (and is
	// its value when none is sent).
	MaxRecords int `mapstructure:"max_records"`
}

// UsageEventsConfig records one event per query answered (tenant, key id,
// endpoint, series returned, what the store did, a unique query id) in a
// local append-only log before the answer goes out, and sends the log to
// VictoriaLogs, where tenant_usage counts the events per tenant and hour.
type UsageEventsConfig struct {
	// ClientConfig's endpoint is the event store's base URL
	// (http://localhost:9428); empty: no events (no read meters). Its
	// headers name the event store's tenant (VictoriaLogs AccountID and
	// ProjectID): one customers' logs never reach.
	ClientConfig confighttp.ClientConfig `mapstructure:",squash"`
	// Directory holds the log of events not yet taken by the event store
	// and how far it got. Required with an endpoint; one gateway a
	// directory.
	Directory string `mapstructure:"directory"`
	// FlushInterval is how often the log is fsynced and sent: a power cut
	// loses at most this much of the events; a killed process loses none.
	FlushInterval time.Duration `mapstructure:"flush_interval"`
	// MaxBytes bounds the log on disk (events sent and not yet sent).
	MaxBytes int64 `mapstructure:"max_bytes"`
	// OnFull says what a query gets when its event cannot be kept (the log
	// is full or cannot be written): refuse answers it 503, so no read is
	// served unmetered; drop answers it and counts the event dropped.
	OnFull string `mapstructure:"on_full"`
}

// The values of usage_events.on_full.
const (
	onFullRefuse = "refuse"
	onFullDrop   = "drop"
)

// minUsageLogBytes keeps usage_events.max_bytes above a few events a segment.
const minUsageLogBytes = 4 << 10

// StoreConfig says how a tenant's query reaches the store. The endpoint
// and headers are templates in the vocabulary of the tenant_otlp_http
// exporter ({tenant} and the variables of tenants:), so one operator config
// describes both ways to the store.
type StoreConfig struct {
	// ClientConfig is the HTTP client to the store: endpoint (a template:
	// the base URL the Prometheus API paths are appended to, e.g.
	// http://vmselect:8481/select/{account}/prometheus), tls, timeout.
	ClientConfig confighttp.ClientConfig `mapstructure:",squash"` // named, so its Unmarshal is not promoted
	// TenantLabel, when set, is added to every request as the store's
	// extra_label=<tenant_label>=<tenant> (VictoriaMetrics single-node).
	TenantLabel string `mapstructure:"tenant_label"`
	// TenantHeaders are header templates sent with every request, e.g.
	// X-Scope-OrgID: "{tenant}" (Mimir, Cortex).
	TenantHeaders map[string]string `mapstructure:"tenant_headers"`
	// Tenants holds per-tenant template variables, e.g. acme: {account: "12"}.
	Tenants map[string]map[string]string `mapstructure:"tenants"`
	// MaxResponseBytes bounds one answer read from the store.
	MaxResponseBytes int64 `mapstructure:"max_response_bytes"`
}

// LimitsConfig bounds each tenant, so one tenant's heavy queries cannot
// take another's share of the store.
type LimitsConfig struct {
	// MaxConcurrent queries per tenant at the store at once.
	MaxConcurrent int `mapstructure:"max_concurrent"`
	// MaxQueued queries per tenant may wait for a slot; more are refused
	// at once (429). With max_concurrent it bounds what one tenant holds
	// in the gateway, whatever it sends.
	MaxQueued int `mapstructure:"max_queued"`
	// QueueWait is how long a query waits for one of its tenant's slots
	// before it is refused (429).
	QueueWait time.Duration `mapstructure:"queue_wait"`
	// QueriesPerSecond per tenant (a token bucket); 0 turns it off.
	QueriesPerSecond float64 `mapstructure:"queries_per_second"`
	// Burst queries above the rate.
	Burst int `mapstructure:"burst"`
	// QueryTimeout bounds a query; a client's own timeout parameter may
	// only shorten it. It is passed to the store as its timeout parameter.
	QueryTimeout time.Duration `mapstructure:"query_timeout"`
	// MaxSeries caps the limit parameter of the series, labels and label
	// values endpoints (the store's own cost limit for them).
	MaxSeries int `mapstructure:"max_series"`
	// StoreTimePerSecond is the store time (seconds the stores spend
	// answering a tenant's queries, the ones running counted as they run)
	// a tenant gets per second on average: 1 is one query running all the
	// time. Past its burst the tenant's queries are refused (429) until it
	// has earned time back. Query counts do not bound cost (one query can
	// hold the store's cores for seconds); this does. 0 turns it off.
	StoreTimePerSecond float64 `mapstructure:"store_time_per_second"`
	// StoreTimeBurst is the store time a tenant may spend above the rate
	// (a dashboard of heavy panels at once).
	StoreTimeBurst time.Duration `mapstructure:"store_time_burst"`
	// Replicas is how many gateway replicas serve reads behind the
	// balancer. The limits above are each tenant's for the whole tier: a
	// replica enforces its share (max_concurrent, burst and
	// store_time_burst divided by replicas, rounded down but at least one
	// query; the rates divided), so a tenant spreading its queries over
	// every replica still gets no more than its limits.
	Replicas int `mapstructure:"replicas"`
	// MaxAnswerBytes bounds the store answers one tenant's queries hold in
	// this process at once; a query whose answer would go over it is
	// refused (503) and the others' answers are untouched.
	MaxAnswerBytes int64 `mapstructure:"max_answer_bytes"`
	// MaxAnswerBytesTotal bounds all tenants' answers held at once: with
	// max_answer_bytes it sets what reads can add to the process's memory.
	MaxAnswerBytesTotal int64 `mapstructure:"max_answer_bytes_total"`
}

// UIConfig configures the browser side.
type UIConfig struct {
	// Enabled serves vmui at /vmui/ and the login page at /login.
	Enabled bool `mapstructure:"enabled"`
	// SessionTTL is how long a browser login lasts.
	SessionTTL time.Duration `mapstructure:"session_ttl"`
	// MaxSessions bounds the browser sessions held in memory; past it new
	// logins are refused (503) until sessions expire: nobody's session is
	// ended by another's login.
	MaxSessions int `mapstructure:"max_sessions"`
	// MaxSessionsPerTenant bounds one tenant's sessions; past it that
	// tenant's own oldest session ends.
	MaxSessionsPerTenant int `mapstructure:"max_sessions_per_tenant"`
	// Timezone is what vmui shows times in (IANA name).
	Timezone string `mapstructure:"timezone"`
}

var _ component.Config = (*Config)(nil)

// labelName is the grammar of a label name the store takes in
// /api/v1/label/<name>/values and of tenant_label (dots included: OTel
// attributes keep them).
var labelName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.:]*$`)

// storeTemplates are the parsed endpoint and header templates.
type storeTemplates struct {
	endpoint tenanttemplate.Template
	headers  map[string]tenanttemplate.Template
}

func (c *StoreConfig) parseTemplates() (storeTemplates, []error) {
	var t storeTemplates
	var errs []error
	if c.ClientConfig.Endpoint == "" {
		errs = append(errs, errors.New("store.endpoint: must be set"))
	} else if tmpl, err := tenanttemplate.Parse(strings.TrimSuffix(c.ClientConfig.Endpoint, "/")); err != nil {
		errs = append(errs, fmt.Errorf("store.endpoint: %w", err))
	} else {
		t.endpoint = tmpl
	}
	var herrs []error
	t.headers, herrs = tenanttemplate.ParseHeaders("store.tenant_headers", c.TenantHeaders)
	return t, append(errs, herrs...)
}

// scoped says whether anything tells the store the tenant. A store that is
// told nothing would answer every tenant's data: that config is refused.
func (t storeTemplates) scoped(label string) bool {
	if label != "" || t.endpoint.Uses() {
		return true
	}
	for _, h := range t.headers {
		if h.Uses() {
			return true
		}
	}
	return false
}

// Validate checks the configuration; every error names its field.
func (c *Config) Validate() error {
	var errs []error
	if c.ServerConfig.NetAddr.Endpoint == "" {
		errs = append(errs, errors.New("endpoint: must be set"))
	}
	if c.CredentialsFile == "" {
		errs = append(errs, errors.New("credentials_file: must be set"))
	}
	if c.ReloadInterval <= 0 {
		errs = append(errs, fmt.Errorf("reload_interval: must be positive, got %s", c.ReloadInterval))
	}
	if c.CredentialsMaxStale < 0 {
		errs = append(errs, fmt.Errorf("credentials_max_stale: must not be negative, got %s", c.CredentialsMaxStale))
	}
	if ep := c.UsageEvents.ClientConfig.Endpoint; ep != "" {
		if u, err := url.Parse(ep); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
			errs = append(errs, fmt.Errorf("usage_events.endpoint: %q is not an http(s) base URL", ep))
		}
		if c.UsageEvents.FlushInterval <= 0 {
			errs = append(errs, fmt.Errorf("usage_events.flush_interval: must be positive, got %s", c.UsageEvents.FlushInterval))
		}
		if c.UsageEvents.Directory == "" {
			errs = append(errs, errors.New("usage_events.directory: must be set with usage_events.endpoint"))
		}
		if c.UsageEvents.MaxBytes < minUsageLogBytes {
			errs = append(errs, fmt.Errorf("usage_events.max_bytes: must be at least %d, got %d", minUsageLogBytes, c.UsageEvents.MaxBytes))
		}
		if c.UsageEvents.OnFull != onFullRefuse && c.UsageEvents.OnFull != onFullDrop {
			errs = append(errs, fmt.Errorf("usage_events.on_full: must be %q or %q, got %q", onFullRefuse, onFullDrop, c.UsageEvents.OnFull))
		}
	}
	t, terrs := c.Store.parseTemplates()
	errs = append(errs, terrs...)
	if c.Store.TenantLabel != "" && !labelName.MatchString(c.Store.TenantLabel) {
		errs = append(errs, fmt.Errorf("store.tenant_label: %q is not a label name", c.Store.TenantLabel))
	}
	if len(terrs) == 0 && !t.scoped(c.Store.TenantLabel) {
		errs = append(errs, errors.New("store: nothing tells the store the tenant: set tenant_label (VictoriaMetrics single-node), "+
			"a {tenant} or tenants: variable in endpoint (VictoriaMetrics cluster) or in tenant_headers (Mimir/Cortex)"))
	}
	for tenant, vars := range c.Store.Tenants {
		if err := tenantid.Validate(tenant); err != nil {
			errs = append(errs, fmt.Errorf("store.tenants: %w", err))
			continue
		}
		for _, tmpl := range t.all() {
			for _, v := range tmpl.Vars() {
				if _, ok := vars[v]; !ok {
					errs = append(errs, fmt.Errorf("store.tenants.%s: no %q, which %q needs", tenant, v, tmpl.Raw()))
				}
			}
		}
	}
	if c.Store.MaxResponseBytes < 1 {
		errs = append(errs, fmt.Errorf("store.max_response_bytes: must be positive, got %d", c.Store.MaxResponseBytes))
	}
	l := c.Limits
	if l.MaxConcurrent < 1 {
		errs = append(errs, fmt.Errorf("limits.max_concurrent: must be at least 1, got %d", l.MaxConcurrent))
	}
	if l.MaxQueued < 0 {
		errs = append(errs, fmt.Errorf("limits.max_queued: must not be negative, got %d", l.MaxQueued))
	}
	if l.QueueWait < 0 {
		errs = append(errs, fmt.Errorf("limits.queue_wait: must not be negative, got %s", l.QueueWait))
	}
	if l.QueriesPerSecond < 0 || (l.QueriesPerSecond > 0 && l.Burst < 1) {
		errs = append(errs, fmt.Errorf("limits: queries_per_second must not be negative and burst at least 1, got %g, %d", l.QueriesPerSecond, l.Burst))
	}
	if l.QueryTimeout < time.Second {
		errs = append(errs, fmt.Errorf("limits.query_timeout: must be at least 1s, got %s", l.QueryTimeout))
	}
	if l.MaxSeries < 1 {
		errs = append(errs, fmt.Errorf("limits.max_series: must be at least 1, got %d", l.MaxSeries))
	}
	if l.StoreTimePerSecond < 0 || (l.StoreTimePerSecond > 0 && l.StoreTimeBurst <= 0) {
		errs = append(errs, fmt.Errorf("limits: store_time_per_second must not be negative and store_time_burst positive, got %g, %s", l.StoreTimePerSecond, l.StoreTimeBurst))
	}
	if l.Replicas < 1 {
		errs = append(errs, fmt.Errorf("limits.replicas: must be at least 1, got %d", l.Replicas))
	}
	if l.MaxAnswerBytes < c.Store.MaxResponseBytes {
		errs = append(errs, fmt.Errorf("limits.max_answer_bytes: must be at least store.max_response_bytes (%d), got %d", c.Store.MaxResponseBytes, l.MaxAnswerBytes))
	}
	if l.MaxAnswerBytesTotal < l.MaxAnswerBytes {
		errs = append(errs, fmt.Errorf("limits.max_answer_bytes_total: must be at least limits.max_answer_bytes (%d), got %d", l.MaxAnswerBytes, l.MaxAnswerBytesTotal))
	}
	errs = append(errs, c.validateTimeouts()...)
	if c.Alerts != "" {
		var id component.ID
		if err := id.UnmarshalText([]byte(c.Alerts)); err != nil {
			errs = append(errs, fmt.Errorf("alerts: %q is not a component id (e.g. tenant_alerts): %w", c.Alerts, err))
		}
	}
	if f := c.FailureLimit; f.PerMinute < 0 || (f.PerMinute > 0 && f.TrackedSources < 1) {
		errs = append(errs, fmt.Errorf("failure_limit: per_minute must not be negative and tracked_sources at least 1, got %d, %d", f.PerMinute, f.TrackedSources))
	}
	errs = append(errs, c.Events.validate()...)
	if c.UI.Enabled {
		if c.UI.SessionTTL < time.Minute {
			errs = append(errs, fmt.Errorf("ui.session_ttl: must be at least 1m, got %s", c.UI.SessionTTL))
		}
		if c.UI.MaxSessions < 1 {
			errs = append(errs, fmt.Errorf("ui.max_sessions: must be at least 1, got %d", c.UI.MaxSessions))
		}
		if c.UI.MaxSessionsPerTenant < 1 || c.UI.MaxSessionsPerTenant > c.UI.MaxSessions {
			errs = append(errs, fmt.Errorf("ui.max_sessions_per_tenant: must be 1 to ui.max_sessions (%d), got %d", c.UI.MaxSessions, c.UI.MaxSessionsPerTenant))
		}
		if _, err := time.LoadLocation(c.UI.Timezone); err != nil || c.UI.Timezone == "" {
			errs = append(errs, fmt.Errorf("ui.timezone: %q is not an IANA time zone", c.UI.Timezone))
		}
	}
	return errors.Join(errs...)
}

func (t storeTemplates) all() []tenanttemplate.Template {
	out := []tenanttemplate.Template{t.endpoint}
	for _, h := range t.headers {
		out = append(out, h)
	}
	return out
}

// writeMargin is what the write timeout keeps, after the longest a query may
// wait and run, for the answer to be written.
const writeMargin = 5 * time.Second

// validateTimeouts holds the listener's timeouts to the limits: a request's
// headers and body must arrive within bounds (a half-sent request holds
// nothing for longer), and a query that waits its longest and runs its
// longest still gets its answer (or its 504) before the write timeout cuts
// the connection.
func (c *Config) validateTimeouts() []error {
	var errs []error
	sc := c.ServerConfig
	if sc.ReadHeaderTimeout <= 0 {
		errs = append(errs, fmt.Errorf("read_header_timeout: must be positive (an idle or half-sent request would hold its connection forever), got %s", sc.ReadHeaderTimeout))
	}
	if sc.ReadTimeout <= 0 {
		errs = append(errs, fmt.Errorf("read_timeout: must be positive (a half-sent body would hold its query slot forever), got %s", sc.ReadTimeout))
	}
	need := c.Limits.QueueWait + c.Limits.QueryTimeout + queryTimeoutGrace + writeMargin
	if sc.WriteTimeout <= 0 || sc.WriteTimeout < need {
		errs = append(errs, fmt.Errorf("write_timeout: must be at least limits.queue_wait + limits.query_timeout + %s (%s), so a slow query ends in a 504, not a cut connection; got %s",
			queryTimeoutGrace+writeMargin, need, sc.WriteTimeout))
	}
	return errs
}

func (e *EventsConfig) validate() []error {
	ep := e.ClientConfig.Endpoint
	if ep == "" {
		return nil
	}
	var errs []error
	if u, err := url.Parse(ep); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		errs = append(errs, fmt.Errorf("events.endpoint: %q is not an http(s) base URL", ep))
	}
	if !labelName.MatchString(e.TenantField) {
		errs = append(errs, fmt.Errorf("events.tenant_field: %q is not a field name", e.TenantField))
	}
	if e.MaxRecords < 1 {
		errs = append(errs, fmt.Errorf("events.max_records: must be at least 1, got %d", e.MaxRecords))
	}
	return errs
}
