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
// tenant of its key. What a request can hold is bounded at every step: its
// key is checked from the headers alone; its body is read only once the
// tenant has a query slot, and within the listener's read_timeout; its
// answer takes memory from the tenant's answer budget; and it is answered
// (with a 504 at worst) before the listener's write_timeout cuts it.
func (s *queryServer) serveAPI(w http.ResponseWriter, r *http.Request, ep *endpoint, storePath string) {
	start := time.Now()
	ctx := r.Context()
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		s.tel.refuse(ctx, "", "method")
		writeAPIError(w, http.StatusMethodNotAllowed, "bad_data", "method "+r.Method+" not allowed: GET or POST")
		return
	}
	if ep.events && s.eventsClient == nil {
		s.tel.refuse(ctx, "", "not_allowed")
		writeAPIError(w, http.StatusNotFound, "not_found", "GPU events are not served here (tenant_query.events.endpoint is not set)")
		return
	}
	cred, via, result := s.identify(r)
	if result != authOK {
		s.refuseUnidentified(w, r, ep.name, via, result)
		return
	}
	tenant := cred.Tenant
	s.keyUsed(cred, start)
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

	// Everything below ends before the write timeout, with an answer.
	deadline := start.Add(s.cfg.ServerConfig.WriteTimeout - writeMargin)
	ctx, cancelAll := context.WithDeadline(ctx, deadline)
	defer cancelAll()
	release, stopClock, refused := s.limits.admit(ctx, tenant)
	if refused != nil {
		s.tel.refuse(ctx, tenant, refused.reason)
		audit(http.StatusTooManyRequests, 0, 0, refused.reason)
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(refused.retryAfter.Seconds()))))
		writeAPIError(w, http.StatusTooManyRequests, "too_many_requests", "over this tenant's query "+
			map[string]string{"rate_limited": "rate", "concurrency": "concurrency", "store_time": "store time"}[refused.reason]+" limit; retry later")
		return
	}
	defer release()

	sent, status, err := readParams(r)
	if err != nil {
		s.tel.refuse(ctx, tenant, "bad_request")
		audit(status, 0, 0, "bad_request")
		writeAPIError(w, status, "bad_data", err.Error())
		return
	}
	limits := s.cfg.Limits
	if ep.events {
		limits.MaxSeries = s.cfg.Events.MaxRecords
	}
	params, dropped, err := scopeParams(ep, sent, limits)
	if err != nil {
		s.tel.refuse(ctx, tenant, "bad_request")
		audit(http.StatusBadRequest, 0, dropped, "bad_request")
		writeAPIError(w, http.StatusBadRequest, "bad_data", err.Error())
		return
	}
	// The query runs for what is left of the request's time, its own
	// timeout at most; the store is told a little less, so that its own
	// timeout answer comes back before this one gives up.
	timeout := min(limits.QueryTimeout, time.Until(deadline)-queryTimeoutGrace).Truncate(time.Millisecond)
	if timeout < 100*time.Millisecond {
		s.tel.refuse(ctx, tenant, "timeout")
		audit(http.StatusGatewayTimeout, 0, dropped, "timeout")
		writeAPIError(w, http.StatusGatewayTimeout, "timeout", "the request spent its time waiting for a query slot and for its body")
		return
	}
	if ep.events {
		params.Del("timeout")
	} else {
		if t, _ := parsePromDuration(params.Get("timeout")); t > timeout {
			params.Set("timeout", formatSeconds(timeout))
		}
		if ep.matchScoped && len(params["match[]"]) == 0 && s.cfg.Store.TenantLabel != "" {
			// Defence in depth: the store scopes label APIs with
			// extra_label, unless it runs with
			// -search.ignoreExtraFiltersAtLabelsAPI; this selector holds
			// them to the tenant's series either way.
			params.Set("match[]", "{"+s.cfg.Store.TenantLabel+"="+strconv.Quote(tenant)+"}")
		}
	}
	qctx, cancel := context.WithTimeout(ctx, timeout+queryTimeoutGrace)
	defer cancel()
	ans, err := s.forward(qctx, ep, r.Method, storePath, tenant, params)
	stopClock()
	epAttr := s.tel.tenancy.With(tenant, attribute.String("endpoint", ep.name))
	s.tel.duration.Record(ctx, time.Since(start).Seconds(), metric.WithAttributeSet(attribute.NewSet(attribute.String("endpoint", ep.name))))
	if err != nil {
		var mem errAnswerMemory
		if errors.As(err, &mem) {
			s.tel.refuse(ctx, tenant, "answer_memory")
			audit(http.StatusServiceUnavailable, 0, dropped, "answer_memory")
			w.Header().Set("Retry-After", "1")
			writeAPIError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		s.tel.errors.Add(ctx, 1, epAttr)
		status := http.StatusBadGateway
		msg := "the store did not answer"
		switch {
		case errors.Is(err, errTooLarge):
			msg = err.Error()
		case errors.Is(qctx.Err(), context.DeadlineExceeded):
			status, msg = http.StatusGatewayTimeout, "the query ran past its time (limits.query_timeout, or what the request had left)"
		}
		s.logger.Warn("store request failed", zap.String("tenant", tenant), zap.String("endpoint", ep.name), zap.Error(err))
		audit(status, 0, dropped, "store_error")
		writeAPIError(w, status, "unavailable", msg)
		return
	}
	defer ans.release()
	s.tel.queries.Add(ctx, 1, s.tel.tenancy.With(tenant, attribute.String("endpoint", ep.name), attribute.Int("status", ans.status)))
	if ans.status >= 500 {
		s.tel.errors.Add(ctx, 1, epAttr)
	}
	counts := answerCounts{}
	if ans.status == http.StatusOK {
		counts = ans.counts
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
	ans.body.writeTo(w)
	audit(ans.status, counts.series, dropped, "")
}

// refuseUnidentified answers a request without a valid read key: 401, or
// 429 once its address has failed failure_limit.per_minute times this
// minute. Only failures count, and a valid key is checked before the
// throttle: a team behind the same NAT as a guesser keeps working. The
// challenge names Bearer, never Basic: a Basic challenge would have a
// browser ask for the key and then send it with every request, like a
// cookie without SameSite.
func (s *queryServer) refuseUnidentified(w http.ResponseWriter, r *http.Request, what, via string, result authResult) {
	ctx := r.Context()
	source := sourceOf(r)
	if result == authUnavailable {
		s.tel.refuse(ctx, "", string(result))
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(s.cfg.ReloadInterval.Seconds()))))
		writeAPIError(w, http.StatusServiceUnavailable, "unavailable", "the gateway cannot check keys now; retry later")
		return
	}
	if result != authMissing {
		if retry, blocked := s.failures.Blocked(source); blocked {
			s.tel.refuse(ctx, "", "throttled")
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retry.Seconds()))))
			writeAPIError(w, http.StatusTooManyRequests, "too_many_requests", "too many failed keys from this address; retry later")
			return
		}
		s.failures.Fail(source)
	}
	s.tel.refuse(ctx, "", string(result))
	if s.anonLog.Allow() {
		s.logger.Info("query refused", zap.String("path", what), zap.String("reason", string(result)),
			zap.String("via", via), zap.String("source", source))
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="otelcol-gpu"`)
	writeAPIError(w, http.StatusUnauthorized, "unauthorized", "a read API key is required (Authorization: Bearer <key>, or basic auth with the key as password)")
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
