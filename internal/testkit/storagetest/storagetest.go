// Package storagetest gives component tests a real file_storage extension
// (the one the shipped configs use) and a host that offers it.
package storagetest

import (
	"context"
	"testing"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/extension/extensiontest"
)

// Start runs a file_storage extension on dir; the caller shuts it down
// (tests that restart a component on the same dir need that control).
func Start(t testing.TB, dir string) extension.Extension {
	t.Helper()
	f := filestorage.NewFactory()
	cfg := f.CreateDefaultConfig()
	require.NoError(t, confmap.NewFromStringMap(map[string]any{"directory": dir}).Unmarshal(cfg))
	ext, err := f.Create(context.Background(), extensiontest.NewNopSettings(f.Type()), cfg)
	require.NoError(t, err)
	require.NoError(t, ext.Start(context.Background(), componenttest.NewNopHost()))
	return ext
}

// Host is a component.Host that offers the given extensions.
type Host struct {
	component.Host
	Ext map[component.ID]component.Component
}

// NewHost is a Host with the given extensions (nil: none).
func NewHost(ext map[component.ID]component.Component) Host {
	if ext == nil {
		ext = map[component.ID]component.Component{}
	}
	return Host{Host: componenttest.NewNopHost(), Ext: ext}
}

// GetExtensions returns the extensions.
func (h Host) GetExtensions() map[component.ID]component.Component { return h.Ext }
