package tenantalertsextension

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"

	"github.com/otelcol-gpu/otelcol-gpu/internal/telemetry"
)

// Config configures the tenant_alerts extension.
type Config struct {
	// Directory holds the tenants' rules and receivers (tenants/), the
	// vmalert rule files it writes (rules/<tenant>.yaml: run vmalert with
	// -rule=<directory>/rules/*.yaml), the Alertmanager configuration
	// (alertmanager.yml: run Alertmanager with --config.file on it), the
	// relay's token and the dead-letter file. Replicas may share it: every
	// change is made under a lock on it. Required.
	Directory string `mapstructure:"directory"`
	// CredentialsFile is the credentials file tenant_auth and tenant_query
	// read: every tenant in it gets the default rule pack. Required.
	CredentialsFile string `mapstructure:"credentials_file"`
	// ReloadInterval is how often the credentials file is read, and the
	// engines' files are checked against the tenants' state (a change a
	// replica made, an engine that was down at the last reload).
	ReloadInterval time.Duration `mapstructure:"reload_interval"`
	// TenantLabel is the store's tenant label (the exporter's extra_label):
	// each tenant's rule groups query with extra_label=<label>=<tenant>,
	// and their alerts carry it (routes go by the alert's group).
	TenantLabel string `mapstructure:"tenant_label"`
	// EvaluationInterval is how often every tenant's rules are evaluated.
	EvaluationInterval time.Duration `mapstructure:"evaluation_interval"`
	// Telemetry says whether the extension's own metrics carry the tenant.
	Telemetry telemetry.Tenancy `mapstructure:"telemetry"`
	// VMAlert is vmalert's HTTP API (reload, rule state).
	VMAlert confighttp.ClientConfig `mapstructure:"vmalert"`
	// Alertmanager is Alertmanager's HTTP API (reload, alerts, silences).
	Alertmanager confighttp.ClientConfig `mapstructure:"alertmanager"`
	// Routing is how Alertmanager groups and repeats each tenant's
	// notifications.
	Routing RoutingConfig `mapstructure:"routing"`
	// Relay is where Alertmanager hands over notifications for delivery.
	Relay RelayConfig `mapstructure:"relay"`
	// Delivery bounds what goes out to the tenants' endpoints.
	Delivery DeliveryConfig `mapstructure:"delivery"`
	// Limits bound what one tenant may set.
	Limits LimitsConfig `mapstructure:"limits"`
}

// RoutingConfig is Alertmanager's route timing, the same for every tenant.
type RoutingConfig struct {
	GroupWait      time.Duration `mapstructure:"group_wait"`
	GroupInterval  time.Duration `mapstructure:"group_interval"`
	RepeatInterval time.Duration `mapstructure:"repeat_interval"`
}

// RelayConfig is the relay's listener, which only Alertmanager calls (with
// a token from the directory): keep it on loopback or the provider's
// network.
type RelayConfig struct {
	confighttp.ServerConfig `mapstructure:",squash"`
	// URL is how Alertmanager reaches the relay; empty: http://<endpoint>.
	URL string `mapstructure:"url"`
}

// DeliveryConfig bounds the requests to the tenants' endpoints.
type DeliveryConfig struct {
	// Timeout bounds one delivery, redirects included.
	Timeout time.Duration `mapstructure:"timeout"`
	// MaxResponseBytes of an endpoint's answer are read; the rest is not.
	MaxResponseBytes int64 `mapstructure:"max_response_bytes"`
	// PerTenantPerMinute deliveries per tenant; past it (and Burst) a
	// notification waits for Alertmanager's next try.
	PerTenantPerMinute int `mapstructure:"per_tenant_per_minute"`
	Burst              int `mapstructure:"burst"`
	// AllowCIDRs are destinations delivered to even inside the ranges that
	// are otherwise refused (a receiver the provider runs; tests).
	AllowCIDRs []string `mapstructure:"allow_cidrs"`
	// DenyCIDRs are refused besides loopback, private, link-local and the
	// other special ranges: the provider's own public ranges.
	DenyCIDRs []string `mapstructure:"deny_cidrs"`
	// CAFile adds roots the endpoints' certificates may chain to (the
	// system's roots are always trusted).
	CAFile string `mapstructure:"ca_file"`
	// DeadLetterFile gets one JSON line per notification that could not be
	// delivered and will not be retried; empty: <directory>/dead-letter.jsonl.
	DeadLetterFile string `mapstructure:"dead_letter_file"`
}

// LimitsConfig bounds one tenant.
type LimitsConfig struct {
	MaxRules     int `mapstructure:"max_rules"`
	MaxReceivers int `mapstructure:"max_receivers"`
	MaxSilences  int `mapstructure:"max_silences"`
	// MaxSeriesPerRule is each rule group's limit: a rule whose expression
	// gives more series fails (and says so) instead of filling the
	// engines.
	MaxSeriesPerRule int           `mapstructure:"max_series_per_rule"`
	MaxFor           time.Duration `mapstructure:"max_for"`
	MaxExprBytes     int           `mapstructure:"max_expr_bytes"`
	// RuleQueryTimeout bounds each of a tenant's rule queries at the store
	// (the group's timeout parameter): with a group's rules run one at a
	// time, a tenant's rules hold at most two of the store's queries, each
	// at most this long (and at most evaluation_interval), whatever they
	// ask.
	RuleQueryTimeout time.Duration `mapstructure:"rule_query_timeout"`
	// MaxSilenceDuration bounds how far ahead a silence may end.
	MaxSilenceDuration time.Duration `mapstructure:"max_silence_duration"`
}

var _ component.Config = (*Config)(nil)

var tenantLabelName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks the configuration; every error names its field.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Directory == "" {
		add("directory: must be set")
	}
	if c.CredentialsFile == "" {
		add("credentials_file: must be set")
	}
	if c.ReloadInterval <= 0 {
		add("reload_interval: must be positive, got %s", c.ReloadInterval)
	}
	if !tenantLabelName.MatchString(c.TenantLabel) {
		add("tenant_label: %q is not a label name Alertmanager routes on (letters, digits, _)", c.TenantLabel)
	}
	if c.EvaluationInterval < time.Second {
		add("evaluation_interval: at least 1s, got %s", c.EvaluationInterval)
	}
	for name, cc := range map[string]confighttp.ClientConfig{"vmalert": c.VMAlert, "alertmanager": c.Alertmanager} {
		if u, err := url.Parse(cc.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("%s.endpoint: %q is not an http(s) URL", name, cc.Endpoint)
		}
	}
	r := c.Routing
	if r.GroupWait < 0 || r.GroupInterval <= 0 || r.RepeatInterval < r.GroupInterval {
		add("routing: group_wait >= 0, group_interval > 0 and repeat_interval >= group_interval, got %s, %s, %s",
			r.GroupWait, r.GroupInterval, r.RepeatInterval)
	}
	if c.Relay.NetAddr.Endpoint == "" {
		add("relay.endpoint: must be set")
	}
	if c.Relay.URL != "" {
		if u, err := url.Parse(c.Relay.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("relay.url: %q is not an http(s) URL", c.Relay.URL)
		}
	}
	d := c.Delivery
	if d.Timeout <= 0 {
		add("delivery.timeout: must be positive, got %s", d.Timeout)
	}
	if d.MaxResponseBytes <= 0 {
		add("delivery.max_response_bytes: must be positive")
	}
	if d.PerTenantPerMinute <= 0 || d.Burst <= 0 {
		add("delivery.per_tenant_per_minute and delivery.burst: must be positive")
	}
	if _, err := parsePrefixes("delivery.allow_cidrs", d.AllowCIDRs); err != nil {
		errs = append(errs, err)
	}
	if _, err := parsePrefixes("delivery.deny_cidrs", d.DenyCIDRs); err != nil {
		errs = append(errs, err)
	}
	l := c.Limits
	for name, v := range map[string]int{
		"max_rules": l.MaxRules, "max_receivers": l.MaxReceivers, "max_silences": l.MaxSilences,
		"max_series_per_rule": l.MaxSeriesPerRule, "max_expr_bytes": l.MaxExprBytes,
	} {
		if v <= 0 {
			add("limits.%s: must be positive, got %d", name, v)
		}
	}
	if l.RuleQueryTimeout < time.Second {
		add("limits.rule_query_timeout: at least 1s, got %s", l.RuleQueryTimeout)
	}
	if l.MaxFor <= 0 || l.MaxSilenceDuration <= 0 {
		add("limits.max_for and limits.max_silence_duration: must be positive")
	}
	return errors.Join(errs...)
}

func parsePrefixes(field string, cidrs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cidrs))
	for i, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %q is not a CIDR (e.g. 203.0.113.0/24)", field, i, s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// relayURL is the relay's base URL as Alertmanager calls it.
func (c *Config) relayURL() string {
	if c.Relay.URL != "" {
		return c.Relay.URL
	}
	return "http://" + c.Relay.NetAddr.Endpoint
}
