package tenantalertsextension

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Receiver is one of a tenant's endpoints for notifications.
type Receiver struct {
	Name string `json:"name"`
	// Type is webhook (our JSON body, signed) or slack (a Slack-compatible
	// incoming webhook: {"text": ...}).
	Type string `json:"type"`
	URL  string `json:"url"`
	// Secret is the HMAC key of a webhook's signatures (hex), shown to the
	// tenant once, when the receiver is set.
	Secret  string    `json:"secret,omitempty"`
	Created time.Time `json:"created"`
}

// The receiver types.
const (
	receiverWebhook = "webhook"
	receiverSlack   = "slack"
)

// tenantState is what a tenant set: its rules and receivers. It is one
// JSON file per tenant in <directory>/tenants, written whole (a temporary
// file renamed over the old one) under the directory's lock, so replicas
// sharing the directory never lose each other's changes.
type tenantState struct {
	Rules     []Rule     `json:"rules"`
	Receivers []Receiver `json:"receivers"`
}

// stateStore reads and writes the tenants' state files.
type stateStore struct {
	dir string // <directory>/tenants
	// lock is <directory>/.lock: held (flock) for every read-modify-write,
	// and while the engines' files are written from the state.
	lock string
}

func newStateStore(directory string) (*stateStore, error) {
	s := &stateStore{dir: filepath.Join(directory, "tenants"), lock: filepath.Join(directory, ".lock")}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *stateStore) path(tenant string) string { return filepath.Join(s.dir, tenant+".json") }

// load reads a tenant's state; a tenant that set nothing has none.
func (s *stateStore) load(tenant string) (tenantState, error) {
	var st tenantState
	data, err := os.ReadFile(s.path(tenant))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("%s: %w", s.path(tenant), err)
	}
	return st, nil
}

// withLock runs fn holding the directory's lock (an flock, so it also
// holds against other processes sharing the directory).
func (s *stateStore) withLock(fn func() error) error {
	f, err := os.OpenFile(s.lock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", s.lock, err)
	}
	defer func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }()
	return fn()
}

// update changes a tenant's state under the lock; fn's error leaves the
// file as it was.
func (s *stateStore) update(tenant string, fn func(*tenantState) error) error {
	return s.withLock(func() error {
		st, err := s.load(tenant)
		if err != nil {
			return err
		}
		if err := fn(&st); err != nil {
			return err
		}
		data, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			return err
		}
		_, err = writeFileAtomic(s.path(tenant), data, 0o600)
		return err
	})
}

// writeFileAtomic replaces path with data (a synced temporary file renamed
// over it), unless it already holds exactly data; it says whether it wrote.
// A reader (an engine reloading) sees the old file or the new one, whole.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return false, nil
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return false, err
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(name)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return false, err
	}
	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(name, path); err != nil {
		return false, err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return true, nil
}

// removeStale deletes the files in dir with suffix whose tenant is not in
// keep; it says whether it removed any.
func removeStale(dir, suffix string, keep map[string]bool) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	removed := false
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, suffix) {
			continue
		}
		if keep[strings.TrimSuffix(name, suffix)] {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, err
		}
		removed = true
	}
	return removed, nil
}
