// Package alertengines runs the alert engines of the tenants' GPU alerts,
// vmalert (rules evaluated against the store) and Alertmanager (routing to
// the tenants' receivers), installed by `make alerting` into .tools/bin, on
// loopback. Test and demo equipment only.
//
// Things to know (docs/alerts.md):
//   - vmalert sends label names to Alertmanager sanitized to Prometheus
//     names: hw.id arrives as hw_id, so Alertmanager routes and group_by
//     must use the underscored names;
//   - a rules file that does not parse makes a reload fail as a whole (the
//     previous rules stay; /-/reload still answers 200, the failure shows in
//     vmalert_config_last_reload_successful) and makes vmalert exit at start;
//   - vmalert queries at now - -rule.evalDelay (default 30s, for a store's
//     default -search.latencyOffset); vmstore starts the store with
//     -search.latencyOffset=0s, so StartVMAlert passes -rule.evalDelay=0s.
package alertengines

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
)

// VMAlertEnv and AlertmanagerEnv name the variables that point at the binaries.
const (
	VMAlertEnv      = "VMALERT_BIN"
	AlertmanagerEnv = "ALERTMANAGER_BIN"
)

// Pinned releases (Makefile: VICTORIA_METRICS_VERSION, ALERTMANAGER_VERSION).
const (
	VMAlertVersion      = "v1.151.0"
	AlertmanagerVersion = "v0.31.1"
)

// FindVMAlert returns $VMALERT_BIN, else <root>/.tools/bin/vmalert.
func FindVMAlert(root string) (string, error) {
	return proc.Tool(root, VMAlertEnv, "vmalert", "alerting")
}

// FindAlertmanager returns $ALERTMANAGER_BIN, else <root>/.tools/bin/alertmanager.
func FindAlertmanager(root string) (string, error) {
	return proc.Tool(root, AlertmanagerEnv, "alertmanager", "alerting")
}

// VMAlertOptions configures StartVMAlert.
type VMAlertOptions struct {
	Addr               string        // listen address, 127.0.0.1:port
	DatasourceURL      string        // the store, http://127.0.0.1:port
	NotifierURL        string        // Alertmanager, http://127.0.0.1:port
	RulesGlob          string        // -rule, e.g. <dir>/rules/*.yaml (may match nothing)
	EvaluationInterval time.Duration // -evaluationInterval; 0: 2s
	ExternalURL        string        // -external.url (alerts' source links); optional
	// EvalDelay is -rule.evalDelay; 0 means 0s (a store without latency
	// offset, as vmstore starts it). Set it for a store with the default 30s.
	EvalDelay time.Duration
	Args      []string // more flags
}

// VMAlert is a running vmalert.
type VMAlert struct {
	p   *proc.Proc
	url string
}

// StartVMAlert runs vmalert and waits for /health.
func StartVMAlert(ctx context.Context, bin string, o VMAlertOptions, log io.Writer) (*VMAlert, error) {
	if o.EvaluationInterval == 0 {
		o.EvaluationInterval = 2 * time.Second
	}
	args := []string{
		"-httpListenAddr=" + o.Addr,
		"-datasource.url=" + o.DatasourceURL,
		"-notifier.url=" + o.NotifierURL,
		"-rule=" + o.RulesGlob,
		"-evaluationInterval=" + o.EvaluationInterval.String(),
		"-rule.evalDelay=" + o.EvalDelay.String(),
		"-loggerLevel=WARN",
	}
	if o.ExternalURL != "" {
		args = append(args, "-external.url="+o.ExternalURL)
	}
	args = append(args, o.Args...)
	p, err := proc.StartWriter("vmalert", bin, args, nil, log)
	if err != nil {
		return nil, fmt.Errorf("alertengines: %w", err)
	}
	v := &VMAlert{p: p, url: "http://" + o.Addr}
	if err := p.WaitHTTPOK(ctx, v.url+"/health", 30*time.Second); err != nil {
		return v, fmt.Errorf("alertengines: vmalert: %w", err)
	}
	return v, nil
}

// URL is http://Addr.
func (v *VMAlert) URL() string { return v.url }

// Output is the last of what vmalert has written.
func (v *VMAlert) Output() string { return v.p.Output() }

// Reload POSTs /-/reload. vmalert answers 200 even when the new rules do
// not parse (it keeps the old ones): LastReloadOK says how it went.
func (v *VMAlert) Reload(ctx context.Context) error { return post(ctx, v.url+"/-/reload") }

// LastReloadOK reads vmalert_config_last_reload_successful from /metrics.
func (v *VMAlert) LastReloadOK(ctx context.Context) (bool, error) {
	b, err := get(ctx, v.url+"/metrics")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if val, ok := strings.CutPrefix(line, "vmalert_config_last_reload_successful "); ok {
			return strings.TrimSpace(val) == "1", nil
		}
	}
	return false, fmt.Errorf("alertengines: no vmalert_config_last_reload_successful in /metrics")
}

// RuleGroup is a group of /api/v1/rules, with the fields the tests read.
type RuleGroup struct {
	Name   string            `json:"name"`
	File   string            `json:"file"`
	Params []string          `json:"params"`
	Labels map[string]string `json:"labels"`
	Rules  []Rule            `json:"rules"`
}

// Rule is a rule of /api/v1/rules.
type Rule struct {
	Name              string `json:"name"`
	Query             string `json:"query"`
	State             string `json:"state"`
	Health            string `json:"health"`
	LastError         string `json:"lastError"`
	LastSamples       int    `json:"lastSamples"`
	LastSeriesFetched *int   `json:"lastSeriesFetched"`
	LastEvaluation    string `json:"lastEvaluation"`
}

// Rules returns vmalert's rule groups (GET /api/v1/rules).
func (v *VMAlert) Rules(ctx context.Context) ([]RuleGroup, error) {
	var out struct {
		Data struct {
			Groups []RuleGroup `json:"groups"`
		} `json:"data"`
	}
	if err := getJSON(ctx, v.url+"/api/v1/rules", &out); err != nil {
		return nil, err
	}
	return out.Data.Groups, nil
}

// BindFailed reports whether vmalert exited because its address was taken.
func (v *VMAlert) BindFailed() bool { return v != nil && v.p.BindFailed() }

// Stop ends vmalert (SIGTERM, then a kill after 30 s).
func (v *VMAlert) Stop() error {
	if v == nil || v.p.Exited() {
		return nil
	}
	return v.p.Stop(30 * time.Second)
}

// Kill ends vmalert at once.
func (v *VMAlert) Kill() {
	if v != nil {
		v.p.Kill()
	}
}

// AlertmanagerOptions configures StartAlertmanager.
type AlertmanagerOptions struct {
	Addr        string // --web.listen-address, 127.0.0.1:port
	ConfigFile  string // --config.file
	DataDir     string // --storage.path
	ExternalURL string // --web.external-url; optional
	Args        []string
}

// Alertmanager is a running Alertmanager, a single replica (clustering off).
type Alertmanager struct {
	p   *proc.Proc
	url string
}

// StartAlertmanager runs Alertmanager and waits for /-/ready.
func StartAlertmanager(ctx context.Context, bin string, o AlertmanagerOptions, log io.Writer) (*Alertmanager, error) {
	args := []string{
		"--config.file=" + o.ConfigFile,
		"--storage.path=" + o.DataDir,
		"--web.listen-address=" + o.Addr,
		"--cluster.listen-address=",
		"--log.level=warn",
	}
	if o.ExternalURL != "" {
		args = append(args, "--web.external-url="+o.ExternalURL)
	}
	args = append(args, o.Args...)
	p, err := proc.StartWriter("alertmanager", bin, args, nil, log)
	if err != nil {
		return nil, fmt.Errorf("alertengines: %w", err)
	}
	a := &Alertmanager{p: p, url: "http://" + o.Addr}
	if err := p.WaitHTTPOK(ctx, a.url+"/-/ready", 30*time.Second); err != nil {
		return a, fmt.Errorf("alertengines: alertmanager: %w", err)
	}
	return a, nil
}

// URL is http://Addr.
func (a *Alertmanager) URL() string { return a.url }

// Output is the last of what Alertmanager has written.
func (a *Alertmanager) Output() string { return a.p.Output() }

// Reload POSTs /-/reload; a config that does not load answers 500 (the
// old one stays).
func (a *Alertmanager) Reload(ctx context.Context) error { return post(ctx, a.url+"/-/reload") }

// Alert is an alert of GET /api/v2/alerts.
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
	Receivers []struct {
		Name string `json:"name"`
	} `json:"receivers"`
}

// Alerts returns Alertmanager's alerts; filter is matchers such as
// `tenant_id="acme"` (each a filter= parameter; none: all).
func (a *Alertmanager) Alerts(ctx context.Context, filter ...string) ([]Alert, error) {
	u := a.url + "/api/v2/alerts"
	if len(filter) > 0 {
		u += "?" + url.Values{"filter": filter}.Encode()
	}
	var out []Alert
	err := getJSON(ctx, u, &out)
	return out, err
}

// BindFailed reports whether Alertmanager exited because its address was taken.
func (a *Alertmanager) BindFailed() bool { return a != nil && a.p.BindFailed() }

// Stop ends Alertmanager (SIGTERM, then a kill after 30 s).
func (a *Alertmanager) Stop() error {
	if a == nil || a.p.Exited() {
		return nil
	}
	return a.p.Stop(30 * time.Second)
}

// Kill ends Alertmanager at once.
func (a *Alertmanager) Kill() {
	if a != nil {
		a.p.Kill()
	}
}

func post(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, http.NoBody)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("alertengines: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("alertengines: POST %s: %s: %s", u, resp.Status, b)
	}
	return nil
}

func get(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, http.NoBody)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("alertengines: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("alertengines: GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("alertengines: GET %s: %s: %.4096s", u, resp.Status, b)
	}
	return b, nil
}

func getJSON(ctx context.Context, u string, v any) error {
	b, err := get(ctx, u)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("alertengines: GET %s: %w", u, err)
	}
	return nil
}
