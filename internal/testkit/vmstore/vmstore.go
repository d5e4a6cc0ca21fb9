// Package vmstore runs VictoriaMetrics single-node (the store of the demo
// and the end-to-end tests, installed by `make` into .tools/bin) on loopback
// and queries it through its Prometheus-compatible API.
//
// The store is started with:
//   - -dedup.minScrapeInterval=1ms: one sample per series and millisecond is
//     kept, so a batch the gateway sends twice (a re-send after a crash or a
//     timeout whose request had in fact landed) is counted once;
//   - -search.latencyOffset=0s and -search.disableCache: a query sees
//     what was just written (after Flush), which a test needs and a demo wants.
package vmstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
)

// BinaryEnv names the variable that points at the victoria-metrics binary.
const BinaryEnv = "VICTORIA_METRICS_BIN"

// Version is the pinned release (Makefile: VICTORIA_METRICS_VERSION).
const Version = "v1.151.0"

// FindBinary returns $VICTORIA_METRICS_BIN, else <root>/.tools/bin/victoria-metrics.
func FindBinary(root string) (string, error) {
	return proc.Tool(root, BinaryEnv, "victoria-metrics", "store")
}

// Store is a running (or stopped) VictoriaMetrics.
type Store struct {
	Bin, Dir string
	Addr     string // 127.0.0.1:port
	URL      string // http://Addr
	Log      io.Writer

	p *proc.Proc
}

// New describes a store; Start runs it. Dir is its data directory (kept
// across Stop/Start, as a real store's disk is).
func New(bin, dir, addr string, log io.Writer) *Store {
	if log == nil {
		log = io.Discard
	}
	return &Store{Bin: bin, Dir: dir, Addr: addr, URL: "http://" + addr, Log: log}
}

// Start runs the store and waits until it answers /health.
func (s *Store) Start(ctx context.Context) error {
	if s.Running() {
		return errors.New("vmstore: already running")
	}
	p, err := proc.StartWriter("victoria-metrics", s.Bin, []string{
		"-storageDataPath=" + s.Dir,
		"-httpListenAddr=" + s.Addr,
		"-dedup.minScrapeInterval=1ms",
		"-search.latencyOffset=0s",
		"-search.disableCache",
		"-retentionPeriod=7d",
		"-loggerLevel=WARN",
	}, nil, s.Log)
	if err != nil {
		return fmt.Errorf("vmstore: %w", err)
	}
	s.p = p
	if err := p.WaitHTTPOK(ctx, s.URL+"/health", 30*time.Second); err != nil {
		return fmt.Errorf("vmstore: %w", err)
	}
	return nil
}

// BindFailed reports whether the store exited because its address was taken
// (for proc.RetryBind).
func (s *Store) BindFailed() bool { return s != nil && s.p.BindFailed() }

// Running reports whether the process is up.
func (s *Store) Running() bool { return s.p != nil && !s.p.Exited() }

// Stop ends the store with SIGTERM (it flushes to disk) and waits, killing
// it after 30 s.
func (s *Store) Stop() error {
	if !s.Running() {
		return nil
	}
	return s.p.Stop(30 * time.Second)
}

// Flush makes everything ingested so far visible to queries.
func (s *Store) Flush(ctx context.Context) error {
	return s.get(ctx, "/internal/force_flush", nil, io.Discard)
}

func (s *Store) get(ctx context.Context, path string, q url.Values, out io.Writer) error {
	u := s.URL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, http.NoBody)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("vmstore: GET %s: %s: %s", path, resp.Status, b)
	}
	_, err = io.Copy(out, resp.Body)
	return err
}

// Sample is one series of an instant query's answer.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Query runs an instant PromQL/MetricsQL query at now. extraLabel
// ("tenant_id=acme") scopes it the way the store's read path enforces
// tenancy; empty: the whole store.
func (s *Store) Query(ctx context.Context, query, extraLabel string) ([]Sample, error) {
	return s.QueryAt(ctx, query, extraLabel, time.Time{})
}

// QueryAt is Query evaluated at a given time (zero: now).
func (s *Store) QueryAt(ctx context.Context, query, extraLabel string, at time.Time) ([]Sample, error) {
	q := url.Values{"query": {query}}
	if !at.IsZero() {
		q.Set("time", strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64))
	}
	if extraLabel != "" {
		q.Set("extra_label", extraLabel)
	}
	var body struct {
		Status string `json:"status"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(s.get(ctx, "/api/v1/query", q, pw)) }()
	if err := json.NewDecoder(pr).Decode(&body); err != nil {
		_ = pr.Close()
		return nil, fmt.Errorf("vmstore: query %q: %w", query, err)
	}
	_ = pr.Close()
	out := make([]Sample, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		str, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("vmstore: query %q: value %v: %w", query, r.Value[1], err)
		}
		out = append(out, Sample{Labels: r.Metric, Value: v})
	}
	return out, nil
}

// Scalar runs a query expected to answer one series (or none: 0).
func (s *Store) Scalar(ctx context.Context, query, extraLabel string) (float64, error) {
	return s.scalarAt(ctx, query, extraLabel, time.Time{})
}

func (s *Store) scalarAt(ctx context.Context, query, extraLabel string, at time.Time) (float64, error) {
	res, err := s.QueryAt(ctx, query, extraLabel, at)
	if err != nil {
		return 0, err
	}
	switch len(res) {
	case 0:
		return 0, nil
	case 1:
		return res[0].Value, nil
	default:
		return 0, fmt.Errorf("vmstore: query %q answered %d series, want one", query, len(res))
	}
}

// CountSamples is the number of samples stored (one per series and
// millisecond, after deduplication) that match selector within the last
// window, e.g. CountSamples(ctx, `{tenant_id="acme"}`, "", 2*time.Hour).
// The window ends a minute from now: a fast sender's timestamps may run a
// little ahead of the clock.
func (s *Store) CountSamples(ctx context.Context, selector, extraLabel string, window time.Duration) (int64, error) {
	ahead := time.Minute
	v, err := s.scalarAt(ctx, fmt.Sprintf("sum(count_over_time(%s[%ds]))", selector, int((window+ahead).Seconds())), extraLabel, time.Now().Add(ahead))
	return int64(v), err
}

// Series lists the label sets of the series matching selector (within the
// last day), scoped by extraLabel.
func (s *Store) Series(ctx context.Context, selector, extraLabel string) ([]map[string]string, error) {
	q := url.Values{"match[]": {selector}, "start": {strconv.FormatInt(time.Now().Add(-24*time.Hour).Unix(), 10)}}
	if extraLabel != "" {
		q.Set("extra_label", extraLabel)
	}
	var body struct {
		Data []map[string]string `json:"data"`
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(s.get(ctx, "/api/v1/series", q, pw)) }()
	err := json.NewDecoder(pr).Decode(&body)
	_ = pr.Close()
	if err != nil {
		return nil, fmt.Errorf("vmstore: series %q: %w", selector, err)
	}
	return body.Data, nil
}

// CPU is the CPU time the store's process has used so far.
func (s *Store) CPU() time.Duration {
	if s.p == nil {
		return 0
	}
	return s.p.CPU()
}

// PeakRSSMiB is the store's high-water resident memory (0 if unknown).
func (s *Store) PeakRSSMiB() float64 {
	if s.p == nil {
		return 0
	}
	return s.p.PeakRSSMiB()
}
