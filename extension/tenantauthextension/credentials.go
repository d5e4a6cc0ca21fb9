package tenantauthextension

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
)

// credentialsFile is the on-disk shape of the credentials file.
type credentialsFile struct {
	Credentials []credentialEntry `yaml:"credentials"`
}

type credentialEntry struct {
	ID     string `yaml:"id"`
	Tenant string `yaml:"tenant"`
	SHA256 string `yaml:"sha256"`
}

// credential is one live token's owner.
type credential struct {
	id     string
	tenant string
	hash   [sha256.Size]byte
}

// credentialSet is an immutable snapshot of the credentials file, swapped
// whole on reload so a request sees either the old or the new file.
type credentialSet struct {
	byHash  map[[sha256.Size]byte]*credential
	tenants int
}

// parseCredentials reads and checks a credentials file. Every problem is
// reported with the entry's position and id; a token hash is never echoed
// in full.
func parseCredentials(data []byte) (*credentialSet, error) {
	var f credentialsFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("credentials file: %w", err)
	}
	set := &credentialSet{byHash: make(map[[sha256.Size]byte]*credential, len(f.Credentials))}
	ids := make(map[string]int, len(f.Credentials))
	tenants := map[string]struct{}{}
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
		hash, err := decodeHash(e.SHA256)
		if err != nil {
			entryErrs = append(entryErrs, fmt.Errorf("sha256: %w", err))
		} else if other, dup := set.byHash[hash]; dup {
			entryErrs = append(entryErrs, fmt.Errorf("sha256: the same token hash as id %q", other.id))
		}
		if len(entryErrs) > 0 {
			errs = append(errs, fmt.Errorf("%s: %w", where, errors.Join(entryErrs...)))
			continue
		}
		ids[e.ID] = i
		tenants[e.Tenant] = struct{}{}
		set.byHash[hash] = &credential{id: e.ID, tenant: e.Tenant, hash: hash}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("credentials file: %w", errors.Join(errs...))
	}
	set.tenants = len(tenants)
	return set, nil
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

// lookup finds the credential of a presented token. The map is keyed by the
// token's SHA-256, so its timing can only tell an attacker about a digest
// they cannot invert; the final check is constant-time all the same.
func (s *credentialSet) lookup(token string) (*credential, bool) {
	sum := sha256.Sum256([]byte(token))
	c, ok := s.byHash[sum]
	if !ok || subtle.ConstantTimeCompare(c.hash[:], sum[:]) != 1 {
		return nil, false
	}
	return c, true
}
