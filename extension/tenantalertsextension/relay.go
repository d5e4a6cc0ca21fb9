package tenantalertsextension

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/otelcol-gpu/otelcol-gpu/internal/outbound"
	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
)

// maxRelayBody bounds a notification Alertmanager hands over.
const maxRelayBody = 4 << 20

// AlertGroup is what a notification says of its alert group, in
// Alertmanager's webhook body and in the tenant's.
type AlertGroup struct {
	Status            string            `json:"status"`
	Alerts            []amNoteAlert     `json:"alerts"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
}

// amNotification is Alertmanager's webhook body (version 4); its
// externalURL and the alerts' generatorURL (the provider's side) are not
// read.
type amNotification struct {
	Receiver string `json:"receiver"`
	AlertGroup
}

type amNoteAlert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Fingerprint string            `json:"fingerprint"`
}

// Notification is the body a tenant's webhook receives (documented in
// docs/alerts.md): Alertmanager's, less what names the provider's side.
type Notification struct {
	Version  string `json:"version"`
	Tenant   string `json:"tenant"`
	Receiver string `json:"receiver"`
	AlertGroup
}

// relay delivers Alertmanager's notifications to the tenants' endpoints.
// Alertmanager keeps each notification until the relay answers 2xx, and
// tries again at every group_interval: so a delivery that may succeed
// later (the endpoint down, slow, or over the tenant's rate) is answered
// 5xx, and one that never can (a forbidden destination, a receiver that
// refuses the body) goes to the dead-letter file and is answered 2xx.
type relay struct {
	cfg    *Config
	state  *stateStore
	out    *outbound.Client
	token  []byte
	logger *zap.Logger
	tel    *tel
	now    func() time.Time

	mu      sync.Mutex
	limits  map[string]*rate.Limiter
	deadMu  sync.Mutex
	deadLog string
}

// ServeHTTP takes POST /deliver/<tenant>/<receiver> from Alertmanager.
func (r *relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), r.token) != 1 {
		http.Error(w, "the relay takes notifications from the provider's Alertmanager only", http.StatusUnauthorized)
		return
	}
	rest, ok := strings.CutPrefix(req.URL.EscapedPath(), "/deliver/")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 2 {
		http.Error(w, "not found: POST /deliver/<tenant>/<receiver>", http.StatusNotFound)
		return
	}
	// The names are as the extension writes them: nothing to unescape,
	// and nothing that could name a file elsewhere.
	tenant, name := parts[0], parts[1]
	if tenantid.Validate(tenant) != nil || !ruleName.MatchString(name) {
		http.Error(w, "not found: no such tenant or receiver", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxRelayBody+1))
	if err != nil || len(body) > maxRelayBody {
		http.Error(w, "body unreadable or over 4 MiB", http.StatusBadRequest)
		return
	}
	var note amNotification
	if err := json.Unmarshal(body, &note); err != nil {
		http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
		return
	}
	status, outcome := r.deliver(req.Context(), tenant, name, &note)
	r.tel.delivered(req.Context(), tenant, outcome)
	w.WriteHeader(status)
}

// Delivery outcomes, as counted and logged.
const (
	outcomeSent       = "sent"
	outcomeRetry      = "retry"        // transient: Alertmanager tries again
	outcomeRateLimit  = "rate_limited" // transient too
	outcomeDeadLetter = "dead_letter"  // permanent: in the dead-letter file
	outcomeNoReceiver = "no_receiver"  // removed since Alertmanager's config was written
)

func (r *relay) deliver(ctx context.Context, tenant, name string, note *amNotification) (int, string) {
	st, err := r.state.load(tenant)
	if err != nil {
		r.logger.Error("alert delivery: cannot read the tenant's receivers", zap.String("tenant", tenant), zap.Error(err))
		return http.StatusInternalServerError, outcomeRetry
	}
	var rcv *Receiver
	for i := range st.Receivers {
		if st.Receivers[i].Name == name {
			rcv = &st.Receivers[i]
		}
	}
	if rcv == nil {
		// Removed by the tenant; Alertmanager learns at its next reload.
		return http.StatusOK, outcomeNoReceiver
	}
	// Defence in depth: only the tenant's own alerts (of its own groups)
	// go to its receivers, whatever a route or a label says.
	alerts := note.Alerts[:0]
	for _, a := range note.Alerts {
		if ownedBy(a.Labels, tenant) {
			alerts = append(alerts, a)
		}
	}
	if len(alerts) != len(note.Alerts) {
		r.logger.Error("alert delivery: alerts of another tenant were routed to this tenant's receiver and are dropped",
			zap.String("tenant", tenant), zap.Int("dropped", len(note.Alerts)-len(alerts)))
	}
	if len(alerts) == 0 {
		return http.StatusOK, outcomeNoReceiver
	}
	group := note.AlertGroup
	group.Alerts = alerts
	n := Notification{Version: "1", Tenant: tenant, Receiver: name, AlertGroup: group}
	if !r.limiter(tenant).Allow() {
		r.logger.Warn("alert delivery: over the tenant's rate; Alertmanager tries again at its next group interval",
			zap.String("tenant", tenant), zap.String("receiver", name))
		return http.StatusServiceUnavailable, outcomeRateLimit
	}
	header := http.Header{"Content-Type": {"application/json"}, "User-Agent": {"otelcol-gpu-alerts/1"}}
	var payload []byte
	switch rcv.Type {
	case receiverSlack:
		payload, err = json.Marshal(map[string]string{"text": slackText(&n)})
	default:
		payload, err = json.Marshal(&n)
		if err == nil {
			secret, herr := hex.DecodeString(rcv.Secret)
			if herr != nil {
				err = fmt.Errorf("the receiver's secret: %w", herr)
			} else {
				header.Set(outbound.SignatureHeader, outbound.Sign(secret, r.now(), payload))
			}
		}
	}
	if err != nil {
		r.deadLetter(tenant, rcv, &n, err.Error())
		return http.StatusOK, outcomeDeadLetter
	}
	status, err := r.out.Post(ctx, rcv.URL, header, payload)
	err = redactURL(err, rcv)
	switch {
	case errors.Is(err, outbound.ErrForbidden):
		r.deadLetter(tenant, rcv, &n, err.Error())
		return http.StatusOK, outcomeDeadLetter
	case err != nil:
		r.logger.Warn("alert delivery failed; Alertmanager tries again", zap.String("tenant", tenant),
			zap.String("receiver", name), zap.Error(err))
		return http.StatusBadGateway, outcomeRetry
	case status/100 == 2:
		return http.StatusOK, outcomeSent
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status/100 == 5:
		r.logger.Warn("alert delivery refused for now; Alertmanager tries again", zap.String("tenant", tenant),
			zap.String("receiver", name), zap.Int("status", status))
		return http.StatusBadGateway, outcomeRetry
	default:
		r.deadLetter(tenant, rcv, &n, fmt.Sprintf("the receiver answered %d", status))
		return http.StatusOK, outcomeDeadLetter
	}
}

func (r *relay) limiter(tenant string) *rate.Limiter {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.limits[tenant]
	if !ok {
		l = rate.NewLimiter(rate.Limit(float64(r.cfg.Delivery.PerTenantPerMinute)/60), r.cfg.Delivery.Burst)
		r.limits[tenant] = l
	}
	return l
}

// deadLetter records a notification that will not be delivered: one JSON
// line (no secret, and a Slack URL, itself a secret, only by host), a
// count and a log line.
func (r *relay) deadLetter(tenant string, rcv *Receiver, n *Notification, why string) {
	host := ""
	if u, err := url.Parse(rcv.URL); err == nil {
		host = u.Host
	}
	line, _ := json.Marshal(map[string]any{
		"time": r.now().UTC(), "tenant": tenant, "receiver": rcv.Name, "type": rcv.Type, "host": host,
		"reason": why, "notification": n,
	})
	r.logger.Error("alert notification not delivered and not retried (dead letter)", zap.String("tenant", tenant),
		zap.String("receiver", rcv.Name), zap.String("host", host), zap.String("reason", why))
	r.deadMu.Lock()
	defer r.deadMu.Unlock()
	f, err := os.OpenFile(r.deadLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err == nil {
		_, err = f.Write(append(line, '\n'))
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		r.logger.Error("alert dead letter: cannot write the dead-letter file", zap.String("file", r.deadLog), zap.Error(err))
	}
}

// redactURL takes the receiver's URL out of an error (Go's client errors
// quote it): a Slack URL is a credential, and a webhook's path may be.
func redactURL(err error, rcv *Receiver) error {
	if err == nil {
		return nil
	}
	host := "the receiver"
	if u, perr := url.Parse(rcv.URL); perr == nil {
		host = u.Scheme + "://" + u.Host + "/..."
	}
	return redacted{msg: strings.ReplaceAll(err.Error(), rcv.URL, host), err: err}
}

// redacted is an error with another message; errors.Is still sees the
// original (ErrForbidden).
type redacted struct {
	msg string
	err error
}

func (r redacted) Error() string { return r.msg }
func (r redacted) Unwrap() error { return r.err }

// slackText is a Slack message for a notification: one line per alert.
func slackText(n *Notification) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %d alert(s) for %s", strings.ToUpper(n.Status), len(n.Alerts), n.Tenant)
	for _, a := range n.Alerts {
		summary := a.Annotations["summary"]
		if summary == "" {
			summary = a.Labels["alertname"]
		}
		fmt.Fprintf(&b, "\n- %s: %s (%s)", a.Status, summary, a.Labels["severity"])
	}
	return b.String()
}
