package tenantprocessor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/confmap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/configtest"
	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

func defaultSource() SourceConfig {
	return SourceConfig{Timeout: defaultSourceTimeout, RefreshInterval: defaultRefreshInterval}
}

// withGatewayDefaults fills in the gateway-only settings' defaults, which
// every loaded config carries (agent mode ignores them, as it does
// on_mismatch).
func withGatewayDefaults(c *Config) *Config {
	c.VMAttribute = defaultVMAttribute
	c.VMMinutesMetric = usage.VMMinutesMetric
	c.ReservedPrefixes = []string{defaultReservedPrefix}
	c.ReservedRenamePrefix = defaultRenamePrefix
	c.Timestamps = TimestampsConfig{MaxAge: defaultMaxAge, MaxFuture: defaultMaxFuture}
	return c
}

func TestLoadConfig(t *testing.T) {
	valid := map[string]*Config{
		"gateway": {Mode: ModeGateway, Attribute: "tenant.id", OnMismatch: OnMismatchOverride, Source: defaultSource()},
		"gateway_reject": {
			Mode: ModeGateway, Attribute: "customer.id", OnMismatch: OnMismatchReject, SetMetadata: true, Source: defaultSource(),
		},
		"static": {
			Mode: ModeAgent, Attribute: "tenant.id", OnMismatch: OnMismatchOverride,
			Source: SourceConfig{Type: SourceStatic, Value: "acme", Timeout: defaultSourceTimeout, RefreshInterval: defaultRefreshInterval},
		},
		"env": {
			Mode: ModeAgent, Attribute: "tenant.id", OnMismatch: OnMismatchOverride, CacheFile: "/var/lib/otelcol-gpu/tenant.json",
			Source: SourceConfig{Type: SourceEnv, Env: "OTELCOL_GPU_TENANT", Timeout: defaultSourceTimeout, RefreshInterval: defaultRefreshInterval},
		},
		"file_json": {
			Mode: ModeAgent, Attribute: "tenant.id", OnMismatch: OnMismatchOverride,
			Source: SourceConfig{
				Type: SourceFile, Path: "/etc/otelcol-gpu/instance.json", JSONPointer: "/tenant",
				Timeout: defaultSourceTimeout, RefreshInterval: time.Minute,
			},
			Attributes: map[string]string{"cloud.instance.id": "/instance/id", "cloud.region": "/region"},
		},
		"http": {
			Mode: ModeAgent, Attribute: "tenant.id", OnMismatch: OnMismatchOverride, Required: true,
			CacheFile: "/var/lib/otelcol-gpu/tenant.json",
			Source: SourceConfig{
				Type: SourceHTTP, URL: "http://169.254.169.254/metadata/v1/instance",
				Headers:     map[string]configopaque.String{"Metadata": "true"},
				JSONPointer: "/tags/tenant", Timeout: time.Second, RefreshInterval: defaultRefreshInterval,
			},
			Attributes: map[string]string{"host.type": "/machine_type"},
		},
	}
	for _, c := range valid {
		withGatewayDefaults(c)
	}
	valid["gateway_rules"] = &Config{
		Mode: ModeGateway, Attribute: "tenant.id", OnMismatch: OnMismatchOverride, Source: defaultSource(),
		VMAttribute: "host.name", VMMinutesMetric: usage.VMMinutesMetric, ReservedPrefixes: []string{"usage.", "billing."}, ReservedRenamePrefix: "tenant_data.",
		Timestamps: TimestampsConfig{MaxAge: 12 * time.Hour, MaxFuture: time.Minute},
	}
	valid["gateway_rules_off"] = &Config{
		Mode: ModeGateway, Attribute: "tenant.id", OnMismatch: OnMismatchOverride, Source: defaultSource(),
		ReservedPrefixes: []string{}, ReservedRenamePrefix: defaultRenamePrefix,
	}
	invalid := map[string]string{
		"no_mode":                       `mode: must be "agent" or "gateway", got ""`,
		"bad_mode":                      `got "relay"`,
		"gateway_source":                "source: only agent mode has a source",
		"gateway_bad_mismatch":          `on_mismatch: must be "override" or "reject", got "drop"`,
		"agent_no_source":               `source.type: must be one of static, env, file, http; got ""`,
		"agent_bad_static":              `source.value: tenant id "Acme Corp"`,
		"agent_env_empty":               "source.env: must name an environment variable",
		"agent_file_no_path":            "source.path: must be set",
		"agent_bad_url":                 `source.url: must be an http(s) URL, got "169.254.169.254/metadata"`,
		"agent_attributes_without_json": "attributes.cloud.region: needs a JSON source",
		"agent_bad_pointer":             `source.json_pointer: JSON pointer "tenant" must start with '/'`,
		"agent_set_metadata":            "set_metadata: only used in gateway mode",
		"empty_attribute":               "attribute: must not be empty",
		"gateway_vm_like_tenant":        `vm_attribute: "Tenant_ID" is named like attribute "tenant.id" (the same label in the store)`,
		"gateway_empty_prefix":          "reserved_prefixes[1]: must not be empty",
		"gateway_no_rename":             "reserved_rename_prefix: must not be empty while reserved_prefixes are set",
		"gateway_rename_reserved":       `reserved_rename_prefix: "usage.customer." and reserved_prefixes[0] "usage." must not begin with one another`,
		"gateway_rename_like_reserved":  `reserved_rename_prefix: "Usage_mine." and reserved_prefixes[0] "usage."`,
		"gateway_reserved_under_rename": `reserved_rename_prefix: "customer." and reserved_prefixes[1] "customer.usage." must not begin with one another`,
		"gateway_negative_age":          "timestamps.max_age: must not be negative (0 turns it off), got -1h0m0s",
		"gateway_negative_future":       "timestamps.max_future: must not be negative (0 turns it off), got -1s",
	}
	for name, want := range valid {
		t.Run(name, func(t *testing.T) {
			cfg := load(t, name)
			require.NoError(t, confmap.Validate(cfg))
			require.Equal(t, want, cfg)
		})
	}
	for name, wantErr := range invalid {
		t.Run(name, func(t *testing.T) {
			require.ErrorContains(t, confmap.Validate(load(t, name)), wantErr)
		})
	}
}

func load(t *testing.T, name string) *Config {
	return configtest.Load[*Config](t, NewFactory(), name)
}
