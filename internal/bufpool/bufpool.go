// Package bufpool is the gateway's pool of large byte buffers, shared by
// the components that copy whole requests: tenant_auth's gRPC codec (a
// request's contiguous copy) and tenant_otlp_http (the body of a request to
// the store).
//
// It has a tier at every power of two from 16 KiB to 8 MiB, so a buffer is
// at most twice what it holds. gRPC's own default pool jumps from 32 KiB to
// 1 MiB (a 40 KB agent request held 1 MiB: 620 MiB at 1,000 tenants), and a
// fresh buffer per request costs the zeroing, the page faults and the
// garbage collections that its allocation brings closer.
//
// Buffers are not zeroed when they are handed out again (gRPC's tiered
// pool clears a buffer's whole capacity on every Get: a request body of
// 2.5 MB cleared 4 MiB, 1.4% of the gateway's CPU with the queue on disk).
// A buffer can hold another tenant's bytes, so a user must write every byte
// it lets anything read. Both do: the codec copies the whole message into a
// buffer of its length (mem.BufferSlice.MaterializeToBuffer), and a request
// body is only what was appended to it, or read into it in full
// (tenant_otlp_http's body). Their tests prove it: they run with the pool
// poisoned (Poison), every buffer filled with a marker byte when handed
// out, so a byte read before it was written would corrupt what they check.
package bufpool

import (
	"sync"
	"sync/atomic"
)

// poison, when on, fills every buffer Get hands out, its whole capacity,
// with poisonByte: the users' tests run with it on, so a user that let
// anything read a byte it did not write would send or decode poison, and
// its tests would see it. Off in production (one atomic load per Get).
var poison atomic.Bool

// poisonByte is what a poisoned buffer holds until its user writes it.
const poisonByte = 0xA5

// Poison turns the fill on or off: for the tests of the pool's users,
// which prove that no tenant's bytes reach another through a reused
// buffer.
func Poison(on bool) { poison.Store(on) }

// Pool is a tiered pool of byte buffers; it is a grpc mem.BufferPool.
type Pool struct {
	tiers []tier // ascending sizes
}

type tier struct {
	size int
	pool sync.Pool
}

// New returns a pool with a tier of each size (ascending).
func New(sizes ...int) *Pool {
	p := &Pool{tiers: make([]tier, len(sizes))}
	for i, s := range sizes {
		p.tiers[i].size = s
	}
	return p
}

// Get returns a buffer of the asked length, not zeroed: its capacity is
// the smallest tier that holds it (beyond the largest, a new buffer of its
// own that Put does not keep).
func (p *Pool) Get(length int) *[]byte {
	for i := range p.tiers {
		t := &p.tiers[i]
		if length > t.size {
			continue
		}
		if b, ok := t.pool.Get().(*[]byte); ok {
			*b = (*b)[:length]
			fill(*b)
			return b
		}
		b := make([]byte, length, t.size)
		fill(b)
		return &b
	}
	b := make([]byte, length)
	return &b
}

// Put gives a buffer back once nothing reads it; one whose capacity is not
// a tier's (not from Get) is left to the garbage collector.
func (p *Pool) Put(b *[]byte) {
	c := cap(*b)
	for i := range p.tiers {
		if p.tiers[i].size == c {
			p.tiers[i].pool.Put(b)
			return
		}
	}
}

// Large is the pool. Get returns a buffer of the asked length (its
// capacity may be larger); Put gives it back once nothing reads it.
var Large = New(16<<10, 32<<10, 64<<10, 128<<10, 256<<10, 512<<10, 1<<20, 2<<20, 4<<20, 8<<20)

// fill poisons b's whole capacity when poison is on.
func fill(b []byte) {
	if !poison.Load() {
		return
	}
	b = b[:cap(b)]
	for i := range b {
		b[i] = poisonByte
	}
}
