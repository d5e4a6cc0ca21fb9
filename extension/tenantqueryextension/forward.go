package tenantqueryextension

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/otelcol-gpu/otelcol-gpu/internal/tenanttemplate"
)

// storeAnswer is what the store said. Its body's bytes are taken from the
// answer budget until release.
type storeAnswer struct {
	status      int
	contentType string
	body        answerBody
	counts      answerCounts // what the body says, when status is 200
	release     func()
}

// errTooLarge is an answer over store.max_response_bytes.
var errTooLarge = errors.New("the store's answer is larger than store.max_response_bytes")

// errAnswerMemory is an answer the answer budget has no room for.
type errAnswerMemory struct{ tenantFull bool }

func (e errAnswerMemory) Error() string {
	if e.tenantFull {
		return "this tenant's answers in flight hold limits.max_answer_bytes already; retry when they are done"
	}
	return "the gateway holds limits.max_answer_bytes_total of answers already; retry shortly"
}

// forward sends one scoped request to the store for tenant: the metrics
// store, or the event store for the events endpoints. The URL, the scope
// and the headers are built here from the config alone; nothing the client
// sent reaches the store but the allowlisted parameters.
func (s *queryServer) forward(ctx context.Context, ep *endpoint, method, path, tenant string, params url.Values) (*storeAnswer, error) {
	var req *http.Request
	var client *http.Client
	var err error
	if ep.events {
		req, err = s.eventsRequest(ctx, method, path, tenant, params)
		client = s.eventsClient
	} else {
		req, err = s.metricsRequest(ctx, method, path, tenant, params)
		client = s.client
	}
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	sc := newAnswerScanner(ep)
	body, release, err := s.readAnswer(resp, tenant, sc)
	if err != nil {
		return nil, err
	}
	return &storeAnswer{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: body, counts: sc.counts(), release: release}, nil
}

// metricsRequest is a request to the metrics store, scoped by its
// extra_label, endpoint or headers (store.*).
func (s *queryServer) metricsRequest(ctx context.Context, method, path, tenant string, params url.Values) (*http.Request, error) {
	vars := s.cfg.Store.Tenants[tenant]
	base, err := tenanttemplate.RenderURL(s.tmpl.endpoint, tenant, vars)
	if err != nil {
		return nil, err
	}
	var body io.Reader
	target := base + path + "?"
	if method == http.MethodPost {
		target += scopeQuery(nil, s.cfg.Store.TenantLabel, tenant)
		body = strings.NewReader(params.Encode())
	} else {
		target += scopeQuery(params, s.cfg.Store.TenantLabel, tenant)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(target, "?"), body)
	if err != nil {
		return nil, err
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for name, tmpl := range s.tmpl.headers {
		v, err := tmpl.Render(tenant, vars, func(v string) string { return v })
		if err != nil {
			return nil, err
		}
		req.Header.Set(name, v)
	}
	return req, nil
}

// eventsRequest is a request to the event store: the parameters (in the
// URL, or in the body as the client sent them) and, in the URL, alone of
// its name, extra_filters holding the
// query to records whose tenant field is the tenant (the store ANDs it with
// the query and every subquery). The store's tenant (AccountID, ProjectID)
// comes from events.headers, which the client applies to every request.
func (s *queryServer) eventsRequest(ctx context.Context, method, path, tenant string, params url.Values) (*http.Request, error) {
	scope, err := json.Marshal(map[string]string{s.cfg.Events.TenantField: tenant})
	if err != nil {
		return nil, err
	}
	scopeQ := url.Values{"extra_filters": {string(scope)}}.Encode()
	target := strings.TrimSuffix(s.cfg.Events.ClientConfig.Endpoint, "/") + path + "?"
	if method == http.MethodPost {
		req, err := http.NewRequestWithContext(ctx, method, target+scopeQ, strings.NewReader(params.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		return req, err
	}
	if q := params.Encode(); q != "" {
		target += q + "&"
	}
	return http.NewRequestWithContext(ctx, method, target+scopeQ, http.NoBody)
}

// answerBody is an answer held in pooled chunks: no answer is copied or
// grown, so what an answer holds is its chunks and nothing left behind
// for the collector.
type answerBody [][]byte

// answerChunkSize is one chunk of an answer. A dashboard panel's answer
// (a few KiB) takes one; a 40 MB answer 640.
const answerChunkSize = 64 << 10

var answerChunks = sync.Pool{New: func() any { return new([answerChunkSize]byte) }}

// writeTo writes the answer to w.
func (b answerBody) writeTo(w io.Writer) {
	for _, c := range b {
		if _, err := w.Write(c); err != nil {
			return
		}
	}
}

// free gives the chunks back to the pool.
func (b answerBody) free() {
	for _, c := range b {
		answerChunks.Put((*[answerChunkSize]byte)(c[:answerChunkSize]))
	}
}

// readAnswer reads an answer into pooled chunks under
// store.max_response_bytes and the answer budget, taking a chunk's bytes
// from the budget before it is filled, and feeds each piece to sc as it
// arrives. release gives the chunks and their bytes back; it is set
// whenever err is nil.
func (s *queryServer) readAnswer(resp *http.Response, tenant string, sc *answerScanner) (answerBody, func(), error) {
	maxBytes := s.cfg.Store.MaxResponseBytes
	if resp.ContentLength > maxBytes {
		return nil, nil, errTooLarge
	}
	var body answerBody
	var size int64
	release := func() {
		body.free()
		s.answers.give(tenant, int64(len(body))*answerChunkSize)
	}
	for {
		if ok, tenantFull := s.answers.take(tenant, answerChunkSize); !ok {
			release()
			return nil, nil, errAnswerMemory{tenantFull: tenantFull}
		}
		chunk := answerChunks.Get().(*[answerChunkSize]byte)[:]
		n, err := fill(resp.Body, chunk)
		body = append(body, chunk[:n])
		size += int64(n)
		sc.feed(chunk[:n])
		if size > maxBytes {
			release()
			return nil, nil, errTooLarge
		}
		if errors.Is(err, io.EOF) {
			return body, release, nil
		}
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("reading the store's answer: %w", err)
		}
	}
}

// fill reads into p until it is full or the reader ends: io.EOF only at
// the answer's end (a body cut short is io.ErrUnexpectedEOF, an error).
func fill(r io.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
