package tenantauthextension

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/extension/extensionauth"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/otelcol-gpu/otelcol-gpu/extension/tenantauthextension/internal/metadata"
	"github.com/otelcol-gpu/otelcol-gpu/internal/admission"
	"github.com/otelcol-gpu/otelcol-gpu/internal/credentials"
	"github.com/otelcol-gpu/otelcol-gpu/internal/failthrottle"
	"github.com/otelcol-gpu/otelcol-gpu/internal/telemetry"
	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
)

// The errors a client sees. They say what is wrong with the request and
// nothing about which tenants or credentials exist.
var (
	errMissingToken = errors.New("unauthenticated: missing bearer token")
	errInvalidToken = errors.New("unauthenticated: invalid bearer token")
)

// throttledError refuses a failing credential from an address that has used
// up its failures for the minute. It is retryable (gRPC ResourceExhausted
// with RetryInfo): a VM whose token the gateway has not loaded yet, behind
// the same NAT as a misconfigured one, keeps its data and tries again.
type throttledError struct{ retryAfter time.Duration }

func (e throttledError) Error() string {
	return fmt.Sprintf("too many failed authentication attempts from this address; try again in %s", e.retryAfter)
}

// unavailableError refuses every credential while the gateway does not know
// which are valid: its credentials file has failed to load for longer than
// credentials_max_stale. It is retryable (gRPC Unavailable with RetryInfo;
// HTTP 503 with Retry-After where tenant_auth is also the receiver's
// middleware): the token presented may well be good, and its agent must
// keep its data. The message says nothing of the file.
type unavailableError struct{ retryAfter time.Duration }

func (unavailableError) Error() string {
	return "unavailable: the gateway cannot check credentials now; try again later"
}

// GRPCStatus is Unavailable with RetryInfo. The collector's gRPC auth
// interceptor keeps the status an authenticator's error carries, so a
// receiver without tenant_auth as middleware answers it too.
func (e unavailableError) GRPCStatus() *status.Status {
	return statusWithRetry(codes.Unavailable, e.Error(), e.retryAfter)
}

var (
	resultOK      = metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "ok")))
	resultMissing = metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "missing")))
	resultInvalid = metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "invalid")))
	resultBlocked = metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "throttled")))
	resultScope   = metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "wrong_scope")))
	// resultUnavailable: refused, retryably, because the credentials file
	// has failed to load for longer than credentials_max_stale.
	resultUnavailable = metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "credentials_unavailable")))
	reloadOK          = metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "ok")))
	reloadFailed      = metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "failed")))
)

type authenticator struct {
	cfg    *Config
	logger *zap.Logger

	headerCanonical string
	headerLower     string
	scheme          string

	creds *credentials.File
	// host receives the component status the credentials file's health
	// gives (set at Start, before the file is polled).
	host component.Host
	// unavailable is the refusal while the credentials are unavailable,
	// retryable after one reload_interval: no sooner can the gateway know more.
	unavailable unavailableError
	// httpGuarded holds the HTTP servers (*http.Server) that run tenant_auth's
	// middleware, as its handler learnt from the requests it saw.
	httpGuarded sync.Map

	requests   metric.Int64Counter
	reloads    metric.Int64Counter
	refused    metric.Int64Counter
	unregister func() error

	throttle *failthrottle.Throttle
	guard    payloadGuard
	limiter  *admission.Limiter
}

var _ extensionauth.Server = (*authenticator)(nil)

func newAuthenticator(cfg *Config, set component.TelemetrySettings) (*authenticator, error) {
	a := &authenticator{
		throttle:        failthrottle.New(cfg.FailureLimit.PerMinute, cfg.FailureLimit.TrackedSources),
		cfg:             cfg,
		logger:          set.Logger,
		headerCanonical: http.CanonicalHeaderKey(cfg.Header),
		headerLower:     strings.ToLower(cfg.Header),
		scheme:          cfg.Scheme,
		limiter:         admission.NewLimiter(cfg.Admission.RequestLimitMiB<<20, cfg.Admission.WaitingLimitMiB<<20),
		unavailable:     unavailableError{retryAfter: max(cfg.ReloadInterval.Round(time.Second), time.Second)},
	}
	a.creds = credentials.NewFile(cfg.CredentialsFile, cfg.ReloadInterval, set.Logger, func(ok bool) {
		if ok {
			a.reloads.Add(context.Background(), 1, reloadOK)
		} else {
			a.reloads.Add(context.Background(), 1, reloadFailed)
		}
	}).WithMaxStale(cfg.CredentialsMaxStale).WithHealth(a.reportHealth)
	unregister, err := telemetry.Register(set, metadata.ScopeName, a.metrics())
	if err != nil {
		return nil, err
	}
	a.unregister = unregister
	return a, nil
}

// reportHealth turns the credentials file's failures into component status:
// a recoverable error while it fails to load, OK once it loads again. Where
// the health_check extension reflects component status, the gateway then
// reports itself unhealthy.
func (a *authenticator) reportHealth(err error) {
	if err == nil {
		componentstatus.ReportStatus(a.host, componentstatus.NewEvent(componentstatus.StatusOK))
		return
	}
	kept := "until it loads again"
	if a.cfg.CredentialsMaxStale > 0 {
		kept = fmt.Sprintf("for at most %s (credentials_max_stale), then every request is refused", a.cfg.CredentialsMaxStale)
	}
	componentstatus.ReportStatus(a.host, componentstatus.NewRecoverableErrorEvent(
		fmt.Errorf("tenant_auth: the credentials file fails to load; the last good credentials are kept %s: %w", kept, err)))
}

// Start loads the credentials file (a gateway that cannot read it must not
// start) and begins polling it for changes.
func (a *authenticator) Start(_ context.Context, host component.Host) error {
	a.host = host
	if err := a.creds.Start(); err != nil {
		return fmt.Errorf("tenant_auth: %w", err)
	}
	return nil
}

// Shutdown stops the reload loop.
func (a *authenticator) Shutdown(context.Context) error {
	a.creds.Stop()
	return a.unregister()
}

// metrics is the extension's own metrics (the README's table is rendered
// from it); no tenant on any: their attributes take fixed values.
func (a *authenticator) metrics() []telemetry.Metric {
	return []telemetry.Metric{
		{Name: "otelcol_tenant_auth_requests", Unit: "{request}", Attrs: []string{"result"}, Counter: &a.requests,
			Description: "Authentication attempts by result (ok, missing, invalid, wrong_scope, throttled, credentials_unavailable)."},
		{Name: "otelcol_tenant_auth_reloads", Unit: "{reload}", Attrs: []string{"result"}, Counter: &a.reloads,
			Description: "Credentials file loads that changed something, or failed, by result (ok, failed)."},
		{Name: "otelcol_tenant_auth_refused_payloads", Unit: "{request}", Attrs: []string{"reason"}, Counter: &a.refused,
			Description: "Requests refused before decoding, by reason (too_deep, too_many, malformed; retryably: busy, queues_full)."},
		{Name: "otelcol_tenant_auth_credentials_stale", Unit: "s", Observe: func(observe telemetry.Observer) {
			if a.creds != nil {
				observe(int64(a.creds.FailingFor() / time.Second))
			}
		}, Description: "How long the credentials file has failed to load (0 while it loads); past credentials_max_stale every request is refused, retryably."},
	}
}

// check authenticates the credential in headers from source, counting and
// throttling failures. It is the whole decision; Authenticate and the gRPC
// tap handle only differ in what they do with it.
//
// A valid credential is accepted whatever its address did: VMs behind one
// NAT share an address, and one misconfigured neighbour must not cost the
// others their data. Only failures are throttled: from an address over its
// budget they are refused retryably, without a verdict on the credential.
// The lookup before the throttle costs one SHA-256 of the header value.
// A customer's read key is not an ingest token: it fails like an unknown
// one, counted apart so an operator sees a key pasted into a VM. An expired
// token is an invalid one. While the credentials are unavailable (the file
// past credentials_max_stale) a token is refused retryably, without a
// verdict, and is no failure of its address.
func (a *authenticator) check(ctx context.Context, headers map[string][]string, source string) (*credentials.Credential, error) {
	token, ok := a.token(headers)
	wrongScope := false
	if ok {
		set := a.creds.Set()
		if set.Unavailable() != nil {
			a.requests.Add(ctx, 1, resultUnavailable)
			return nil, a.unavailable
		}
		if cred, found := set.Lookup(token); found {
			if cred.Scope == credentials.ScopeIngest {
				return cred, nil
			}
			wrongScope = true
		}
	}
	if retry, blocked := a.throttle.Blocked(source); blocked {
		a.requests.Add(ctx, 1, resultBlocked)
		return nil, throttledError{retryAfter: retry}
	}
	a.throttle.Fail(source)
	switch {
	case !ok:
		a.requests.Add(ctx, 1, resultMissing)
		return nil, errMissingToken
	case wrongScope:
		a.requests.Add(ctx, 1, resultScope)
		return nil, errInvalidToken
	}
	a.requests.Add(ctx, 1, resultInvalid)
	return nil, errInvalidToken
}

// sourceOf is the address a request came from, without its port.
func sourceOf(addr net.Addr) string {
	if addr == nil {
		return ""
	}
	s := addr.String()
	if host, _, err := net.SplitHostPort(s); err == nil {
		return host
	}
	return s
}

// Authenticate maps the request's bearer token to its tenant and puts the
// tenant, the credential id and the VM's identity into the request's auth data.
//
// The collector's HTTP server answers every authenticator error with 401,
// on which an OTLP/HTTP exporter drops its data. So while the credentials
// are unavailable, a request to an HTTP server whose chain runs
// tenant_auth's middleware passes here without auth data, marked, and the
// middleware, which it must reach before anything reads it, answers 503
// with Retry-After. Anywhere else it is refused here.
func (a *authenticator) Authenticate(ctx context.Context, headers map[string][]string) (context.Context, error) {
	info := client.FromContext(ctx)
	cred, err := a.check(ctx, headers, sourceOf(info.Addr))
	if err != nil {
		var unavailable unavailableError
		if errors.As(err, &unavailable) && a.guardsHTTP(ctx) {
			return context.WithValue(ctx, unavailableKey{}, unavailable), nil
		}
		return ctx, err
	}
	a.requests.Add(ctx, 1, resultOK)
	info.Auth = authData{tenant: cred.Tenant, credentialID: cred.ID, instance: cred.VM(), gpus: cred.GPUs, gpusKnown: cred.GPUsKnown}
	return client.NewContext(ctx, info), nil
}

// token extracts the credential from the header ("Bearer <token>"). HTTP
// headers arrive canonicalised, gRPC metadata lower-case.
func (a *authenticator) token(headers map[string][]string) (string, bool) {
	values, ok := headers[a.headerCanonical]
	if !ok {
		values, ok = headers[a.headerLower]
	}
	if !ok || len(values) != 1 {
		return "", false
	}
	v := strings.TrimSpace(values[0])
	if a.scheme != "" {
		prefix, rest, found := strings.Cut(v, " ")
		if !found || !strings.EqualFold(prefix, a.scheme) {
			return "", false
		}
		v = strings.TrimSpace(rest)
	}
	return v, v != ""
}

// authData is what the tenant processor reads from client.Info.Auth.
type authData struct {
	tenant       string
	credentialID string
	instance     string
	gpus         int
	gpusKnown    bool
}

var authAttributeNames = []string{tenantid.AuthAttributeTenant, tenantid.AuthAttributeCredential, tenantid.AuthAttributeInstance, tenantid.AuthAttributeGPUs}

func (d authData) GetAttribute(name string) any {
	switch name {
	case tenantid.AuthAttributeTenant:
		return d.tenant
	case tenantid.AuthAttributeCredential:
		return d.credentialID
	case tenantid.AuthAttributeInstance:
		return d.instance
	case tenantid.AuthAttributeGPUs:
		if !d.gpusKnown {
			return nil
		}
		return int64(d.gpus)
	default:
		return nil
	}
}

func (authData) GetAttributeNames() []string { return authAttributeNames }
