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
	"strings"

	"github.com/otelcol-gpu/otelcol-gpu/internal/tenanttemplate"
)

// storeAnswer is what the store said.
type storeAnswer struct {
	status      int
	contentType string
	body        []byte
}

// errTooLarge is an answer over store.max_response_bytes.
var errTooLarge = errors.New("the store's answer is larger than store.max_response_bytes")

// forward sends one scoped request to the store for tenant. The URL, the
// scope and the headers are built here from the config alone; nothing the
// client sent reaches the store but the allowlisted parameters.
func (s *queryServer) forward(ctx context.Context, method, path, tenant string, params url.Values) (*storeAnswer, error) {
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
	req.Header.Set("Accept", "application/json")
	for name, tmpl := range s.tmpl.headers {
		v, err := tmpl.Render(tenant, vars, func(v string) string { return v })
		if err != nil {
			return nil, err
		}
		req.Header.Set(name, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, s.cfg.Store.MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the store's answer: %w", err)
	}
	if int64(len(data)) > s.cfg.Store.MaxResponseBytes {
		return nil, errTooLarge
	}
	return &storeAnswer{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: data}, nil
}

// countSeries counts the series (or names, or values) in a successful
// answer, for the audit line: data.result for queries, data for the rest.
// -1 when the answer is not the API's JSON.
func countSeries(ep *endpoint, body []byte) int {
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if json.Unmarshal(body, &env) != nil || len(env.Data) == 0 {
		return -1
	}
	if ep.result {
		var d struct {
			Result []json.RawMessage `json:"result"`
		}
		if json.Unmarshal(env.Data, &d) != nil {
			return -1
		}
		return len(d.Result)
	}
	var d []json.RawMessage
	if json.Unmarshal(bytes.TrimSpace(env.Data), &d) != nil {
		return -1
	}
	return len(d)
}
