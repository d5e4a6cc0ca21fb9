package tenantprocessor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
)

// maxSourceBytes bounds what is read from a tenant file or metadata response.
const maxSourceBytes = 1 << 20

// identity is what the agent stamps: the tenant and further instance
// attributes. It is also the cache file's content.
type identity struct {
	Tenant     string            `json:"tenant"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

func (id *identity) equal(o *identity) bool {
	if id == nil || o == nil {
		return id == o
	}
	if id.Tenant != o.Tenant || len(id.Attributes) != len(o.Attributes) {
		return false
	}
	for k, v := range id.Attributes {
		if ov, ok := o.Attributes[k]; !ok || ov != v {
			return false
		}
	}
	return true
}

// tenantSource reads the agent's identity from its configured source.
type tenantSource struct {
	cfg    *Config
	client *http.Client
}

func newTenantSource(cfg *Config) *tenantSource {
	return &tenantSource{cfg: cfg, client: &http.Client{Timeout: cfg.Source.Timeout}}
}

// describe names the source in log lines and errors.
func (s *tenantSource) describe() string {
	src := s.cfg.Source
	switch src.Type {
	case SourceEnv:
		return "env " + src.Env
	case SourceFile:
		return "file " + src.Path
	case SourceHTTP:
		return "http " + src.URL
	default:
		return src.Type
	}
}

// fetch reads the identity once. Attributes whose pointer finds nothing are
// left out and reported in missing; the tenant itself must be there.
func (s *tenantSource) fetch(ctx context.Context) (id *identity, missing []string, err error) {
	src := s.cfg.Source
	var data []byte
	switch src.Type {
	case SourceStatic:
		data = []byte(src.Value)
	case SourceEnv:
		v, ok := os.LookupEnv(src.Env)
		if !ok || strings.TrimSpace(v) == "" {
			return nil, nil, fmt.Errorf("environment variable %s is unset or empty", src.Env)
		}
		data = []byte(v)
	case SourceFile:
		data, err = readLimited(src.Path)
	case SourceHTTP:
		data, err = s.get(ctx)
	default:
		err = fmt.Errorf("unknown source type %q", src.Type)
	}
	if err != nil {
		return nil, nil, err
	}
	return s.parse(data)
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read-only: nothing to flush
	data, err := io.ReadAll(io.LimitReader(f, maxSourceBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSourceBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxSourceBytes)
	}
	return data, nil
}

func (s *tenantSource) get(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.Source.URL, http.NoBody)
	if err != nil {
		return nil, err
	}
	for k, v := range s.cfg.Source.Headers {
		req.Header.Set(k, string(v))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", s.cfg.Source.URL, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxSourceBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSourceBytes {
		return nil, fmt.Errorf("%s answered more than %d bytes", s.cfg.Source.URL, maxSourceBytes)
	}
	return data, nil
}

func (s *tenantSource) parse(data []byte) (*identity, []string, error) {
	id := &identity{}
	var missing []string
	if s.cfg.Source.JSONPointer == "" {
		id.Tenant = strings.TrimSpace(string(data))
	} else {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var doc any
		if err := dec.Decode(&doc); err != nil {
			return nil, nil, fmt.Errorf("not a JSON document: %w", err)
		}
		tenant, err := lookupPointer(doc, s.cfg.Source.JSONPointer)
		if err != nil {
			return nil, nil, fmt.Errorf("tenant id: %w", err)
		}
		id.Tenant = strings.TrimSpace(tenant)
		for name, ptr := range s.cfg.Attributes {
			v, err := lookupPointer(doc, ptr)
			if err != nil {
				missing = append(missing, name)
				continue
			}
			if id.Attributes == nil {
				id.Attributes = make(map[string]string, len(s.cfg.Attributes))
			}
			id.Attributes[name] = v
		}
		sort.Strings(missing)
	}
	if err := tenantid.Validate(id.Tenant); err != nil {
		return nil, nil, err
	}
	return id, missing, nil
}

// readCache loads the last good identity, if there is one.
func readCache(path string) (*identity, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	var id identity
	if err := json.Unmarshal(data, &id); err != nil {
		return nil, fmt.Errorf("cache file %s: %w", path, err)
	}
	if err := tenantid.Validate(id.Tenant); err != nil {
		return nil, fmt.Errorf("cache file %s: %w", path, err)
	}
	return &id, nil
}

// writeCache replaces the cache file atomically (a crash leaves the old one).
func writeCache(path string, id *identity) error {
	data, err := json.Marshal(id)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(append(data, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
