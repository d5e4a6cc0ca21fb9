package bufpool

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/mem"
)

var _ mem.BufferPool = (*Pool)(nil)

func TestABufferIsAtMostTwiceWhatItHoldsAndComesBack(t *testing.T) {
	p := New(16<<10, 32<<10, 64<<10)
	for _, c := range []struct{ length, capacity int }{{1, 16 << 10}, {16 << 10, 16 << 10}, {16<<10 + 1, 32 << 10}, {40_000, 64 << 10}, {64<<10 + 1, 64<<10 + 1}} {
		b := p.Get(c.length)
		require.Len(t, *b, c.length)
		require.Equal(t, c.capacity, cap(*b), "length %d", c.length)
		p.Put(b)
	}
	// A buffer put back is handed out again, at the length asked.
	b := p.Get(40_000)
	p.Put(b)
	again := p.Get(50_000)
	require.Len(t, *again, 50_000)
	require.Equal(t, 64<<10, cap(*again))
	// A buffer of no tier's capacity is not kept.
	odd := make([]byte, 10, 20<<10)
	p.Put(&odd)
	require.Equal(t, 16<<10, cap(*p.Get(10)))
}

// The gRPC codec's use: MaterializeToBuffer copies a message of several
// buffers into one of its length from the pool; nothing of the buffer's
// earlier content shows.
func TestAMaterializedMessageIsOnlyItsBytes(t *testing.T) {
	p := New(16<<10, 32<<10, 64<<10)
	old := p.Get(60_000)
	for i := range *old {
		(*old)[i] = 0xAA
	}
	p.Put(old)
	a, b := make([]byte, 20_000), make([]byte, 20_000)
	for i := range a {
		a[i], b[i] = 1, 2
	}
	buf := mem.BufferSlice{mem.SliceBuffer(a), mem.SliceBuffer(b)}.MaterializeToBuffer(p)
	defer buf.Free()
	got := buf.ReadOnlyData()
	require.Len(t, got, 40_000)
	require.NotContains(t, got, byte(0xAA))
}

// Poisoned, every buffer handed out holds poisonByte over its whole
// capacity until its user writes it, whether new or reused.
func TestPoisonFillsWhatIsHandedOut(t *testing.T) {
	Poison(true)
	defer Poison(false)
	p := New(16, 64)
	b := p.Get(10)
	require.Len(t, *b, 10)
	for _, c := range (*b)[:cap(*b)] {
		require.Equal(t, byte(poisonByte), c)
	}
	copy(*b, "tenant-a's")
	p.Put(b)
	b = p.Get(5)
	for _, c := range (*b)[:cap(*b)] {
		require.Equal(t, byte(poisonByte), c, "nothing of the buffer's last user is left")
	}
}
