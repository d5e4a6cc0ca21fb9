package tenantauthextension

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/otelcol-gpu/otelcol-gpu/extension/tenantauthextension/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)

	tests := []struct {
		id      component.ID
		want    *Config
		wantErr string
	}{
		{
			id: component.NewID(metadata.Type),
			want: &Config{
				CredentialsFile:     "/etc/otelcol-gpu/credentials.yaml",
				ReloadInterval:      defaultReloadInterval,
				CredentialsMaxStale: 10 * time.Minute,
				Header:              defaultHeader,
				Scheme:              defaultScheme,
				DecodeLimits:        DecodeLimits{MaxNestingDepth: 16, MaxValues: 100_000},
				FailureLimit:        FailureLimit{PerMinute: 30, TrackedSources: 65536},
				Admission:           Admission{RequestLimitMiB: 2, WaitingLimitMiB: 8},
			},
		},
		{
			id: component.NewIDWithName(metadata.Type, "custom"),
			want: &Config{
				CredentialsFile:     "/run/secrets/credentials.yaml",
				ReloadInterval:      30 * time.Second,
				CredentialsMaxStale: 0, // the last good credentials, however long the file fails
				Header:              "X-Api-Key",
				Scheme:              "",
				DecodeLimits:        DecodeLimits{MaxNestingDepth: 8, MaxValues: 5000},
				FailureLimit:        FailureLimit{PerMinute: 0, TrackedSources: 65536},
				Admission: Admission{RequestLimitMiB: 0, WaitingLimitMiB: 8,
					Queues: []component.ID{component.MustNewID("tenant_otlp_http"), component.MustNewIDWithName("tenant_otlp_http", "logs")}},
			},
		},
		{id: component.NewIDWithName(metadata.Type, "no_file"), wantErr: "credentials_file: must be set"},
		{id: component.NewIDWithName(metadata.Type, "zero_interval"), wantErr: "reload_interval: must be positive"},
		{id: component.NewIDWithName(metadata.Type, "negative_max_stale"), wantErr: "credentials_max_stale: must not be negative (0 keeps the last good credentials however long the file fails), got -1m0s"},
		{id: component.NewIDWithName(metadata.Type, "bad_scheme"), wantErr: `scheme: "Bearer token" must be a single word`},
		{id: component.NewIDWithName(metadata.Type, "bad_limits"), wantErr: "decode_limits.max_nesting_depth: must be at least 1, got 0"},
		{id: component.NewIDWithName(metadata.Type, "bad_limits"), wantErr: "decode_limits.max_values: must be at least 1, got -1"},
		{id: component.NewIDWithName(metadata.Type, "bad_limits"), wantErr: "failure_limit.per_minute: must not be negative, got -5"},
		{id: component.NewIDWithName(metadata.Type, "bad_limits"), wantErr: "admission.request_limit_mib: must not be negative (0 turns the limit off), got -1"},
		{id: component.NewIDWithName(metadata.Type, "bad_limits"), wantErr: "admission.waiting_limit_mib: must not be negative, got -2"},
	}
	for _, tt := range tests {
		t.Run(tt.id.String()+tt.wantErr, func(t *testing.T) {
			cfg := NewFactory().CreateDefaultConfig()
			sub, err := cm.Sub(tt.id.String())
			require.NoError(t, err)
			require.NoError(t, sub.Unmarshal(cfg))
			err = confmap.Validate(cfg)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, cfg)
		})
	}
}
