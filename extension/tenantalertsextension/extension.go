package tenantalertsextension

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/extension"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/otelcol-gpu/otelcol-gpu/internal/credentials"
	"github.com/otelcol-gpu/otelcol-gpu/internal/outbound"
	"github.com/otelcol-gpu/otelcol-gpu/internal/periodic"
)

// syncTimeout bounds one write of the engines' files and their reload.
const syncTimeout = 30 * time.Second

// alertsServer is the tenant_alerts extension.
type alertsServer struct {
	cfg    *Config
	set    component.TelemetrySettings
	logger *zap.Logger
	tel    *tel
	pack   []PackRule

	creds   *credentials.File
	state   *stateStore
	engines *engines
	relay   *relay
	out     *outbound.Client

	rulesDir, amFile, tokenFile string

	server *http.Server
	served chan struct{}
	poller *periodic.Runner
	host   component.Host

	// syncMu makes this process's syncs one at a time; pending says the
	// engines missed a reload (one was down) and get one at the next.
	syncMu  sync.Mutex
	pending bool
	failLog *periodic.Every
}

var _ extension.Extension = (*alertsServer)(nil)

func newAlertsServer(cfg *Config, set component.TelemetrySettings) (*alertsServer, error) {
	tel, err := newTelemetry(set, cfg.Telemetry)
	if err != nil {
		return nil, err
	}
	s := &alertsServer{
		cfg: cfg, set: set, logger: set.Logger, tel: tel, pack: defaultPack(),
		rulesDir:  filepath.Join(cfg.Directory, "rules"),
		amFile:    filepath.Join(cfg.Directory, "alertmanager.yml"),
		tokenFile: filepath.Join(cfg.Directory, "relay.token"),
		failLog:   &periodic.Every{Interval: time.Minute},
	}
	s.creds = credentials.NewFile(cfg.CredentialsFile, cfg.ReloadInterval, set.Logger, func(bool) {})
	return s, nil
}

// Start reads the credentials, writes the engines' files, opens the relay
// and keeps the files in step with the tenants from then on. The engines
// may start after it: they read the files when they start, and a reload
// that fails is made again at every reload_interval until one succeeds.
func (s *alertsServer) Start(ctx context.Context, host component.Host) error {
	s.host = host
	fail := func(err error) error { return fmt.Errorf("tenant_alerts: %w", err) }
	// The engines read rules/ and alertmanager.yml (and the token): the
	// directory is the group's; the tenants' state is not.
	if err := os.MkdirAll(s.rulesDir, 0o750); err != nil {
		return fail(err)
	}
	state, err := newStateStore(s.cfg.Directory)
	if err != nil {
		return fail(fmt.Errorf("directory: %w", err))
	}
	s.state = state
	token, err := s.relayToken()
	if err != nil {
		return fail(fmt.Errorf("relay token: %w", err))
	}
	out, err := s.newOutbound()
	if err != nil {
		return fail(err)
	}
	s.out = out
	vm, err := s.cfg.VMAlert.ToClient(ctx, host.GetExtensions(), s.set)
	if err != nil {
		return fail(fmt.Errorf("vmalert client: %w", err))
	}
	am, err := s.cfg.Alertmanager.ToClient(ctx, host.GetExtensions(), s.set)
	if err != nil {
		return fail(fmt.Errorf("alertmanager client: %w", err))
	}
	s.engines = &engines{
		vmalert: vm, alertmanager: am,
		vmalertURL:      strings.TrimSuffix(s.cfg.VMAlert.Endpoint, "/"),
		alertmanagerURL: strings.TrimSuffix(s.cfg.Alertmanager.Endpoint, "/"),
	}
	deadLog := s.cfg.Delivery.DeadLetterFile
	if deadLog == "" {
		deadLog = filepath.Join(s.cfg.Directory, "dead-letter.jsonl")
	}
	s.relay = &relay{
		cfg: s.cfg, state: state, out: out, token: token, logger: s.logger, tel: s.tel, now: time.Now,
		limits: map[string]*rate.Limiter{}, deadLog: deadLog,
	}
	if err := s.creds.Start(); err != nil {
		return fail(err)
	}
	ln, err := s.cfg.Relay.ToListener(ctx)
	if err != nil {
		s.creds.Stop()
		return fail(fmt.Errorf("relay: listen on %s: %w", s.cfg.Relay.NetAddr.Endpoint, err))
	}
	s.server, err = s.cfg.Relay.ToServer(ctx, host.GetExtensions(), s.set, s.relay)
	if err != nil {
		_ = ln.Close()
		s.creds.Stop()
		return fail(err)
	}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		if err := s.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			componentstatus.ReportStatus(host, componentstatus.NewFatalErrorEvent(err))
		}
	}()
	if err := s.sync(ctx); err != nil {
		s.logger.Warn("tenant_alerts: the engines did not take the first reload; retried every reload_interval", zap.Error(err))
	}
	s.poller = periodic.Start(s.cfg.ReloadInterval, func() {
		ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
		defer cancel()
		if err := s.sync(ctx); err != nil && s.failLog.Allow() {
			s.logger.Warn("tenant_alerts: the engines' reload failed; retried every reload_interval", zap.Error(err))
		}
	})
	s.logger.Info("tenant alerts ready", zap.String("relay", ln.Addr().String()), zap.String("directory", s.cfg.Directory),
		zap.Int("tenants", len(s.creds.Set().TenantNames())))
	return nil
}

// Shutdown stops the syncs and the relay (deliveries in flight finish
// until ctx ends; Alertmanager retries any it does not see answered).
func (s *alertsServer) Shutdown(ctx context.Context) error {
	if s.poller != nil {
		s.poller.Stop()
	}
	var err error
	if s.server != nil {
		if err = s.server.Shutdown(ctx); err != nil {
			err = errors.Join(err, s.server.Close())
		}
		<-s.served
	}
	s.creds.Stop()
	return err
}

// relayToken is the token Alertmanager presents to the relay: created once
// in the directory (replicas sharing it share the token), readable by the
// engines' group.
func (s *alertsServer) relayToken() ([]byte, error) {
	var token []byte
	err := s.state.withLock(func() error {
		data, err := os.ReadFile(s.tokenFile)
		if err == nil && len(strings.TrimSpace(string(data))) >= 32 {
			token = []byte(strings.TrimSpace(string(data)))
			return nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		token = []byte(hex.EncodeToString(b))
		_, err = writeFileAtomic(s.tokenFile, token, 0o640)
		return err
	})
	return token, err
}

func (s *alertsServer) newOutbound() (*outbound.Client, error) {
	d := s.cfg.Delivery
	allow, err := parsePrefixes("delivery.allow_cidrs", d.AllowCIDRs)
	if err != nil {
		return nil, err
	}
	deny, err := parsePrefixes("delivery.deny_cidrs", d.DenyCIDRs)
	if err != nil {
		return nil, err
	}
	var roots *x509.CertPool
	if d.CAFile != "" {
		pem, err := os.ReadFile(d.CAFile)
		if err != nil {
			return nil, fmt.Errorf("delivery.ca_file: %w", err)
		}
		if roots, err = x509.SystemCertPool(); err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("delivery.ca_file: %s holds no PEM certificate", d.CAFile)
		}
	}
	return outbound.New(outbound.Config{
		Timeout: d.Timeout, MaxResponseBytes: d.MaxResponseBytes, AllowCIDRs: allow, DenyCIDRs: deny, RootCAs: roots,
	})
}

// sync writes the engines' files from the tenants' state (every tenant of
// the credentials file gets the default pack; a tenant no longer there
// loses its rules and routes, its state is kept) and reloads the engines
// when a file changed or the last reload failed. While the credentials
// file cannot be read nothing is changed: a broken file must not take
// every tenant's alerts away.
func (s *alertsServer) sync(ctx context.Context) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	set := s.creds.Set()
	if set == nil || set.Unavailable() != nil {
		return nil
	}
	tenants := set.TenantNames()
	changed := false
	err := s.state.withLock(func() error {
		keep := make(map[string]bool, len(tenants))
		receivers := make(map[string][]Receiver, len(tenants))
		for _, t := range tenants {
			keep[t] = true
			st, err := s.state.load(t)
			if err != nil {
				// Its last good file stays; the others go on.
				s.logger.Error("tenant_alerts: a tenant's state cannot be read; its rules and receivers stay as they were",
					zap.String("tenant", t), zap.Error(err))
				continue
			}
			receivers[t] = st.Receivers
			data, err := renderRules(t, s.cfg.TenantLabel, s.cfg.EvaluationInterval,
				min(s.cfg.Limits.RuleQueryTimeout, s.cfg.EvaluationInterval), s.cfg.Limits.MaxSeriesPerRule, s.pack, st.Rules)
			if err != nil {
				return err
			}
			wrote, err := writeFileAtomic(filepath.Join(s.rulesDir, t+".yaml"), data, 0o640)
			if err != nil {
				return err
			}
			changed = changed || wrote
		}
		removed, err := removeStale(s.rulesDir, ".yaml", keep)
		if err != nil {
			return err
		}
		data, err := renderAlertmanager(s.cfg, s.tokenFile, receivers, tenants)
		if err != nil {
			return err
		}
		wrote, err := writeFileAtomic(s.amFile, data, 0o640)
		changed = changed || removed || wrote
		return err
	})
	if err != nil {
		s.tel.synced(ctx, false)
		return fmt.Errorf("writing the engines' files: %w", err)
	}
	if !changed && !s.pending {
		return nil
	}
	if err := s.engines.reload(ctx); err != nil {
		s.pending = true
		s.tel.synced(ctx, false)
		return err
	}
	s.pending = false
	s.tel.synced(ctx, true)
	return nil
}
