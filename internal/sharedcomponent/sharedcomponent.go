// Package sharedcomponent lets the per-signal instances of one configured
// component (the same id in a metrics, a logs and a traces pipeline) share a
// single underlying instance: one tenant source refresher, one NVML session.
// The collector's own helper for this is internal to the collector module.
package sharedcomponent

import (
	"context"
	"sync"

	"go.opentelemetry.io/collector/component"
)

// Map holds the shared instances, keyed by component id.
type Map[K comparable, V component.Component] struct {
	mu sync.Mutex
	m  map[K]*Component[V]
}

// LoadOrStore returns the instance for key, creating it with create the
// first time.
func (m *Map[K, V]) LoadOrStore(key K, create func() (V, error)) (*Component[V], error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.m[key]; ok {
		return c, nil
	}
	v, err := create()
	if err != nil {
		return nil, err
	}
	c := &Component[V]{Unwrap: v}
	c.remove = func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		delete(m.m, key)
	}
	if m.m == nil {
		m.m = map[K]*Component[V]{}
	}
	m.m[key] = c
	return c, nil
}

// Component starts its instance on the first Start and shuts it down on the
// first Shutdown (the collector stops every pipeline together), after which
// the key is free for a fresh instance (a config reload).
type Component[V component.Component] struct {
	Unwrap V

	remove    func()
	startOnce sync.Once
	startErr  error
	stopOnce  sync.Once
	stopErr   error
}

// Start starts the shared instance once.
func (c *Component[V]) Start(ctx context.Context, host component.Host) error {
	c.startOnce.Do(func() { c.startErr = c.Unwrap.Start(ctx, host) })
	return c.startErr
}

// Shutdown shuts the shared instance down once and forgets it.
func (c *Component[V]) Shutdown(ctx context.Context) error {
	c.stopOnce.Do(func() {
		c.stopErr = c.Unwrap.Shutdown(ctx)
		c.remove()
	})
	return c.stopErr
}
