package tenantqueryextension

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
)

// maxFormBytes bounds a POSTed query form; a PromQL query is rarely more
// than a few KiB.
const maxFormBytes = 1 << 20

// queryTimeoutGrace is how much longer than the timeout it passes to the
// store the extension waits for the store's own answer (its timeout error).
const queryTimeoutGrace = 2 * time.Second

// serveAPI answers one request to an allowlisted read endpoint for the
// tenant of its key.
func (s *queryServer) serveAPI(w http.ResponseWriter, r *http.Request, ep *endpoint, storePath string) {
	start := time.Now()
	ctx := r.Context()
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		s.tel.refuse(ctx, "", "method")
		writeAPIError(w, http.StatusMethodNotAllowed, "bad_data", "method "+r.Method+" not allowed: GET or POST")
		return
	}
	cred, via, result := s.identify(r)
	if result != authOK {
		s.tel.refuse(ctx, "", string(result))
		if s.anonLog.Allow() {
			s.logger.Info("query refused", zap.String("path", ep.name), zap.String("reason", string(result)),
				zap.String("via", via), zap.String("source", sourceOf(r)))
		}
		if !fromPageScript(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="otelcol-gpu", charset="UTF-8"`)
		}
		writeAPIError(w, http.StatusUnauthorized, "unauthorized", "a read API key is required (Authorization: Bearer <key>, or basic auth with the key as password)")
		return
	}
	tenant := cred.Tenant
	audit := func(status, series, dropped int, reason string) {
		fields := []zap.Field{
			zap.String("tenant", tenant), zap.String("key_id", cred.ID), zap.String("via", via),
			zap.String("endpoint", ep.name), zap.String("path", storePath), zap.String("method", r.Method),
			zap.Int("status", status), zap.Duration("duration", time.Since(start)), zap.Int("series", series),
		}
		if dropped > 0 {
			fields = append(fields, zap.Int("dropped_params", dropped))
		}
		if reason != "" {
			fields = append(fields, zap.String("reason", reason))
		}
		s.logger.Info("query", fields...)
	}

	sent, status, err := readParams(r)
	if err != nil {
		s.tel.refuse(ctx, tenant, "bad_request")
		audit(status, 0, 0, "bad_request")
		writeAPIError(w, status, "bad_data", err.Error())
		return
	}
	params, dropped, err := scopeParams(ep, sent, s.cfg.Limits)
	if err != nil {
		s.tel.refuse(ctx, tenant, "bad_request")
		audit(http.StatusBadRequest, 0, dropped, "bad_request")
		writeAPIError(w, http.StatusBadRequest, "bad_data", err.Error())
		return
	}
	release, refused := s.limits.admit(ctx, tenant)
	if refused != nil {
		s.tel.refuse(ctx, tenant, refused.reason)
		audit(http.StatusTooManyRequests, 0, dropped, refused.reason)
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(refused.retryAfter.Seconds()))))
		writeAPIError(w, http.StatusTooManyRequests, "too_many_requests", "over this tenant's query "+
			map[string]string{"rate_limited": "rate", "concurrency": "concurrency"}[refused.reason]+" limit; retry later")
		return
	}
	defer release()

	qctx, cancel := context.WithTimeout(ctx, s.cfg.Limits.QueryTimeout+queryTimeoutGrace)
	defer cancel()
	ans, err := s.forward(qctx, r.Method, storePath, tenant, params)
	epAttr := metric.WithAttributeSet(attribute.NewSet(attribute.String("tenant", tenant), attribute.String("endpoint", ep.name)))
	s.tel.duration.Record(ctx, time.Since(start).Seconds(), metric.WithAttributeSet(attribute.NewSet(attribute.String("endpoint", ep.name))))
	if err != nil {
		s.tel.errors.Add(ctx, 1, epAttr)
		status := http.StatusBadGateway
		msg := "the store did not answer"
		switch {
		case errors.Is(err, errTooLarge):
			msg = err.Error()
		case errors.Is(qctx.Err(), context.DeadlineExceeded):
			status, msg = http.StatusGatewayTimeout, "the query ran past limits.query_timeout"
		}
		s.logger.Warn("store request failed", zap.String("tenant", tenant), zap.String("endpoint", ep.name), zap.Error(err))
		audit(status, 0, dropped, "store_error")
		writeAPIError(w, status, "unavailable", msg)
		return
	}
	s.tel.queries.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(attribute.String("tenant", tenant),
		attribute.String("endpoint", ep.name), attribute.Int("status", ans.status))))
	if ans.status >= 500 {
		s.tel.errors.Add(ctx, 1, epAttr)
	}
	counts := answerCounts{}
	if ans.status == http.StatusOK {
		counts = scanAnswer(ep, ans.body)
		// The event is kept before the answer goes out: no read is served
		// that a crash could leave unbilled.
		if s.usage != nil {
			if err := s.usage.record(tenant, cred.ID, ep.name, counts); err != nil {
				s.tel.refuse(ctx, tenant, "usage_unrecorded")
				audit(http.StatusServiceUnavailable, counts.series, dropped, "usage_unrecorded")
				writeAPIError(w, http.StatusServiceUnavailable, "unavailable",
					"the gateway cannot record this query for billing (its usage log is full or failing), so it does not answer it; retry later")
				return
			}
		}
	}
	if ans.contentType != "" {
		w.Header().Set("Content-Type", ans.contentType)
	}
	w.WriteHeader(ans.status)
	_, _ = w.Write(ans.body)
	audit(ans.status, counts.series, dropped, "")
}

// fromPageScript says a request was made by a page's script (fetch, XHR):
// a basic-auth challenge to it would pop a password dialog over vmui for
// every panel once its session ended. Clients and navigations get it.
func fromPageScript(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Mode") {
	case "cors", "same-origin", "no-cors":
		return true
	}
	return false
}

// readParams decodes what the client sent: the URL query and, for POST, an
// urlencoded form body (body values first, as net/http orders them). A
// malformed encoding is an error, never a silently shortened parameter list.
func readParams(r *http.Request) (url.Values, int, error) {
	sent, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("query string: %w", err)
	}
	if r.Method != http.MethodPost {
		return sent, 0, nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/x-www-form-urlencoded" {
			return nil, http.StatusUnsupportedMediaType, fmt.Errorf("content type %q: send an application/x-www-form-urlencoded form", ct)
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxFormBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("form body over %d bytes", maxFormBytes)
		}
		return nil, http.StatusBadRequest, fmt.Errorf("reading the form body: %w", err)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("form body: %w", err)
	}
	for name, values := range sent {
		form[name] = append(form[name], values...)
	}
	return form, 0, nil
}

// writeAPIError answers in the Prometheus API's error shape.
func writeAPIError(w http.ResponseWriter, status int, errorType, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
	}{"error", errorType, msg})
}
