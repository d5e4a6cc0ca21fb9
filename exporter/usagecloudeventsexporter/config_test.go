package usagecloudeventsexporter

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
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
	want.ClientConfig.Endpoint = "https://openmeter.example/api/v1/events"
	want.DeadLetter.Path = "/var/lib/otelcol-gpu/usage/dead-letter.jsonl"
	storage := component.MustNewIDWithName("file_storage", "usage")
	want.Delivered.Storage = &storage
	require.Equal(t, want, def)
	require.Equal(t, "dev.otelcol-gpu.usage.", def.TypePrefix)
	require.Equal(t, 500, def.MaxBatchEvents)
	require.Equal(t, 1<<20, def.MaxBatchBytes)
	require.Equal(t, 7*24*time.Hour, def.Delivered.Keep)

	c := loadConfig(t, "stripe_bridge")
	require.NoError(t, confmap.Validate(c))
	want = createDefaultConfig().(*Config)
	want.ClientConfig.Endpoint = "https://billing-bridge.internal/events"
	want.ClientConfig.Headers = configopaque.MapList{{Name: "Authorization", Value: "Bearer secret"}}
	want.Source = "gpu-cloud-eu"
	want.TypePrefix = "com.example.gpu."
	want.MaxBatchEvents = 100
	want.MaxBatchBytes = 256 << 10
	want.DeadLetter.Path = "/srv/usage/dead.jsonl"
	storage = component.MustNewIDWithName("file_storage", "billing")
	want.Delivered = DeliveredConfig{Storage: &storage, Keep: 30 * 24 * time.Hour}
	require.Equal(t, want, c)
}

func TestValidateErrorsNameTheField(t *testing.T) {
	for name, want := range map[string]string{
		"no_endpoint":             "endpoint: required",
		"bad_endpoint":            `endpoint: "openmeter:8888" is not an http(s) URL`,
		"no_source":               "source: must not be empty",
		"no_type_prefix":          `type_prefix: "" must be a non-empty namespace ending with '.'`,
		"type_prefix_without_dot": `type_prefix: "com.example.usage" must be a non-empty namespace ending with '.'`,
		"zero_events":             "max_batch_events: 0 must be at least 1",
		"zero_bytes":              "max_batch_bytes: 0 must be at least 1",
		"no_dead_letter":          "dead_letter.path: required",
		"no_storage":              "delivered.storage: required",
		"short_keep":              "delivered.keep: 30m0s must be at least 1h",
	} {
		t.Run(name, func(t *testing.T) {
			require.ErrorContains(t, confmap.Validate(loadConfig(t, name)), want)
		})
	}
}
