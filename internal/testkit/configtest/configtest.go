// Package configtest loads a component's testdata/config.yaml entries the
// way the collector does, for config tests.
package configtest

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap/confmaptest"
)

// Load unmarshals the entry "<type>" (name empty) or "<type>/<name>" of
// testdata/config.yaml over the factory's default config.
func Load[T component.Config](t testing.TB, f component.Factory, name string) T {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	id := component.NewID(f.Type())
	if name != "" {
		id = component.NewIDWithName(f.Type(), name)
	}
	sub, err := cm.Sub(id.String())
	require.NoError(t, err)
	cfg := f.CreateDefaultConfig()
	require.NoError(t, sub.Unmarshal(cfg))
	return cfg.(T)
}
