// Package failthrottle counts failed authentications per source address in a
// fixed table, so that a source over its budget can be refused while valid
// credentials from the same address (VMs or browsers behind one NAT) pass.
// tenant_auth (ingest) and tenant_query (reads, logins) share it.
package failthrottle

import (
	"hash/maphash"
	"sync"
	"time"
)

// Throttle counts authentication failures per source address in a
// fixed table of buckets (memory is bounded whatever the number of sources;
// two sources sharing a bucket share its budget). A source over its budget
// for the current minute has its failing attempts refused retryably (callers look
// the credential up first: valid ones from it still pass).
type Throttle struct {
	perMinute uint32
	seed      maphash.Seed
	// Now is the clock (tests set it).
	Now func() time.Time

	mu      sync.Mutex
	buckets []slot
}

type slot struct {
	minute int64
	count  uint32
}

// New returns a throttle of perMinute failures per source in a table of
// buckets; nil (which never blocks) when perMinute is 0.
func New(perMinute, buckets int) *Throttle {
	if perMinute <= 0 {
		return nil
	}
	return &Throttle{perMinute: uint32(perMinute), seed: maphash.MakeSeed(), Now: time.Now, buckets: make([]slot, buckets)}
}

func (f *Throttle) bucket(source string) *slot {
	return &f.buckets[maphash.String(f.seed, source)%uint64(len(f.buckets))]
}

// Blocked reports whether source has used up its failures for this minute,
// and how long until the next minute gives it a new budget.
func (f *Throttle) Blocked(source string) (time.Duration, bool) {
	if f == nil || source == "" {
		return 0, false
	}
	now := f.Now()
	minute := now.Unix() / 60
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.bucket(source)
	if b.minute != minute || b.count < f.perMinute {
		return 0, false
	}
	return time.Unix((minute+1)*60, 0).Sub(now), true
}

// Fail records one failed authentication from source.
func (f *Throttle) Fail(source string) {
	if f == nil || source == "" {
		return
	}
	minute := f.Now().Unix() / 60
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.bucket(source)
	if b.minute != minute {
		b.minute, b.count = minute, 0
	}
	if b.count < ^uint32(0) {
		b.count++
	}
}
