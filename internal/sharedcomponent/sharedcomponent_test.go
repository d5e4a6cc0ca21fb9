package sharedcomponent

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
)

type counting struct {
	starts, stops int
	startErr      error
}

func (c *counting) Start(context.Context, component.Host) error { c.starts++; return c.startErr }
func (c *counting) Shutdown(context.Context) error              { c.stops++; return nil }

func TestSharedInstanceStartsAndStopsOnce(t *testing.T) {
	var m Map[string, *counting]
	created := 0
	create := func() (*counting, error) { created++; return &counting{}, nil }

	a, err := m.LoadOrStore("nvml", create)
	require.NoError(t, err)
	b, err := m.LoadOrStore("nvml", create)
	require.NoError(t, err)
	other, err := m.LoadOrStore("nvml/2", create)
	require.NoError(t, err)
	require.Same(t, a, b)
	require.NotSame(t, a, other)
	require.Equal(t, 2, created)

	host := componenttest.NewNopHost()
	require.NoError(t, a.Start(context.Background(), host))
	require.NoError(t, b.Start(context.Background(), host))
	require.Equal(t, 1, a.Unwrap.starts)
	require.NoError(t, a.Shutdown(context.Background()))
	require.NoError(t, b.Shutdown(context.Background()))
	require.Equal(t, 1, a.Unwrap.stops)

	// After shutdown the id is free again (config reload builds anew).
	c, err := m.LoadOrStore("nvml", create)
	require.NoError(t, err)
	require.NotSame(t, a, c)
	require.Equal(t, 3, created)
}

func TestStartErrorIsSeenByEverySignal(t *testing.T) {
	var m Map[string, *counting]
	boom := errors.New("boom")
	a, err := m.LoadOrStore("x", func() (*counting, error) { return &counting{startErr: boom}, nil })
	require.NoError(t, err)
	b, _ := m.LoadOrStore("x", nil)
	require.ErrorIs(t, a.Start(context.Background(), componenttest.NewNopHost()), boom)
	require.ErrorIs(t, b.Start(context.Background(), componenttest.NewNopHost()), boom)
	require.Equal(t, 1, a.Unwrap.starts)

	_, err = m.LoadOrStore("y", func() (*counting, error) { return nil, boom })
	require.ErrorIs(t, err, boom)
}
