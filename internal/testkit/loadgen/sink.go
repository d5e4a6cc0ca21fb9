package loadgen

import (
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// Sink is an OTLP/HTTP metrics endpoint that counts the data points it is
// delivered (on the wire, see CountDataPoints) and answers success: what a
// benchmark measures a gateway's output with. Any path ending in
// /v1/metrics is accepted (stores put OTLP under their own prefix); the
// tenant of a request is its extra_label query (tenant_id=<t>) or its
// X-Scope-OrgID header, when there is one.
type Sink struct {
	points, requests, bytes, bad atomic.Int64

	mu        sync.Mutex
	perTenant map[string]int64
	okBody    []byte
}

// NewSink returns an empty sink; serve it with net/http.
func NewSink() *Sink {
	ok, _ := pmetricotlp.NewExportResponse().MarshalProto()
	return &Sink{perTenant: map[string]int64{}, okBody: ok}
}

// SinkCounts is what a sink has counted.
type SinkCounts struct {
	Points    int64            `json:"points"`
	Requests  int64            `json:"requests"`
	Bytes     int64            `json:"bytes"`
	Bad       int64            `json:"bad_requests"`
	PerTenant map[string]int64 `json:"per_tenant,omitempty"`
}

// Counts returns the totals so far.
func (s *Sink) Counts() SinkCounts {
	s.mu.Lock()
	per := make(map[string]int64, len(s.perTenant))
	for k, v := range s.perTenant {
		per[k] = v
	}
	s.mu.Unlock()
	return SinkCounts{Points: s.points.Load(), Requests: s.requests.Load(), Bytes: s.bytes.Load(), Bad: s.bad.Load(), PerTenant: per}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 256<<10); return &b }}

func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/v1/metrics") {
		http.NotFound(w, r)
		return
	}
	var rd io.Reader = r.Body
	switch r.Header.Get("Content-Encoding") {
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			s.refuse(w, err)
			return
		}
		rd = zr
	case "zstd":
		zr, err := zstd.NewReader(r.Body, zstd.WithDecoderConcurrency(1))
		if err != nil {
			s.refuse(w, err)
			return
		}
		defer zr.Close()
		rd = zr
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := (*bp)[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			s.refuse(w, err)
			return
		}
	}
	*bp = buf
	n, err := CountDataPoints(buf)
	if err != nil {
		s.refuse(w, err)
		return
	}
	s.points.Add(int64(n))
	s.requests.Add(1)
	s.bytes.Add(int64(len(buf)))
	tenant := r.Header.Get("X-Scope-OrgID")
	if el := r.URL.Query().Get("extra_label"); strings.HasPrefix(el, "tenant_id=") {
		tenant = strings.TrimPrefix(el, "tenant_id=")
	}
	if tenant != "" {
		s.mu.Lock()
		s.perTenant[tenant] += int64(n)
		s.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(s.okBody)
}

func (s *Sink) refuse(w http.ResponseWriter, err error) {
	s.bad.Add(1)
	http.Error(w, err.Error(), http.StatusBadRequest)
}
