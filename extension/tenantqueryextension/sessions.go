package tenantqueryextension

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
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
//
// No tenant's logins can end another tenant's sessions: a tenant at its own
// bound (perTenant) loses its own oldest session, and a full table refuses
// new logins (errSessionsFull) instead of dropping anyone's. Every
// operation is O(1) but a sweep of expired sessions, which a full table
// runs at most once a second.
type sessions struct {
	ttl       time.Duration
	max       int
	perTenant int
	now       func() time.Time

	mu sync.Mutex
	// byID is keyed by the SHA-256 of the session id, so the ids
	// themselves are not kept in memory.
	byID map[[sha256.Size]byte]*session
	// byTenant holds each tenant's sessions, oldest first.
	byTenant  map[string][][sha256.Size]byte
	lastSweep time.Time
}

type session struct {
	cred    credentials.Credential
	expires time.Time
}

// errSessionsFull refuses a login while the table is full of live sessions.
var errSessionsFull = errors.New("too many browser sessions on this gateway; try again later or use the API with the key")

func newSessions(ttl time.Duration, maxSessions, perTenant int) *sessions {
	return &sessions{ttl: ttl, max: maxSessions, perTenant: perTenant, now: time.Now,
		byID: map[[sha256.Size]byte]*session{}, byTenant: map[string][][sha256.Size]byte{}}
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
	keys := s.live(cred.Tenant, now)
	if len(keys) >= s.perTenant {
		keys = s.compact(keys, now)
	}
	if len(keys) >= s.perTenant {
		// The tenant's own oldest session makes room.
		delete(s.byID, keys[0])
		keys = keys[1:]
	} else if len(s.byID) >= s.max {
		if now.Sub(s.lastSweep) >= time.Second {
			s.lastSweep = now
			s.sweep(now)
		}
		if len(s.byID) >= s.max {
			return "", errSessionsFull
		}
	}
	k := sha256.Sum256([]byte(id))
	s.byID[k] = &session{cred: *cred, expires: now.Add(s.ttl)}
	s.byTenant[cred.Tenant] = append(keys, k)
	return id, nil
}

// live is a tenant's sessions after dropping the expired and ended ones
// from its front (they are in the order they were made, so the same ttl
// expires them in that order). Called with mu held.
func (s *sessions) live(tenant string, now time.Time) [][sha256.Size]byte {
	keys := s.byTenant[tenant]
	for len(keys) > 0 {
		v, ok := s.byID[keys[0]]
		if ok && now.Before(v.expires) {
			break
		}
		delete(s.byID, keys[0])
		keys = keys[1:]
	}
	if len(keys) == 0 {
		delete(s.byTenant, tenant)
		return nil
	}
	return keys
}

// compact is keys without the sessions that ended (logout) or expired.
// Called with mu held.
func (s *sessions) compact(keys [][sha256.Size]byte, now time.Time) [][sha256.Size]byte {
	out := keys[:0]
	for _, k := range keys {
		if v, ok := s.byID[k]; ok && now.Before(v.expires) {
			out = append(out, k)
		} else {
			delete(s.byID, k)
		}
	}
	return out
}

// sweep drops every expired session. Called with mu held.
func (s *sessions) sweep(now time.Time) {
	for t := range s.byTenant {
		if keys := s.live(t, now); keys != nil {
			s.byTenant[t] = keys
		}
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

// drop ends a session (logout); its tenant's list forgets it lazily.
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
