package tenantqueryextension

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"time"

	"github.com/otelcol-gpu/otelcol-gpu/internal/credentials"
)

// sessions are the browser logins: a random id in an HttpOnly cookie,
// mapped here to the key's credential (its hash, id, tenant and scope, not
// the key). Every use checks the credential is still in the file, so
// revoking a key ends its sessions within reload_interval. Sessions live in
// this process: behind several replicas, balance browsers with affinity, or
// have them send the key (basic auth) on every request instead.
type sessions struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu sync.Mutex
	// byID is keyed by the SHA-256 of the session id, so the ids
	// themselves are not kept in memory.
	byID map[[sha256.Size]byte]*session
}

type session struct {
	cred    credentials.Credential
	expires time.Time
}

func newSessions(ttl time.Duration, maxSessions int) *sessions {
	return &sessions{ttl: ttl, max: maxSessions, now: time.Now, byID: map[[sha256.Size]byte]*session{}}
}

// create starts a session for cred and returns its id.
func (s *sessions) create(cred *credentials.Credential) (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	id := base64.RawURLEncoding.EncodeToString(raw[:])
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byID) >= s.max {
		s.evict(now)
	}
	s.byID[sha256.Sum256([]byte(id))] = &session{cred: *cred, expires: now.Add(s.ttl)}
	return id, nil
}

// evict drops expired sessions, and if none were, the one closest to
// expiry. Called with mu held when the table is full.
func (s *sessions) evict(now time.Time) {
	var oldestKey [sha256.Size]byte
	var oldest time.Time
	removed := false
	for k, v := range s.byID {
		if !now.Before(v.expires) {
			delete(s.byID, k)
			removed = true
			continue
		}
		if oldest.IsZero() || v.expires.Before(oldest) {
			oldest, oldestKey = v.expires, k
		}
	}
	if !removed && !oldest.IsZero() {
		delete(s.byID, oldestKey)
	}
}

// get returns a live session's credential.
func (s *sessions) get(id string) (*credentials.Credential, bool) {
	if id == "" {
		return nil, false
	}
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.byID[k]
	if !ok {
		return nil, false
	}
	if !s.now().Before(v.expires) {
		delete(s.byID, k)
		return nil, false
	}
	cred := v.cred
	return &cred, true
}

// drop ends a session (logout).
func (s *sessions) drop(id string) {
	s.mu.Lock()
	delete(s.byID, sha256.Sum256([]byte(id)))
	s.mu.Unlock()
}

func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}
