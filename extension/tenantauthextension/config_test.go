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
				CredentialsFile: "/etc/otelcol-gpu/credentials.yaml",
				ReloadInterval:  defaultReloadInterval,
				Header:          defaultHeader,
				Scheme:          defaultScheme,
			},
		},
		{
			id: component.NewIDWithName(metadata.Type, "custom"),
			want: &Config{
				CredentialsFile: "/run/secrets/credentials.yaml",
				ReloadInterval:  30 * time.Second,
				Header:          "X-Api-Key",
				Scheme:          "",
			},
		},
		{id: component.NewIDWithName(metadata.Type, "no_file"), wantErr: "credentials_file: must be set"},
		{id: component.NewIDWithName(metadata.Type, "zero_interval"), wantErr: "reload_interval: must be positive"},
		{id: component.NewIDWithName(metadata.Type, "bad_scheme"), wantErr: `scheme: "Bearer token" must be a single word`},
	}
	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
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
