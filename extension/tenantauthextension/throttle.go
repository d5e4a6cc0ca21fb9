package tenantauthextension

import (
	"hash/maphash"
	"sync"
	"time"
)

// failureThrottle counts authentication failures per source address in a
// fixed table of buckets (memory is bounded whatever the number of sources;
// two sources sharing a bucket share its budget). A source over its budget
// for the current minute has its failing attempts refused retryably (valid
// credentials from it still pass: see authenticator.check).
type failureThrottle struct {
	perMinute uint32
	seed      maphash.Seed
	now       func() time.Time

	mu      sync.Mutex
	buckets []failureBucket
}

type failureBucket struct {
	minute int64
	count  uint32
}

func newFailureThrottle(perMinute, buckets int) *failureThrottle {
	if perMinute <= 0 {
		return nil
	}
	return &failureThrottle{perMinute: uint32(perMinute), seed: maphash.MakeSeed(), now: time.Now, buckets: make([]failureBucket, buckets)}
}

func (f *failureThrottle) bucket(source string) *failureBucket {
	return &f.buckets[maphash.String(f.seed, source)%uint64(len(f.buckets))]
}

// blocked reports whether source has used up its failures for this minute,
// and how long until the next minute gives it a new budget.
func (f *failureThrottle) blocked(source string) (time.Duration, bool) {
	if f == nil || source == "" {
		return 0, false
	}
	now := f.now()
	minute := now.Unix() / 60
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.bucket(source)
	if b.minute != minute || b.count < f.perMinute {
		return 0, false
	}
	return time.Unix((minute+1)*60, 0).Sub(now), true
}

// fail records one failed authentication from source.
func (f *failureThrottle) fail(source string) {
	if f == nil || source == "" {
		return
	}
	minute := f.now().Unix() / 60
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
