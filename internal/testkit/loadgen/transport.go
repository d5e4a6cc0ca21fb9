package loadgen

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Outcome of one send.
type Outcome int

// Outcomes.
const (
	Accepted  Outcome = iota
	Retryable         // refused for now (429/502/503/504, Unavailable, ResourceExhausted, ...) or no answer: an agent keeps it and sends again
	Permanent         // refused for good (400, 401, 413, InvalidArgument, Unauthenticated, ...)
)

// Result is what the gateway answered.
type Result struct {
	Outcome  Outcome
	Code     string // "200", "503", "Unauthenticated", "conn": for the report
	Rejected int    // data points the gateway said it rejected (partial success)
	Err      error
}

// Transport sends one encoded request.
type Transport interface {
	// Send sends body with the bearer token (none when empty) and, where
	// TenantHeader is set, the tenant in that header.
	Send(ctx context.Context, body []byte, token, tenant string) Result
	Close() error
}

// TransportConfig says where and how to send.
type TransportConfig struct {
	Protocol string // "grpc" or "http"
	Endpoint string // grpc: host:port; http: base URL (http[s]://host:port), /v1/metrics is appended
	CAFile   string // TLS with this CA; empty: plaintext (grpc) or as the URL says (http)
	// ServerName overrides the TLS server name (certificates for "localhost" reached at 127.0.0.1).
	ServerName string
	Gzip       bool
	Conns      int // gRPC connections (requests are spread over them); HTTP: idle connections kept
	// TenantHeader, when set, names a header (gRPC metadata) that carries
	// the agent's tenant: what an upstream-components tenant pipeline
	// (include_metadata, resource from_context, batch metadata_keys) reads.
	TenantHeader string
	Timeout      time.Duration // per request
}

// NewTransport opens the connections.
func NewTransport(c TransportConfig) (Transport, error) {
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	c.Conns = max(1, c.Conns)
	var tlsConf *tls.Config
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("loadgen: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("loadgen: CA file %s holds no PEM certificate", c.CAFile)
		}
		tlsConf = &tls.Config{RootCAs: pool, ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
	}
	switch c.Protocol {
	case "grpc":
		return newGRPC(c, tlsConf)
	case "http":
		return newHTTP(c, tlsConf), nil
	default:
		return nil, fmt.Errorf("loadgen: protocol %q: want grpc or http", c.Protocol)
	}
}

// ---- OTLP/gRPC ----

type grpcTransport struct {
	conns []*grpc.ClientConn
	next  atomic.Uint64
	c     TransportConfig
}

// rawCodec sends bytes that are already protobuf and keeps the answer's
// bytes: the generator encodes once, outside the measured path of the
// gateway.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) ([]byte, error) {
	return *(v.(*[]byte)), nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append((*(v.(*[]byte)))[:0], data...)
	return nil
}

const exportMethod = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"

func newGRPC(c TransportConfig, tlsConf *tls.Config) (*grpcTransport, error) {
	creds := insecure.NewCredentials()
	if tlsConf != nil {
		creds = credentials.NewTLS(tlsConf)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds), grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}))}
	if c.Gzip {
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.UseCompressor("gzip")))
	}
	t := &grpcTransport{c: c}
	for i := 0; i < c.Conns; i++ {
		conn, err := grpc.NewClient(c.Endpoint, opts...)
		if err != nil {
			_ = t.Close()
			return nil, fmt.Errorf("loadgen: grpc %s: %w", c.Endpoint, err)
		}
		t.conns = append(t.conns, conn)
	}
	return t, nil
}

func (t *grpcTransport) Send(ctx context.Context, body []byte, token, tenant string) Result {
	conn := t.conns[t.next.Add(1)%uint64(len(t.conns))]
	ctx, cancel := context.WithTimeout(ctx, t.c.Timeout)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	if t.c.TenantHeader != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, strings.ToLower(t.c.TenantHeader), tenant)
	}
	var resp []byte
	err := conn.Invoke(ctx, exportMethod, &body, &resp)
	if err == nil {
		return Result{Outcome: Accepted, Code: "OK", Rejected: rejected(resp)}
	}
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Aborted, codes.Canceled, codes.OutOfRange, codes.DataLoss:
		// What the upstream otlp exporter retries. A call cut by a killed
		// gateway ends Unavailable; the data may or may not have been kept.
		return Result{Outcome: Retryable, Code: st.Code().String(), Err: err}
	default:
		return Result{Outcome: Permanent, Code: st.Code().String(), Err: err}
	}
}

func (t *grpcTransport) Close() error {
	var errs []error
	for _, c := range t.conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// ---- OTLP/HTTP ----

type httpTransport struct {
	client *http.Client
	url    string
	c      TransportConfig
}

func newHTTP(c TransportConfig, tlsConf *tls.Config) *httpTransport {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: c.Conns * 4,
		MaxIdleConns:        c.Conns * 4,
		IdleConnTimeout:     90 * time.Second,
		TLSClientConfig:     tlsConf,
		ForceAttemptHTTP2:   false,
	}
	return &httpTransport{
		client: &http.Client{Transport: tr, Timeout: c.Timeout},
		url:    strings.TrimSuffix(c.Endpoint, "/") + "/v1/metrics",
		c:      c,
	}
}

func (t *httpTransport) Send(ctx context.Context, body []byte, token, tenant string) Result {
	var rd io.Reader = bytes.NewReader(body)
	if t.c.Gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(body)
		_ = zw.Close()
		rd = &buf
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, rd)
	if err != nil {
		return Result{Outcome: Permanent, Code: "request", Err: err}
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	if t.c.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if t.c.TenantHeader != "" {
		req.Header.Set(t.c.TenantHeader, tenant)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return Result{Outcome: Retryable, Code: "conn", Err: err}
	}
	respBody, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	code := fmt.Sprint(resp.StatusCode)
	switch {
	case resp.StatusCode/100 == 2:
		return Result{Outcome: Accepted, Code: code, Rejected: rejected(respBody)}
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusBadGateway, resp.StatusCode == http.StatusServiceUnavailable, resp.StatusCode == http.StatusGatewayTimeout:
		return Result{Outcome: Retryable, Code: code, Err: fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(respBody))}
	default:
		return Result{Outcome: Permanent, Code: code, Err: fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(respBody))}
	}
}

func (t *httpTransport) Close() error {
	t.client.CloseIdleConnections()
	return nil
}

// rejected reads partial_success.rejected_data_points from an export response.
func rejected(resp []byte) int {
	if len(resp) == 0 {
		return 0
	}
	r := pmetricotlp.NewExportResponse()
	if err := r.UnmarshalProto(resp); err != nil {
		return 0
	}
	return int(r.PartialSuccess().RejectedDataPoints())
}
