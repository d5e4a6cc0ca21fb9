package tenantotlphttpexporter

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/config/configcompression"
)

// A pooled body goes back to the pool only when the sender is done and
// every reader handed to the transport is closed, in any order; a reader
// closed twice, or read after its close, never touches the buffer again.
func TestABodyIsReusedOnlyOnceEveryReaderIsClosed(t *testing.T) {
	for _, senderFirst := range []bool{true, false} {
		b := newBody(100)
		b.data = append(b.data, "0123456789"...)
		r1 := b.reader()
		r2 := b.reader() // a retry on a new connection (GetBody)
		got := make([]byte, 4)
		_, err := io.ReadFull(r1, got)
		require.NoError(t, err)
		require.Equal(t, "0123", string(got), "read in part, then closed (an aborted attempt)")

		if senderFirst {
			b.done()
		}
		require.NoError(t, r1.Close())
		require.NoError(t, r1.Close(), "a second close is harmless")
		require.NotNil(t, b.buf, "a reader is still open: not back in the pool")
		_, err = r1.Read(make([]byte, 4))
		require.ErrorIs(t, err, errBodyClosed)

		require.NoError(t, r2.Close())
		if !senderFirst {
			require.NotNil(t, b.buf, "the sender still holds it")
			b.done()
		}
		require.Nil(t, b.buf, "back in the pool")
		require.Nil(t, b.data)
	}

	// A reader read to its end is finished too (confighttp's compression
	// reads the body and never closes it); reading on gives EOF.
	b := newBody(100)
	b.data = append(b.data, "abc"...)
	r := b.reader()
	got, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, "abc", string(got))
	n, err := r.Read(make([]byte, 4))
	require.Equal(t, 0, n)
	require.ErrorIs(t, err, io.EOF)
	b.done()
	require.Nil(t, b.buf, "back in the pool without a Close")
	require.NoError(t, r.Close(), "a close after the end is harmless")

	// A record's own data is never put in the pool.
	own := []byte("abc")
	b = wrap(own)
	r = b.reader()
	require.NoError(t, r.Close())
	b.done()
	require.Equal(t, "abc", string(own))
}

// Request bodies are built in pooled buffers, with parts read back from
// the queue log into them: under many tenants and concurrent senders, with
// and without compression, every request still carries its own tenant's
// data and nothing else, and every point arrives once.
func TestPooledBodiesNeverCarryAnotherTenantsData(t *testing.T) {
	for _, compression := range []configcompression.Type{"none", "gzip"} {
		t.Run(string(compression), func(t *testing.T) {
			s := newStore(t)
			cfg := testConfig(s)
			cfg.ClientConfig.Compression = compression
			cfg.Senders = 8
			cfg.Queue.Directory = t.TempDir()
			cfg.Batch.FlushInterval = 100 * time.Millisecond // a round's parts all wait
			cfg.Batch.MaxBytes = 16 << 10
			cfg.Queue.MaxBytes = 256 << 10 // 16 KiB of parts kept in memory: most are read back
			exp := startMetrics(t, cfg, "")
			want := map[string]int{}
			for round := 0; round < 10; round++ {
				// Three parts a tenant, so each request is built from
				// several (in a pooled body), then all sent before the next
				// round, so every round builds its bodies again.
				for part := 0; part < 3; part++ {
					for i := 0; i < 30; i++ {
						tenant := fmt.Sprintf("t%d", i)
						n := 1 + (round*7+part*3+i)%23
						require.NoError(t, exp.ConsumeMetrics(context.Background(), batch(tenant, n)))
						want[tenant] += n
					}
				}
				require.Eventually(t, func() bool { return inner(exp).queuedItems() == 0 }, 10*time.Second, 5*time.Millisecond)
			}
			require.Eventually(t, func() bool {
				for tenant, n := range want {
					if s.pointsOf(tenant) != n {
						return false
					}
				}
				return true
			}, 20*time.Second, 10*time.Millisecond)
			stop(t, exp)
			s.mu.Lock()
			defer s.mu.Unlock()
			require.GreaterOrEqual(t, len(s.requests), 10*30, "every round's bodies built again, from the pool")
			for _, r := range s.requests {
				require.Len(t, r.tenants, 1, "a request never mixes tenants")
				for tenant, n := range r.tenants {
					require.Equal(t, "/t/"+tenant+"/opentelemetry/v1/metrics", r.path)
					require.Equal(t, r.points, n)
				}
			}
		})
	}
}

// io.Copy of a body writes it in one WriteTo (no copy buffer of its own),
// and a Close while that write is under way (the transport may close a
// body from another goroutine) gives the buffer back only once the write
// is done: it is never handed to another request while still being sent.
func TestABodyIsWrittenWithoutACopyBufferAndKeptUntilTheWriteEnds(t *testing.T) {
	b := newBody(100)
	b.data = append(b.data, "0123456789"...)
	r := b.reader()
	_, ok := r.(io.WriterTo)
	require.True(t, ok, "io.Copy uses WriteTo")

	w := &blockingWriter{started: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(w, r)
		done <- err
	}()
	<-w.started
	require.NoError(t, r.Close())
	b.done()
	require.NotNil(t, b.buf, "closed and done, but the write still reads the buffer: not back in the pool")
	close(w.release)
	require.NoError(t, <-done)
	require.Equal(t, "0123456789", string(w.got))
	require.Nil(t, b.buf, "back in the pool once the write ended")

	// Read after the end, or WriteTo after a close, touch nothing.
	n, err := r.(io.WriterTo).WriteTo(io.Discard)
	require.Zero(t, n)
	require.NoError(t, err, "at its end already")
	b2 := newBody(100)
	b2.data = append(b2.data, "abc"...)
	r2 := b2.reader()
	require.NoError(t, r2.Close())
	_, err = r2.(io.WriterTo).WriteTo(io.Discard)
	require.ErrorIs(t, err, errBodyClosed)
	b2.done()
	require.Nil(t, b2.buf)

	// A late call on the closed reader of a body already given back never
	// counts it up from zero (it would reach zero, and be given back, again).
	require.False(t, r2.(*bodyReader).hold())
	require.Zero(t, b2.refs.Load())
	_, err = r2.Read(make([]byte, 1))
	require.ErrorIs(t, err, errBodyClosed)
	require.Zero(t, b2.refs.Load())
}

// Readers closed, read and released from several goroutines at once (as
// the transport's write loop, its closer and the sender do) give each
// buffer back exactly once: the count never goes below zero.
func TestABodyIsGivenBackOnceUnderConcurrentUse(t *testing.T) {
	for range 2000 {
		b := newBody(64)
		b.data = append(b.data, "0123456789abcdef"...)
		r := b.reader()
		var wg sync.WaitGroup
		wg.Add(3)
		go func() { defer wg.Done(); _, _ = io.Copy(io.Discard, r) }()
		go func() { defer wg.Done(); _ = r.Close() }()
		go func() { defer wg.Done(); b.done() }()
		wg.Wait()
		_, _ = r.Read(make([]byte, 4))
		require.Zero(t, b.refs.Load())
		require.Nil(t, b.buf)
	}
}

// blockingWriter holds its first write until released.
type blockingWriter struct {
	started, release chan struct{}
	got              []byte
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	if w.got == nil {
		close(w.started)
		<-w.release
	}
	w.got = append(w.got, p...)
	return len(p), nil
}
