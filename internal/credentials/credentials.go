// Package credentials reads the gateway's credentials file: SHA-256 hashes
// of the tokens VMs send and the API keys customers read with, each mapped
// to its tenant and a scope, optionally until an expiry, and for a VM's
// token what the provider knows of that VM (its instance id, its GPUs). tenant_auth (writing) and
// tenant_query (reading) share it, so one file, one hashing rule and one
// revocation path serve both ways in; the usage job reads the VMs from it.
package credentials

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
)

// Scope is what a credential may do. An ingest token cannot read and a read
// key cannot write.
type Scope string

const (
	// ScopeIngest sends telemetry (a VM's token). Entries without a scope
	// have it, so files written before scopes existed keep working.
	ScopeIngest Scope = "ingest"
	// ScopeRead queries the tenant's data (a customer's API key).
	ScopeRead Scope = "read"
)

// file is the on-disk shape of the credentials file.
type file struct {
	Credentials []entry `yaml:"credentials"`
}

type entry struct {
	ID         string  `yaml:"id"`
	Tenant     string  `yaml:"tenant"`
	SHA256     string  `yaml:"sha256"`
	Scope      string  `yaml:"scope"`
	InstanceID *string `yaml:"instance_id"`
	Expires    *string `yaml:"expires"`
	// GPUs is decoded loosely so that a wrong value is reported with its
	// entry rather than as a bare YAML type error.
	GPUs any `yaml:"gpus"`
}

// Credential is one live token's or key's owner. Its hash identifies it;
// the token itself is never kept. It stays comparable: Set.Current compares
// whole values.
type Credential struct {
	ID     string
	Tenant string
	Scope  Scope
	Hash   [sha256.Size]byte
	// InstanceID is the provider's id of the VM that holds the token
	// (ingest only); empty when the file gives none.
	InstanceID string
	// GPUs is how many GPUs the provider gave that VM, when GPUsKnown.
	GPUs      int
	GPUsKnown bool
	// Expires is the instant from which the credential is refused like an
	// unknown one; zero for one that never expires. It is held in UTC, so
	// the same file read twice gives equal Credentials.
	Expires time.Time
}

// Set is an immutable snapshot of the credentials file, swapped whole on
// reload so a request sees either the old or the new file.
type Set struct {
	byHash    map[[sha256.Size]byte]*Credential
	tenants   []string // sorted
	instances map[string]Instance
	// now is the clock expiry is judged by, at every lookup (a credential
	// expires while its file stays the same).
	now func() time.Time
	// unavailable says why the set holds no credential at all (File's
	// max-stale bound passed); nil for a set read from the file.
	unavailable error
}

// Parse reads and checks a credentials file. Every problem is reported with
// the entry's position and id; a hash is never echoed in full.
func Parse(data []byte) (*Set, error) {
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("credentials file: %w", err)
	}
	set := &Set{byHash: make(map[[sha256.Size]byte]*Credential, len(f.Credentials)), now: time.Now}
	ids := make(map[string]int, len(f.Credentials))
	tenants := map[string]struct{}{}
	vms := vmTable{}
	var errs []error
	for i, e := range f.Credentials {
		where := fmt.Sprintf("credentials[%d]", i)
		if e.ID != "" {
			where += fmt.Sprintf(" (id %q)", e.ID)
		}
		var entryErrs []error
		if e.ID == "" {
			entryErrs = append(entryErrs, errors.New("id: must be set"))
		} else if j, dup := ids[e.ID]; dup {
			entryErrs = append(entryErrs, fmt.Errorf("id: also used by credentials[%d]", j))
		}
		if err := tenantid.Validate(e.Tenant); err != nil {
			entryErrs = append(entryErrs, fmt.Errorf("tenant: %w", err))
		}
		scope, err := parseScope(e.Scope)
		if err != nil {
			entryErrs = append(entryErrs, err)
		}
		hash, err := decodeHash(e.SHA256)
		if err != nil {
			entryErrs = append(entryErrs, fmt.Errorf("sha256: %w", err))
		} else if other, dup := set.byHash[hash]; dup {
			entryErrs = append(entryErrs, fmt.Errorf("sha256: the same token hash as id %q", other.ID))
		}
		vm, vmErrs := parseVM(e, scope)
		entryErrs = append(entryErrs, vmErrs...)
		expires, err := parseExpires(e.Expires)
		if err != nil {
			entryErrs = append(entryErrs, err)
		}
		if len(entryErrs) > 0 {
			errs = append(errs, fmt.Errorf("%s: %w", where, errors.Join(entryErrs...)))
			continue
		}
		c := &Credential{ID: e.ID, Tenant: e.Tenant, Scope: scope, Hash: hash,
			InstanceID: vm.instanceID, GPUs: vm.gpus, GPUsKnown: vm.gpusKnown, Expires: expires}
		if scope == ScopeIngest {
			if err := vms.add(c); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				continue
			}
		}
		ids[e.ID] = i
		tenants[e.Tenant] = struct{}{}
		set.byHash[hash] = c
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("credentials file: %w", errors.Join(errs...))
	}
	set.tenants = make([]string, 0, len(tenants))
	for t := range tenants {
		set.tenants = append(set.tenants, t)
	}
	sort.Strings(set.tenants)
	set.instances = vms.instances()
	return set, nil
}

func parseScope(s string) (Scope, error) {
	switch Scope(s) {
	case "", ScopeIngest:
		return ScopeIngest, nil
	case ScopeRead:
		return ScopeRead, nil
	default:
		return "", fmt.Errorf("scope: must be %q or %q, got %q", ScopeIngest, ScopeRead, s)
	}
}

// parseExpires reads an entry's expires: an RFC 3339 instant with its zone
// (2027-01-31T00:00:00Z), so that no gateway reads it in its own local
// time; absent, the credential never expires.
func parseExpires(s *string) (time.Time, error) {
	if s == nil {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(*s))
	if err != nil {
		return time.Time{}, fmt.Errorf("expires: want an RFC 3339 time such as 2027-01-31T00:00:00Z, got %q", *s)
	}
	return t.UTC(), nil
}

func decodeHash(s string) ([sha256.Size]byte, error) {
	var h [sha256.Size]byte
	s = strings.TrimSpace(s)
	if len(s) != hex.EncodedLen(sha256.Size) {
		return h, fmt.Errorf("want %d hex characters (printf '%%s' \"$TOKEN\" | sha256sum), got %d", hex.EncodedLen(sha256.Size), len(s))
	}
	if _, err := hex.Decode(h[:], []byte(strings.ToLower(s))); err != nil {
		return h, fmt.Errorf("not hexadecimal: %w", err)
	}
	return h, nil
}

// Lookup finds the credential of a presented token, whatever its scope:
// the caller checks the scope it needs. An expired credential is not found,
// exactly like an unknown one. The map is keyed by the token's SHA-256, so
// its timing can only tell an attacker about a digest they cannot invert;
// the final check is constant-time all the same.
func (s *Set) Lookup(token string) (*Credential, bool) {
	sum := sha256.Sum256([]byte(token))
	return s.byDigest(sum)
}

func (s *Set) byDigest(sum [sha256.Size]byte) (*Credential, bool) {
	c, ok := s.byHash[sum]
	if !ok || subtle.ConstantTimeCompare(c.Hash[:], sum[:]) != 1 || s.expired(c) {
		return nil, false
	}
	return c, true
}

// expired: c's expiry has come. The clock is read only for a credential
// that has one.
func (s *Set) expired(c *Credential) bool {
	return !c.Expires.IsZero() && !s.now().Before(c.Expires)
}

// Current is c as this snapshot has it: the same entry (hash, id, tenant,
// scope, VM and expiry), not expired, or false once it was removed, changed
// or expired. Something derived from a credential earlier (a browser
// session) asks this on every use, so revoking the credential, or its
// expiry, ends it too.
func (s *Set) Current(c *Credential) bool {
	cur, ok := s.byDigest(c.Hash)
	return ok && *cur == *c
}

// Unavailable says why the set finds no credential at all: the credentials
// file has failed to load for longer than its max-stale bound (File), so
// the gateway no longer knows which credentials are valid, and none is
// taken. It names the file and its error. A caller refuses retryably: the
// credentials presented are not known to be invalid. Nil for a set read
// from the file.
func (s *Set) Unavailable() error { return s.unavailable }

// Len is the number of credentials.
func (s *Set) Len() int { return len(s.byHash) }

// Tenants is the number of distinct tenants.
func (s *Set) Tenants() int { return len(s.tenants) }

// TenantNames lists the distinct tenants, sorted; the caller must not
// change the slice.
func (s *Set) TenantNames() []string { return s.tenants }
