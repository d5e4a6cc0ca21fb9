package tenantalertsextension

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// APIPrefix is where tenant_query serves this extension's tenant API.
const APIPrefix = "/alerting/v1/"

// maxAPIBody bounds a rule, receiver or silence sent by a tenant.
const maxAPIBody = 64 << 10

// apiTimeout bounds a tenant's call, the engines' reload included.
const apiTimeout = 30 * time.Second

// errNotFound answers 404.
var errNotFound = errors.New("not found")

// badRequest is a tenant's mistake, answered 400 with what was wrong.
type badRequest struct{ err error }

func (b badRequest) Error() string { return b.err.Error() }

func bad(format string, args ...any) error { return badRequest{fmt.Errorf(format, args...)} }

// ServeTenantAlerts answers a tenant's call to the alerting API. The
// caller (tenant_query) has identified the tenant from its read key and
// checked the call's origin; who names the key, for the audit log and a
// silence's creator.
//
//	GET    /alerting/v1/rules               the default pack, the tenant's rules, what vmalert says of each
//	PUT    /alerting/v1/rules/<name>        set a rule: {"expr", "for", "keep_firing_for", "labels", "annotations"}
//	DELETE /alerting/v1/rules/<name>
//	GET    /alerting/v1/receivers           (no secrets)
//	PUT    /alerting/v1/receivers/<name>    {"type": "webhook"|"slack", "url"}: a webhook's answer has its signing secret, once
//	DELETE /alerting/v1/receivers/<name>
//	GET    /alerting/v1/alerts              the tenant's alerts in Alertmanager (firing, silenced)
//	GET    /alerting/v1/silences
//	POST   /alerting/v1/silences            {"matchers": [...], "duration": "2h", "comment"}
//	DELETE /alerting/v1/silences/<id>
func (s *alertsServer) ServeTenantAlerts(w http.ResponseWriter, r *http.Request, tenant, who string) {
	// A client that hangs up does not stop a change half-way: the engines'
	// verdict on it is still read, and a refused change still undone.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), apiTimeout)
	defer cancel()
	rest := strings.TrimPrefix(r.URL.EscapedPath(), strings.TrimSuffix(APIPrefix, "/"))
	rest = strings.TrimPrefix(rest, "/")
	collection, item, hasItem := strings.Cut(rest, "/")
	if hasItem {
		var err error
		if item, err = url.PathUnescape(item); err != nil || item == "" || strings.Contains(item, "/") {
			writeError(w, http.StatusNotFound, "not_found", "no such item")
			return
		}
	}
	what := strings.TrimSuffix(collection, "s")
	var data any
	var err error
	method := r.Method
	switch {
	case collection == "rules" && !hasItem && method == http.MethodGet:
		data, err = s.listRules(ctx, tenant)
	case collection == "rules" && hasItem && method == http.MethodPut:
		data, err = s.putRule(ctx, r, tenant, item)
	case collection == "rules" && hasItem && method == http.MethodDelete:
		data, err = nil, s.deleteRule(ctx, tenant, item)
	case collection == "receivers" && !hasItem && method == http.MethodGet:
		data, err = s.listReceivers(tenant)
	case collection == "receivers" && hasItem && method == http.MethodPut:
		data, err = s.putReceiver(ctx, r, tenant, item)
	case collection == "receivers" && hasItem && method == http.MethodDelete:
		data, err = nil, s.deleteReceiver(ctx, tenant, item)
	case collection == "alerts" && !hasItem && method == http.MethodGet:
		data, err = s.listAlerts(ctx, tenant)
	case collection == "silences" && !hasItem && method == http.MethodGet:
		data, err = s.engines.silences(ctx, tenant)
	case collection == "silences" && !hasItem && method == http.MethodPost:
		data, err = s.createSilence(ctx, r, tenant, who)
	case collection == "silences" && hasItem && method == http.MethodDelete:
		data, err = nil, s.expireSilence(ctx, tenant, item)
	case slices.Contains([]string{"rules", "receivers", "alerts", "silences"}, collection):
		writeError(w, http.StatusMethodNotAllowed, "bad_data", "method "+method+" not allowed on "+r.URL.Path)
		return
	default:
		writeError(w, http.StatusNotFound, "not_found", "the alerting API serves rules, receivers, alerts and silences under "+APIPrefix)
		return
	}
	if method != http.MethodGet {
		s.tel.changed(ctx, tenant, what, err == nil)
		fields := []zap.Field{zap.String("tenant", tenant), zap.String("key_id", who), zap.String("method", method),
			zap.String("what", what), zap.String("name", item)}
		if err != nil {
			fields = append(fields, zap.Error(err))
		}
		s.logger.Info("alerting change", fields...)
	}
	var br badRequest
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": data})
	case errors.As(err, &br):
		writeError(w, http.StatusBadRequest, "bad_data", br.Error())
	case errors.Is(err, errNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	default:
		s.logger.Error("alerting API: the engines failed", zap.String("tenant", tenant), zap.Error(err))
		writeError(w, http.StatusBadGateway, "unavailable", "the alerting engines did not answer; retry later")
	}
}

// decodeBody reads a JSON body, refusing fields this API does not know:
// a tenant cannot slip a group's params, headers or datasource in.
func decodeBody(r *http.Request, v any) error {
	if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != "application/json" {
		return bad("Content-Type: application/json expected")
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxAPIBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bad("body: %v", err)
	}
	if dec.More() {
		return bad("body: one JSON object expected")
	}
	return nil
}

type rulesAnswer struct {
	Pack        []PackRule               `json:"pack"`
	Rules       []Rule                   `json:"rules"`
	Engine      map[string][]vmRuleState `json:"engine,omitempty"`
	EngineError string                   `json:"engine_error,omitempty"`
	Limits      map[string]any           `json:"limits"`
}

func (s *alertsServer) listRules(ctx context.Context, tenant string) (any, error) {
	st, err := s.state.load(tenant)
	if err != nil {
		return nil, err
	}
	a := rulesAnswer{Pack: s.pack, Rules: st.Rules, Limits: map[string]any{
		"max_rules": s.cfg.Limits.MaxRules, "evaluation_interval": s.cfg.EvaluationInterval.String(),
		"max_for": s.cfg.Limits.MaxFor.String(), "max_series_per_rule": s.cfg.Limits.MaxSeriesPerRule,
		"max_expr_bytes": s.cfg.Limits.MaxExprBytes,
	}}
	if a.Rules == nil {
		a.Rules = []Rule{}
	}
	if a.Engine, err = s.engines.ruleStates(ctx, tenant); err != nil {
		a.EngineError = "vmalert did not answer; the rules are as set"
	}
	return a, nil
}

func (s *alertsServer) ruleLimits() ruleLimits {
	return ruleLimits{maxExprBytes: s.cfg.Limits.MaxExprBytes, maxFor: s.cfg.Limits.MaxFor, tenantLabel: s.cfg.TenantLabel}
}

func (s *alertsServer) putRule(ctx context.Context, r *http.Request, tenant, name string) (any, error) {
	var body struct {
		Expr          string            `json:"expr"`
		For           Duration          `json:"for"`
		KeepFiringFor Duration          `json:"keep_firing_for"`
		Labels        map[string]string `json:"labels"`
		Annotations   map[string]string `json:"annotations"`
	}
	if err := decodeBody(r, &body); err != nil {
		return nil, err
	}
	rule := Rule{Name: name, Expr: body.Expr, For: body.For, KeepFiringFor: body.KeepFiringFor, Labels: body.Labels, Annotations: body.Annotations}
	if err := rule.validate(s.ruleLimits()); err != nil {
		return nil, badRequest{err}
	}
	for _, p := range s.pack {
		if p.Name == name {
			return nil, bad("name: %s is a rule of the default pack; pick another name", name)
		}
	}
	err := s.apply(ctx, tenant, func(st *tenantState) error {
		i := slices.IndexFunc(st.Rules, func(x Rule) bool { return x.Name == name })
		switch {
		case i >= 0:
			st.Rules[i] = rule
		case len(st.Rules) >= s.cfg.Limits.MaxRules:
			return bad("rules: this tenant has %d, the most it may have", s.cfg.Limits.MaxRules)
		default:
			st.Rules = append(st.Rules, rule)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rule, nil
}

func (s *alertsServer) deleteRule(ctx context.Context, tenant, name string) error {
	return s.apply(ctx, tenant, func(st *tenantState) error {
		i := slices.IndexFunc(st.Rules, func(x Rule) bool { return x.Name == name })
		if i < 0 {
			return fmt.Errorf("rule %s: %w", name, errNotFound)
		}
		st.Rules = slices.Delete(st.Rules, i, i+1)
		return nil
	})
}

// apply makes a change to a tenant's state and has the engines take it.
// Should an engine refuse the files (vmalert refuses every tenant's when
// one does not load), the tenant's state is put back as it was, the
// engines are given the files they had, and the tenant is told: one
// tenant's rule can never stop the others' from changing. A change whose
// reload merely failed (an engine down) stays, and is reloaded at the next
// reload_interval.
func (s *alertsServer) apply(ctx context.Context, tenant string, change func(*tenantState) error) error {
	var before []byte
	err := s.state.update(tenant, func(st *tenantState) error {
		var err error
		if before, err = json.Marshal(st); err != nil {
			return err
		}
		return change(st)
	})
	if err != nil {
		return err
	}
	err = s.sync(ctx)
	if !errors.Is(err, errEngineRefused) {
		if err != nil {
			s.logger.Warn("alerting change stored; the engines will take it at the next reload", zap.String("tenant", tenant), zap.Error(err))
		}
		return nil
	}
	s.logger.Error("alerting change refused by an engine and undone", zap.String("tenant", tenant), zap.Error(err))
	if uerr := s.state.update(tenant, func(st *tenantState) error {
		*st = tenantState{}
		return json.Unmarshal(before, st)
	}); uerr != nil {
		return fmt.Errorf("undoing a refused change: %w", uerr)
	}
	if serr := s.sync(ctx); serr != nil {
		s.logger.Error("alerting: reloading the engines after undoing a refused change failed", zap.String("tenant", tenant), zap.Error(serr))
	}
	return bad("the alerting engine refused the change, so it was not made: %v", err)
}

// receiverView is a receiver as listed: no secret, and a Slack URL (a
// secret itself) by host only.
type receiverView struct {
	Name    string    `json:"name"`
	Type    string    `json:"type"`
	URL     string    `json:"url"`
	Created time.Time `json:"created"`
	Secret  string    `json:"secret,omitempty"`
}

func viewOf(r Receiver) receiverView {
	v := receiverView{Name: r.Name, Type: r.Type, URL: r.URL, Created: r.Created}
	if r.Type == receiverSlack {
		if u, err := url.Parse(r.URL); err == nil {
			v.URL = u.Scheme + "://" + u.Host + "/..."
		}
	}
	return v
}

func (s *alertsServer) listReceivers(tenant string) (any, error) {
	st, err := s.state.load(tenant)
	if err != nil {
		return nil, err
	}
	out := make([]receiverView, 0, len(st.Receivers))
	for _, r := range st.Receivers {
		out = append(out, viewOf(r))
	}
	return out, nil
}

func (s *alertsServer) putReceiver(ctx context.Context, r *http.Request, tenant, name string) (any, error) {
	var body struct {
		Type string `json:"type"`
		URL  string `json:"url"`
	}
	if err := decodeBody(r, &body); err != nil {
		return nil, err
	}
	if len(name) > maxNameLen || !ruleName.MatchString(name) {
		return nil, bad("name: %q must be a letter then letters, digits or _, at most %d", name, maxNameLen)
	}
	if body.Type == "" {
		body.Type = receiverWebhook
	}
	if body.Type != receiverWebhook && body.Type != receiverSlack {
		return nil, bad("type: %q is not webhook or slack", body.Type)
	}
	if err := s.out.CheckURL(ctx, body.URL); err != nil {
		return nil, bad("url: %v", err)
	}
	rcv := Receiver{Name: name, Type: body.Type, URL: body.URL, Created: time.Now().UTC()}
	if rcv.Type == receiverWebhook {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		rcv.Secret = hex.EncodeToString(b)
	}
	err := s.apply(ctx, tenant, func(st *tenantState) error {
		i := slices.IndexFunc(st.Receivers, func(x Receiver) bool { return x.Name == name })
		switch {
		case i >= 0:
			st.Receivers[i] = rcv
		case len(st.Receivers) >= s.cfg.Limits.MaxReceivers:
			return bad("receivers: this tenant has %d, the most it may have", s.cfg.Limits.MaxReceivers)
		default:
			st.Receivers = append(st.Receivers, rcv)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	v := viewOf(rcv)
	v.Secret = rcv.Secret
	return v, nil
}

func (s *alertsServer) deleteReceiver(ctx context.Context, tenant, name string) error {
	return s.apply(ctx, tenant, func(st *tenantState) error {
		i := slices.IndexFunc(st.Receivers, func(x Receiver) bool { return x.Name == name })
		if i < 0 {
			return fmt.Errorf("receiver %s: %w", name, errNotFound)
		}
		st.Receivers = slices.Delete(st.Receivers, i, i+1)
		return nil
	})
}

// alertView is an alert as a tenant sees it (no engine links).
type alertView struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	State       string            `json:"state"`
	SilencedBy  []string          `json:"silencedBy"`
	Fingerprint string            `json:"fingerprint"`
}

func (s *alertsServer) listAlerts(ctx context.Context, tenant string) (any, error) {
	all, err := s.engines.alerts(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := make([]alertView, 0, len(all))
	for _, a := range all {
		out = append(out, alertView{Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.StartsAt,
			State: a.Status.State, SilencedBy: a.Status.SilencedBy, Fingerprint: a.Fingerprint})
	}
	return out, nil
}

// matcherName takes the alerts' label names, dots included.
var matcherName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

const maxMatchers = 8

func (s *alertsServer) createSilence(ctx context.Context, r *http.Request, tenant, who string) (any, error) {
	var body struct {
		Matchers []Matcher `json:"matchers"`
		Duration Duration  `json:"duration"`
		Comment  string    `json:"comment"`
	}
	if err := decodeBody(r, &body); err != nil {
		return nil, err
	}
	if len(body.Matchers) == 0 || len(body.Matchers) > maxMatchers {
		return nil, bad("matchers: 1 to %d expected, got %d", maxMatchers, len(body.Matchers))
	}
	for i, m := range body.Matchers {
		switch {
		case !matcherName.MatchString(m.Name):
			return nil, bad("matchers[%d].name: %q is not a label name", i, m.Name)
		case m.Name == s.cfg.TenantLabel || m.Name == groupLabel:
			return nil, bad("matchers[%d].name: %s is set by the provider", i, m.Name)
		case len(m.Value) > maxLabelValueLen:
			return nil, bad("matchers[%d].value: at most %d bytes", i, maxLabelValueLen)
		case m.IsRegex:
			if _, err := regexp.Compile("^(?:" + m.Value + ")$"); err != nil {
				return nil, bad("matchers[%d].value: %v", i, err)
			}
		}
	}
	d := time.Duration(body.Duration)
	if d < time.Minute || d > s.cfg.Limits.MaxSilenceDuration {
		return nil, bad("duration: %s is outside 1m to %s", d, s.cfg.Limits.MaxSilenceDuration)
	}
	if len(body.Comment) > maxAnnotationLen {
		return nil, bad("comment: at most %d bytes", maxAnnotationLen)
	}
	now := time.Now().UTC()
	sil := amSilence{
		Matchers:  append(body.Matchers, ownerSilenceMatcher(tenant)),
		StartsAt:  now,
		EndsAt:    now.Add(d),
		CreatedBy: tenant + "/" + who,
		Comment:   body.Comment,
	}
	if sil.Comment == "" {
		sil.Comment = "silenced through the read path"
	}
	// Counted and made under the directory's lock, so replicas sharing it
	// cannot together go past the limit; expired silences count too (they
	// stay in Alertmanager for its retention), so making and expiring in a
	// loop cannot fill it either.
	var id string
	err := s.state.withLock(func() error {
		existing, err := s.engines.silences(ctx, tenant)
		if err != nil {
			return err
		}
		if len(existing) >= s.cfg.Limits.MaxSilences {
			return bad("silences: this tenant has %d (expired ones count until Alertmanager forgets them), the most it may have", len(existing))
		}
		id, err = s.engines.createSilence(ctx, sil)
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"id": id}, nil
}

func (s *alertsServer) expireSilence(ctx context.Context, tenant, id string) error {
	own, err := s.engines.silences(ctx, tenant)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(own, func(x amSilence) bool { return x.ID == id }) {
		return fmt.Errorf("silence %s: %w", id, errNotFound)
	}
	return s.engines.expireSilence(ctx, id)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, errType, msg string) {
	writeJSON(w, status, map[string]string{"status": "error", "errorType": errType, "error": msg})
}
