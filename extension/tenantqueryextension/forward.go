package tenantqueryextension

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/otelcol-gpu/otelcol-gpu/internal/tenanttemplate"
)

// storeAnswer is what the store said. Its body's bytes are taken from the
// answer budget until release.
type storeAnswer struct {
	status      int
	contentType string
	body        []byte
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
	data, release, err := s.readAnswer(resp, tenant)
	if err != nil {
		return nil, err
	}
	return &storeAnswer{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: data, release: release}, nil
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

// readAnswer reads an answer into memory under store.max_response_bytes
// and the answer budget, taking the budget's bytes as the answer grows.
// release gives them back; it is set whenever err is nil.
func (s *queryServer) readAnswer(resp *http.Response, tenant string) ([]byte, func(), error) {
	maxBytes := s.cfg.Store.MaxResponseBytes
	var held int64
	release := func() { s.answers.give(tenant, held) }
	grow := func(n int64) error {
		if ok, tenantFull := s.answers.take(tenant, n); !ok {
			return errAnswerMemory{tenantFull: tenantFull}
		}
		held += n
		return nil
	}
	size := int64(answerChunk)
	if cl := resp.ContentLength; cl > maxBytes {
		return nil, nil, errTooLarge
	} else if cl >= 0 {
		size = cl + 1 // the +1 reads the EOF without growing
	}
	if err := grow(size); err != nil {
		return nil, nil, err
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			next := min(int64(cap(buf))*2, maxBytes+1)
			if int64(cap(buf)) >= next {
				release()
				return nil, nil, errTooLarge
			}
			if err := grow(next - int64(cap(buf))); err != nil {
				release()
				return nil, nil, err
			}
			nb := make([]byte, len(buf), next)
			copy(nb, buf)
			buf = nb
		}
		n, err := resp.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > maxBytes {
			release()
			return nil, nil, errTooLarge
		}
		if errors.Is(err, io.EOF) {
			return buf, release, nil
		}
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("reading the store's answer: %w", err)
		}
	}
}

// answerChunk is the first buffer of an answer of unknown length.
const answerChunk = 32 << 10

// answerCounts is what a successful answer says about its query's size.
type answerCounts struct {
	// series counts the series (or names, or values) in the answer; -1
	// when the answer is not shaped like the API's JSON.
	series int
	// seriesFetched and execMS are VictoriaMetrics' stats on query and
	// query_range ("stats":{"seriesFetched":"N","executionTimeMsec":M}):
	// the series the store read and the milliseconds it worked. 0 when
	// absent (other endpoints, other stores).
	seriesFetched, execMS int64
}

// scanAnswer reads a successful answer's counts: the elements of
// data.result for queries, of data for the rest, the records of an events
// query, the values or hits of the other events endpoints, and the stats. It scans
// the answer once without decoding or keeping anything (encoding/json took
// ~130 us for a dashboard panel's answer).
func scanAnswer(ep *endpoint, body []byte) answerCounts {
	switch {
	case ep.count == "lines":
		n := bytes.Count(body, []byte{'\n'})
		if len(body) > 0 && body[len(body)-1] != '\n' {
			n++
		}
		return answerCounts{series: n}
	case ep.count != "":
		return scanCounts(body, ep.count)
	case ep.result || ep.events:
		return scanCounts(body, "data", "result")
	}
	return scanCounts(body, "data")
}

// scanCounts counts the elements of the array at path (object keys from the
// root object) and reads the root's stats. It assumes well-formed JSON (the
// store's answer) and only tracks nesting, strings and keys.
func scanCounts(body []byte, path ...string) answerCounts {
	type frame struct {
		obj   bool
		match bool // the keys from the root down to this container are path's
		stats bool // the root's "stats" object
	}
	var stack [16]frame
	var out answerCounts
	bad := answerCounts{series: -1}
	depth := 0 // containers open
	expectKey := false
	key := []byte(nil)
	found := false
	inTarget := func() bool {
		return depth == len(path)+1 && !stack[depth-1].obj && stack[depth-1].match
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch c {
		case ' ', '\t', '\n', '\r', ':':
			continue
		case ',':
			if depth > 0 && stack[depth-1].obj {
				expectKey = true
			}
			continue
		case '}', ']':
			if depth == 0 {
				return bad
			}
			depth--
			expectKey = false
			continue
		}
		if expectKey {
			if c != '"' {
				return bad
			}
			end := stringEnd(body, i)
			if end < 0 {
				return bad
			}
			key, i, expectKey = body[i+1:end], end, false
			continue
		}
		// A value starts here.
		if inTarget() {
			out.series++
		}
		var stat *int64
		if depth == 2 && stack[1].stats {
			switch string(key) {
			case "seriesFetched":
				stat = &out.seriesFetched
			case "executionTimeMsec":
				stat = &out.execMS
			}
		}
		switch c {
		case '{', '[':
			if depth == len(stack) {
				return bad
			}
			match := depth == 0 || (stack[depth-1].match && stack[depth-1].obj && depth <= len(path) && string(key) == path[depth-1])
			stats := c == '{' && depth == 1 && stack[0].obj && string(key) == "stats"
			stack[depth] = frame{obj: c == '{', match: match, stats: stats}
			depth++
			expectKey = c == '{'
			if inTarget() {
				found = true
			}
		case '"':
			end := stringEnd(body, i)
			if end < 0 {
				return bad
			}
			if stat != nil { // seriesFetched is a string
				*stat = parseCount(body[i+1 : end])
			}
			i = end
		default: // a number, true, false, null: up to the next delimiter
			start := i
			for i+1 < len(body) && !delimiter[body[i+1]] {
				i++
			}
			if stat != nil {
				*stat = parseCount(body[start : i+1])
			}
		}
	}
	if !found || depth != 0 {
		return bad
	}
	return out
}

// parseCount reads a stat: a non-negative integer, else 0.
func parseCount(b []byte) int64 {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// stringEnd is the index of the quote closing the string opening at i.
func stringEnd(b []byte, i int) int {
	j := i + 1
	for j < len(b) {
		k := bytes.IndexAny(b[j:], `"\`)
		if k < 0 {
			return -1
		}
		j += k
		if b[j] == '"' {
			return j
		}
		j += 2 // an escaped character
	}
	return -1
}

// delimiter marks the bytes that end a number or literal.
var delimiter = func() (d [256]bool) {
	for _, c := range []byte(",]} \t\n\r") {
		d[c] = true
	}
	return d
}()
