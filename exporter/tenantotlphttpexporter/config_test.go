package tenantotlphttpexporter

import (
	"testing"
	"time"

	"github.com/otelcol-gpu/otelcol-gpu/internal/tenanttemplate"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/confmap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/configtest"
)

func loadConfig(t *testing.T, name string) *Config {
	return configtest.Load[*Config](t, NewFactory(), name)
}

func TestLoadConfig(t *testing.T) {
	def := loadConfig(t, "")
	require.NoError(t, confmap.Validate(def))
	require.Equal(t, "http://store:8428/opentelemetry/v1/metrics", def.endpointTemplate(sigMetrics))
	require.Equal(t, "http://store:8428/opentelemetry/v1/logs", def.endpointTemplate(sigLogs))
	require.Equal(t, "gzip", string(def.ClientConfig.Compression))
	require.Equal(t, time.Duration(0), def.RetryOnFailure.MaxElapsedTime, "never give up on a tenant")
	require.Equal(t, RouteByAuth, def.RouteBy, "the authenticated tenant decides, unless told otherwise")
	require.Equal(t, []int{429, 502, 503, 504}, def.RetryOnStatus, "upstream otlp_http's retryable set")

	c := loadConfig(t, "cluster")
	require.NoError(t, confmap.Validate(c))
	require.Equal(t, map[string]map[string]string{"acme": {"account": "12"}, "globex": {"account": "34"}}, c.Tenants)
	require.Equal(t, BatchConfig{MaxItems: 1000, MaxBytes: 1 << 20, FlushInterval: time.Second}, c.Batch)
	require.Equal(t, "/var/lib/otelcol-gpu/queue", c.Queue.Directory)
	require.Equal(t, RateLimitConfig{ItemsPerSecond: 20000, Burst: 40000}, c.RateLimit)
	require.Equal(t, 4, c.Senders)
	require.Equal(t, 500, c.MaxTenants)
	require.Equal(t, []int{429, 503}, c.RetryOnStatus)
	tmpl, errs := c.parseTemplates()
	require.Empty(t, errs)
	u, err := tenanttemplate.RenderURL(tmpl.endpoints[sigMetrics], "acme", c.Tenants["acme"])
	require.NoError(t, err)
	require.Equal(t, "http://vminsert:8480/insert/12/opentelemetry/v1/metrics", u)

	r := loadConfig(t, "replay")
	require.NoError(t, confmap.Validate(r))
	require.Equal(t, RouteByAttribute, r.RouteBy)
	require.Equal(t, "tenant_id", r.Attribute)
}

// Every tenant's store is usually one host: unless told otherwise, the
// client keeps an idle connection per sender to it.
//
//nolint:staticcheck // after Unmarshal the deprecated fields hold the effective settings
func TestIdleConnectionsPerHostFollowTheSenders(t *testing.T) {
	require.Equal(t, 16, clientConfig(loadConfig(t, "")).MaxIdleConnsPerHost, "the default senders")
	require.Equal(t, 4, clientConfig(loadConfig(t, "cluster")).MaxIdleConnsPerHost, "senders: 4")
	require.Equal(t, 5, clientConfig(loadConfig(t, "idle_conns")).MaxIdleConnsPerHost, "the user's own setting")
	off := clientConfig(loadConfig(t, "no_keepalive"))
	require.True(t, off.DisableKeepAlives)
	require.Zero(t, off.MaxIdleConnsPerHost, "keep-alives off: nothing to keep")
}

func TestValidateErrorsNameTheField(t *testing.T) {
	for name, want := range map[string]string{
		"no_endpoint":    "endpoint: must be set",
		"bad_template":   `metrics endpoint: template "http://store/{tenant/x": '{' without '}'`,
		"missing_var":    `tenants.acme: no "account"`,
		"bad_tenant":     `tenants: tenant id "Acme"`,
		"small_queue":    "queue.max_items_per_tenant: 10 must be at least batch.max_items 1000",
		"bad_rate":       "rate_limit: items_per_second must not be negative and burst at least batch.max_items",
		"bad_route":      `route_by: must be "auth" or "attribute", got "payload"`,
		"no_attribute":   "attribute: must not be empty with route_by: attribute",
		"bad_status":     "retry_on_status: 200 is not an HTTP error status",
		"bad_per_tenant": "senders_per_tenant: must be between 1 and senders (16), got 20",
		"fsync_alone":    "queue.fsync: needs queue.directory",
	} {
		t.Run(name, func(t *testing.T) {
			require.ErrorContains(t, confmap.Validate(loadConfig(t, name)), want)
		})
	}
}
