package tenantqueryextension

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/confmap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/configtest"
)

func loadConfig(t *testing.T, name string) *Config {
	return configtest.Load[*Config](t, NewFactory(), name)
}

func TestLoadConfig(t *testing.T) {
	def := loadConfig(t, "")
	require.NoError(t, confmap.Validate(def))
	want := createDefaultConfig().(*Config)
	want.CredentialsFile = "/etc/otelcol-gpu/credentials.yaml"
	require.Equal(t, want, def)
	require.Equal(t, 10*time.Second, def.ServerConfig.ReadHeaderTimeout)
	require.Equal(t, 20*time.Second, def.ServerConfig.ReadTimeout)
	require.Equal(t, time.Minute, def.ServerConfig.WriteTimeout)
	require.Empty(t, def.Events.ClientConfig.Endpoint, "no events unless configured")
	require.Equal(t, "localhost:9090", def.ServerConfig.NetAddr.Endpoint)
	require.Equal(t, "tenant_id", def.Store.TenantLabel, "the label the gateway's exporter writes")
	require.True(t, def.UI.Enabled)
	require.Empty(t, def.UsageEvents.ClientConfig.Endpoint, "no usage events unless configured")
	require.Equal(t, UsageEventsConfig{ClientConfig: def.UsageEvents.ClientConfig, FlushInterval: time.Second, MaxBytes: 64 << 20, OnFull: "refuse"},
		def.UsageEvents)

	c := loadConfig(t, "cluster")
	require.NoError(t, confmap.Validate(c))
	require.Equal(t, "0.0.0.0:9443", c.ServerConfig.NetAddr.Endpoint)
	require.Equal(t, "http://vmselect:8481/select/{account}/prometheus", c.Store.ClientConfig.Endpoint)
	require.Empty(t, c.Store.TenantLabel)
	require.Equal(t, map[string]map[string]string{"acme": {"account": "12"}, "globex": {"account": "13"}}, c.Store.Tenants)
	require.Equal(t, int64(1<<20), c.Store.MaxResponseBytes)
	require.Equal(t, LimitsConfig{MaxConcurrent: 2, MaxQueued: 4, QueueWait: time.Second, QueriesPerSecond: 5, Burst: 10, QueryTimeout: 10 * time.Second, MaxSeries: 500,
		StoreTimePerSecond: 1, StoreTimeBurst: 30 * time.Second,
		Replicas: 3, MaxAnswerBytes: 8 << 20, MaxAnswerBytesTotal: 64 << 20}, c.Limits)
	require.Equal(t, FailureLimit{PerMinute: 10, TrackedSources: 1024}, c.FailureLimit)
	require.Equal(t, "http://vlogs:9428", c.Events.ClientConfig.Endpoint)
	require.Equal(t, configopaque.MapList{{Name: "AccountID", Value: "0"}, {Name: "ProjectID", Value: "0"}}, c.Events.ClientConfig.Headers)
	require.Equal(t, 200, c.Events.MaxRecords)
	require.Equal(t, "tenant_id", c.Events.TenantField)
	require.False(t, c.UI.Enabled)
	require.Equal(t, 30*time.Second, c.ReloadInterval)
	ue := c.UsageEvents
	require.Equal(t, "http://vlogs:9428", ue.ClientConfig.Endpoint)
	require.Equal(t, configopaque.MapList{{Name: "AccountID", Value: "0"}, {Name: "ProjectID", Value: "1"}}, ue.ClientConfig.Headers)
	require.Equal(t, 10*time.Second, ue.ClientConfig.Timeout, "the default client timeout stays")
	require.Equal(t, "/var/lib/otelcol-gpu/read-events", ue.Directory)
	require.Equal(t, 2*time.Second, ue.FlushInterval)
	require.Equal(t, int64(1<<20), ue.MaxBytes)
	require.Equal(t, onFullDrop, ue.OnFull)

	m := loadConfig(t, "mimir")
	require.NoError(t, confmap.Validate(m))
	require.Equal(t, map[string]string{"X-Scope-OrgID": "{tenant}"}, m.Store.TenantHeaders)
}

func TestValidateRefusesAnUnscopedStore(t *testing.T) {
	require.ErrorContains(t, confmap.Validate(loadConfig(t, "unscoped")), "store: nothing tells the store the tenant")
}

func TestValidateNamesEveryField(t *testing.T) {
	require.ErrorContains(t, confmap.Validate(loadConfig(t, "missing_var")),
		`store.tenants.acme: no "account", which "http://vmselect:8481/select/{account}/prometheus" needs`)
	err := confmap.Validate(loadConfig(t, "bad"))
	for _, want := range []string{
		"endpoint: must be set",
		"credentials_file: must be set",
		"reload_interval: must be positive",
		`store.tenant_label: "tenant id" is not a label name`,
		"store.max_response_bytes: must be positive",
		"limits.max_concurrent: must be at least 1",
		"limits.max_queued: must not be negative",
		"limits.queue_wait: must not be negative",
		"limits: queries_per_second must not be negative",
		"limits.query_timeout: must be at least 1s",
		"limits.max_series: must be at least 1",
		"ui.session_ttl: must be at least 1m",
		"ui.max_sessions: must be at least 1",
		"ui.max_sessions_per_tenant: must be 1 to ui.max_sessions",
		`ui.timezone: "Mars/Olympus"`,
		"limits.replicas: must be at least 1, got 0",
		"credentials_max_stale: must not be negative, got -1s",
		"limits.max_answer_bytes_total: must be at least limits.max_answer_bytes",
		"read_header_timeout: must be positive",
		"read_timeout: must be positive",
		"write_timeout: must be at least limits.queue_wait + limits.query_timeout",
		"failure_limit: per_minute must not be negative",
		`events.endpoint: "vlogs:9428" is not an http(s) base URL`,
		`events.tenant_field: "tenant id" is not a field name`,
		"events.max_records: must be at least 1, got 0",
	} {
		require.ErrorContains(t, err, want)
	}
}
