package tenantqueryextension

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/extension"
	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/credentials"
	"github.com/otelcol-gpu/otelcol-gpu/internal/failthrottle"
	"github.com/otelcol-gpu/otelcol-gpu/internal/periodic"
)

// queryServer is the tenant_query extension: its listener, the credentials
// it reads and the state of the tenants' limits and browser sessions.
type queryServer struct {
	cfg    *Config
	set    component.TelemetrySettings
	logger *zap.Logger
	tel    *tel

	creds    *credentials.File
	tmpl     storeTemplates
	limits   *tenantLimits
	sessions *sessions // nil without the UI
	ui       *uiAssets // nil without the UI

	client       *http.Client
	eventsClient *http.Client // nil without events
	answers      *answerBudget
	failures     *failthrottle.Throttle // nil: failures are not throttled
	usage        *usageRecorder         // nil without usage_events
	alerts       alertsAPI              // nil without alerts
	server       *http.Server
	served       chan struct{}

	// host receives the credentials file's health (set at Start).
	host component.Host

	// refusals of requests without a valid key are logged at most this
	// often: anyone can send them.
	anonLog periodic.Every
}

var _ extension.Extension = (*queryServer)(nil)

func newQueryServer(cfg *Config, set component.TelemetrySettings) (*queryServer, error) {
	tmpl, errs := cfg.Store.parseTemplates()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s := &queryServer{
		cfg:      cfg,
		set:      set,
		logger:   set.Logger,
		tmpl:     tmpl,
		limits:   newTenantLimits(cfg.Limits),
		answers:  newAnswerBudget(cfg.Limits.MaxAnswerBytes, cfg.Limits.MaxAnswerBytesTotal),
		failures: failthrottle.New(cfg.FailureLimit.PerMinute, cfg.FailureLimit.TrackedSources),
		anonLog:  periodic.Every{Interval: 10 * time.Second},
	}
	if cfg.UI.Enabled {
		s.sessions = newSessions(cfg.UI.SessionTTL, cfg.UI.MaxSessions, cfg.UI.MaxSessionsPerTenant)
		var err error
		if s.ui, err = newUIAssets(cfg.UI.Timezone, cfg.Events.ClientConfig.Endpoint != ""); err != nil {
			return nil, err
		}
	}
	tel, err := newTelemetry(set, cfg.Telemetry, s.answers, s.sessions)
	if err != nil {
		return nil, err
	}
	s.tel = tel
	s.creds = credentials.NewFile(cfg.CredentialsFile, cfg.ReloadInterval, set.Logger, tel.reloaded).
		WithMaxStale(cfg.CredentialsMaxStale).WithHealth(s.reportCredentialsHealth)
	return s, nil
}

// Start loads the credentials (the component must not serve without them),
// opens the store client and the listener, and serves.
func (s *queryServer) Start(ctx context.Context, host component.Host) error {
	s.host = host
	if s.cfg.Alerts != "" {
		api, err := findAlerts(host, s.cfg.Alerts)
		if err != nil {
			return fmt.Errorf("tenant_query: %w", err)
		}
		s.alerts = api
	}
	if err := s.creds.Start(); err != nil {
		return fmt.Errorf("tenant_query: %w", err)
	}
	client, err := s.cfg.Store.ClientConfig.ToClient(ctx, host.GetExtensions(), s.set)
	if err != nil {
		s.creds.Stop()
		return fmt.Errorf("tenant_query: store client: %w", err)
	}
	// The store's redirects are never followed: an answer other than the
	// one asked for must not be fetched on a tenant's behalf.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	s.client = client
	if s.cfg.Events.ClientConfig.Endpoint != "" {
		events, err := s.cfg.Events.ClientConfig.ToClient(ctx, host.GetExtensions(), s.set)
		if err != nil {
			s.creds.Stop()
			return fmt.Errorf("tenant_query: events client: %w", err)
		}
		events.CheckRedirect = client.CheckRedirect
		s.eventsClient = events
	}
	var usage *usageRecorder
	if s.cfg.UsageEvents.ClientConfig.Endpoint != "" {
		if usage, err = s.newUsage(ctx, host); err != nil {
			s.creds.Stop()
			return fmt.Errorf("tenant_query: %w", err)
		}
	}
	fail := func(err error) error {
		if usage != nil {
			_ = usage.log.close()
		}
		s.creds.Stop()
		return fmt.Errorf("tenant_query: %w", err)
	}
	ln, err := s.cfg.ServerConfig.ToListener(ctx)
	if err != nil {
		return fail(fmt.Errorf("listen on %s: %w", s.cfg.ServerConfig.NetAddr.Endpoint, err))
	}
	s.server, err = s.cfg.ServerConfig.ToServer(ctx, host.GetExtensions(), s.set, s)
	if err != nil {
		_ = ln.Close()
		return fail(err)
	}
	if usage != nil {
		usage.start()
		s.usage = usage
	}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		if err := s.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			componentstatus.ReportStatus(host, componentstatus.NewFatalErrorEvent(err))
		}
	}()
	s.logger.Info("serving the read API", zap.String("endpoint", ln.Addr().String()), zap.Bool("ui", s.ui != nil))
	return nil
}

// Shutdown lets queries in flight finish (until ctx ends) and stops.
func (s *queryServer) Shutdown(ctx context.Context) error {
	var err error
	if s.server != nil {
		err = s.server.Shutdown(ctx)
		if err != nil {
			err = errors.Join(err, s.server.Close())
		}
		<-s.served
	}
	if s.usage != nil {
		// After the server: every answered query's event is in the log.
		s.usage.shutdown(ctx)
	}
	s.creds.Stop()
	return errors.Join(err, s.tel.unregister())
}

// ServeHTTP routes a request: the read API (under /api/v1 and, for vmui,
// /prometheus/api/v1), the UI and its login, and nothing else.
func (s *queryServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", uiCSP)
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	path := r.URL.EscapedPath()
	if ep, storePath, ok := matchEndpoint(path); ok {
		h.Set("Cache-Control", "no-store")
		s.serveAPI(w, r, ep, storePath)
		return
	}
	if strings.HasPrefix(path, alertsPrefix) {
		h.Set("Cache-Control", "no-store")
		s.serveAlerts(w, r)
		return
	}
	if s.ui != nil && s.serveUI(w, r, path) {
		return
	}
	s.tel.refuse(r.Context(), "", "not_allowed")
	writeAPIError(w, http.StatusNotFound, "not_found",
		"not served here: the read API serves /api/v1/query, /api/v1/query_range, /api/v1/series, /api/v1/labels and /api/v1/label/<name>/values")
}

// newUsage opens the usage log and the event store's client; the caller
// starts it.
func (s *queryServer) newUsage(ctx context.Context, host component.Host) (*usageRecorder, error) {
	client, err := s.cfg.UsageEvents.ClientConfig.ToClient(ctx, host.GetExtensions(), s.set)
	if err != nil {
		return nil, fmt.Errorf("usage_events client: %w", err)
	}
	u, err := newUsageRecorder(s.cfg.UsageEvents, client, s.logger, s.tel)
	if err != nil {
		return nil, fmt.Errorf("usage_events.directory: %w", err)
	}
	return u, nil
}

// sourceOf is the client's address without its port.
func sourceOf(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// keyUsed notes a read key's use (the key_last_used gauge).
func (s *queryServer) keyUsed(cred *credentials.Credential, at time.Time) {
	s.tel.keyUsed(cred.Tenant, cred.ID, at)
}

// reportCredentialsHealth turns the credentials file's failures into
// component status: a recoverable error while it fails to load, OK once it
// loads again.
func (s *queryServer) reportCredentialsHealth(err error) {
	if s.host == nil {
		return
	}
	if err == nil {
		componentstatus.ReportStatus(s.host, componentstatus.NewEvent(componentstatus.StatusOK))
		return
	}
	componentstatus.ReportStatus(s.host, componentstatus.NewRecoverableErrorEvent(fmt.Errorf(
		"tenant_query: the credentials file fails to load; the last good keys are kept for at most credentials_max_stale (%s): %w",
		s.cfg.CredentialsMaxStale, err)))
}
