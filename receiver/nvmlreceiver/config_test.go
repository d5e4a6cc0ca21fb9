package nvmlreceiver

import (
	"testing"
	"time"

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
	require.Equal(t, createDefaultConfig(), def)
	require.Equal(t, 10*time.Second, def.CollectionInterval)
	require.Equal(t, 30*time.Second, def.InitRetryInterval)
	require.Equal(t, time.Duration(0), def.CallTimeout)
	require.Equal(t, 2*time.Second, def.callTimeout(), "half of 10s, capped at 2s")
	def.CollectionInterval = time.Second
	require.Equal(t, 500*time.Millisecond, def.callTimeout())

	custom := loadConfig(t, "custom")
	require.NoError(t, confmap.Validate(custom))
	want := createDefaultConfig().(*Config)
	want.CollectionInterval = 5 * time.Second
	want.LibraryPath = "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"
	want.Devices = []string{"0", "GPU-abc00003-1111-4222-8333-000000000003"}
	want.InitRetryInterval = time.Minute
	want.RediscoverInterval = 5 * time.Minute
	want.RefusedRetryInterval = 2 * time.Hour
	want.CallTimeout = time.Second
	want.Metrics = map[string]MetricConfig{
		"nvidia.gpu.process.memory.usage": {Enabled: true},
		"hw.fan.speed_ratio":              {Enabled: false},
	}
	require.Equal(t, want, custom)
	on := custom.enabledMetrics()
	require.True(t, on[mProcMemory])
	require.False(t, on[mFanSpeed])
	require.False(t, on[mProcUtil], "still off by default")
	require.True(t, on[mPower])
}

func TestValidateErrorsNameTheField(t *testing.T) {
	cases := map[string][]string{
		"bad_device": {
			`devices: "-1" is not a GPU index`,
			`devices: "gpu0" is neither a GPU index nor a UUID`,
			`devices: "0" listed twice`,
		},
		"zero_intervals": {
			"collection_interval: must be positive, got 0s",
			"init_retry_interval: must be positive, got 0s",
			"rediscover_interval: must be positive, got 0s",
			"refused_retry_interval: must be positive, got 0s",
		},
		"slow_calls":     {"call_timeout: 5s must be shorter than collection_interval 5s"},
		"negative_call":  {"call_timeout: must not be negative, got -1s"},
		"unknown_metric": {`metrics: unknown metric "hw.gpu.utilisation"`},
	}
	for name, wants := range cases {
		t.Run(name, func(t *testing.T) {
			err := confmap.Validate(loadConfig(t, name))
			require.Error(t, err)
			for _, w := range wants {
				require.ErrorContains(t, err, w)
			}
		})
	}
}
