// Package vlstore runs VictoriaLogs, the store of GPU events (XID log
// records) for the demo and the e2e tests, and queries it the way a
// tenant's read is held: extra_filters=tenant_id:<tenant>. Test and demo
// equipment only.
package vlstore

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
)

// BinaryEnv names the variable that points at the victoria-logs binary.
const BinaryEnv = "VICTORIA_LOGS_BIN"

// FindBinary returns $VICTORIA_LOGS_BIN, else <root>/.tools/bin/victoria-logs.
func FindBinary(root string) (string, error) {
	return proc.Tool(root, BinaryEnv, "victoria-logs", "logstore")
}

// Store is a running VictoriaLogs on loopback.
type Store struct {
	URL string // http://127.0.0.1:port
	p   *proc.Proc
}

// Start runs VictoriaLogs with its data in dir and waits for /health.
func Start(ctx context.Context, bin, dir, addr string, log io.Writer) (*Store, error) {
	p, err := proc.StartWriter("victoria-logs", bin, []string{
		"-storageDataPath=" + dir,
		"-httpListenAddr=" + addr,
		"-retentionPeriod=7d",
		"-loggerLevel=WARN",
	}, nil, log)
	if err != nil {
		return nil, fmt.Errorf("vlstore: %w", err)
	}
	s := &Store{URL: "http://" + addr, p: p}
	if err := p.WaitHTTPOK(ctx, s.URL+"/health", 30*time.Second); err != nil {
		return s, fmt.Errorf("vlstore: %w", err)
	}
	return s, nil
}

// BindFailed reports whether the store exited because its address was taken
// (for proc.RetryBind).
func (s *Store) BindFailed() bool { return s != nil && s.p.BindFailed() }

// Stop ends the store (SIGTERM, then a kill after 30 s).
func (s *Store) Stop() error {
	if s == nil || s.p.Exited() {
		return nil
	}
	return s.p.Stop(30 * time.Second)
}

// Query runs a LogsQL query held to tenant (extra_filters=tenant_id:<tenant>;
// empty: the whole store) after making everything ingested visible, and
// returns the records, each a map of its fields.
func (s *Store) Query(ctx context.Context, logsql, tenant string) ([]map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.get(ctx, "/internal/force_flush", nil, nil); err != nil {
		return nil, err
	}
	q := url.Values{"query": {logsql}}
	if tenant != "" {
		q.Set("extra_filters", "tenant_id:"+tenant)
	}
	var out []map[string]string
	err := s.get(ctx, "/select/logsql/query", q, func(r io.Reader) error {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			var rec map[string]string
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				return fmt.Errorf("vlstore: a record: %w", err)
			}
			out = append(out, rec)
		}
		return sc.Err()
	})
	return out, err
}

func (s *Store) get(ctx context.Context, path string, q url.Values, read func(io.Reader) error) error {
	u := s.URL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, http.NoBody)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("vlstore: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("vlstore: GET %s: %s: %s", path, resp.Status, b)
	}
	if read == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return read(resp.Body)
}
