package tenantalertsextension

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"gopkg.in/yaml.v3"
)

// fakeEngines stands in for vmalert and Alertmanager's HTTP APIs (the
// system tests run the real ones).
type fakeEngines struct {
	srv     *httptest.Server
	reloads atomic.Int32
	// refuse has the fake vmalert refuse any rule file holding it.
	refuse   string
	rulesDir string
	lastOK   bool
	mu       sync.Mutex
	silences []amSilence
	alerts   []amAlert
}

func newFakeEngines(t *testing.T) *fakeEngines {
	f := &fakeEngines{lastOK: true}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch {
		case r.URL.Path == "/-/reload":
			f.reloads.Add(1)
			f.lastOK = true
			if f.refuse != "" {
				files, _ := filepath.Glob(filepath.Join(f.rulesDir, "*.yaml"))
				for _, name := range files {
					if data, _ := os.ReadFile(name); strings.Contains(string(data), f.refuse) {
						f.lastOK = false
					}
				}
			}
		case r.URL.Path == "/metrics":
			ok := 0
			if f.lastOK {
				ok = 1
			}
			_, _ = fmt.Fprintf(w, "vmalert_config_last_reload_total %d\nvmalert_config_last_reload_successful %d\n", f.reloads.Load(), ok)
		case r.URL.Path == "/api/v1/rules":
			_, _ = w.Write([]byte(`{"data":{"groups":[{"name":"acme:pack","rules":[{"name":"GPUFailed","state":"inactive","health":"ok"}]},{"name":"globex:pack","rules":[{"name":"GPUFailed","state":"firing"}]}]}}`))
		case r.URL.Path == "/api/v2/alerts":
			_ = json.NewEncoder(w).Encode(f.alerts)
		case r.URL.Path == "/api/v2/silences" && r.Method == http.MethodGet:
			_ = json.NewEncoder(w).Encode(f.silences)
		case r.URL.Path == "/api/v2/silences" && r.Method == http.MethodPost:
			var s amSilence
			_ = json.NewDecoder(r.Body).Decode(&s)
			s.ID = fmt.Sprintf("s%d", len(f.silences)+1)
			f.silences = append(f.silences, s)
			_, _ = fmt.Fprintf(w, `{"silenceID":%q}`, s.ID)
		case strings.HasPrefix(r.URL.Path, "/api/v2/silence/") && r.Method == http.MethodDelete:
			id := strings.TrimPrefix(r.URL.Path, "/api/v2/silence/")
			for i := range f.silences {
				if f.silences[i].ID == id {
					f.silences[i].Status = &struct {
						State string `json:"state"`
					}{"expired"}
				}
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func writeTestCredentials(t *testing.T, path string, tenants ...string) {
	var b strings.Builder
	b.WriteString("credentials:\n")
	for i, tenant := range tenants {
		fmt.Fprintf(&b, "  - {id: %s-key, tenant: %s, scope: read, sha256: %064x}\n", tenant, tenant, i+1)
	}
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
}

type apiEnv struct {
	s       *alertsServer
	engines *fakeEngines
	dir     string
	creds   string
}

func newAPIEnv(t *testing.T) *apiEnv {
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials.yaml")
	writeTestCredentials(t, creds, "acme", "globex")
	eng := newFakeEngines(t)
	cfg := createDefaultConfig().(*Config)
	cfg.Directory = filepath.Join(dir, "alerts")
	cfg.CredentialsFile = creds
	cfg.ReloadInterval = time.Hour // the tests call sync themselves
	cfg.VMAlert.Endpoint = eng.srv.URL
	cfg.Alertmanager.Endpoint = eng.srv.URL
	cfg.Relay.NetAddr.Endpoint = "127.0.0.1:0"
	eng.rulesDir = filepath.Join(cfg.Directory, "rules")
	require.NoError(t, cfg.Validate())
	s, err := newAlertsServer(cfg, componenttest.NewNopTelemetrySettings())
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, s.Shutdown(context.Background())) })
	return &apiEnv{s: s, engines: eng, dir: cfg.Directory, creds: creds}
}

type apiAnswer struct {
	Status string          `json:"status"`
	Data   json.RawMessage `json:"data"`
	Error  string          `json:"error"`
	code   int
}

func (e *apiEnv) call(t *testing.T, tenant, method, path string, body any) apiAnswer {
	var rd *strings.Reader
	if s, ok := body.(string); ok {
		rd = strings.NewReader(s)
	} else {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = strings.NewReader(string(b))
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	e.s.ServeTenantAlerts(w, req, tenant, tenant+"-key")
	var a apiAnswer
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &a), w.Body.String())
	a.code = w.Code
	return a
}

func (e *apiEnv) rulesFile(t *testing.T, tenant string) []vmGroup {
	data, err := os.ReadFile(filepath.Join(e.dir, "rules", tenant+".yaml"))
	require.NoError(t, err)
	var f struct {
		Groups []vmGroup `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(data, &f))
	return f.Groups
}

func TestEveryTenantGetsThePackAndEnginesAreReloaded(t *testing.T) {
	e := newAPIEnv(t)
	require.Len(t, e.rulesFile(t, "acme"), 1)
	require.Len(t, e.rulesFile(t, "globex"), 1)
	require.Equal(t, int32(2), e.engines.reloads.Load(), "one reload each of vmalert and Alertmanager")
	token, err := os.ReadFile(filepath.Join(e.dir, "relay.token"))
	require.NoError(t, err)
	require.Len(t, string(token), 64)

	// Nothing changed: no reload.
	require.NoError(t, e.s.sync(context.Background()))
	require.Equal(t, int32(2), e.engines.reloads.Load())

	// A tenant removed from the credentials file loses its rules (its
	// state stays); one added gets the pack.
	writeTestCredentials(t, e.creds, "acme", "initech")
	reloadCreds(t, e)
	require.NoError(t, e.s.sync(context.Background()))
	_, err = os.Stat(filepath.Join(e.dir, "rules", "globex.yaml"))
	require.True(t, os.IsNotExist(err))
	require.Len(t, e.rulesFile(t, "initech"), 1)
	require.Equal(t, int32(4), e.engines.reloads.Load())

	// A broken credentials file changes nothing.
	require.NoError(t, os.WriteFile(e.creds, []byte("credentials: [\n"), 0o600))
	require.Error(t, e.s.creds.Start(), "the broken file is refused")
	require.NoError(t, e.s.sync(context.Background()))
	require.Len(t, e.rulesFile(t, "initech"), 1)
}

// reloadCreds has the credentials file read again now.
func reloadCreds(t *testing.T, e *apiEnv) {
	require.NoError(t, e.s.creds.Start())
	e.s.creds.Stop()
}

func TestTenantRulesThroughTheAPI(t *testing.T) {
	e := newAPIEnv(t)
	a := e.call(t, "globex", http.MethodPut, "/alerting/v1/rules/Mine", map[string]any{
		"expr": `label_replace(hw.status, "tenant_id", "acme", "", "")`, "for": "2m", "labels": map[string]string{"severity": "info"}})
	require.Equal(t, http.StatusOK, a.code, a.Error)
	groups := e.rulesFile(t, "globex")
	require.Len(t, groups, 2)
	require.Equal(t, map[string]string{"tenant_id": "globex"}, groups[1].Labels)
	require.Equal(t, []string{"tenant_id=globex"}, groups[1].Params["extra_label"])
	require.Len(t, e.rulesFile(t, "acme"), 1, "another tenant's file is untouched")

	for name, body := range map[string]string{
		"params":          `{"expr":"up","params":{"extra_label":["tenant_id=acme"]}}`,
		"headers":         `{"expr":"up","headers":{"X-Scope-OrgID":"acme"}}`,
		"type":            `{"expr":"up","type":"graphite"}`,
		"tenant label":    `{"expr":"up","labels":{"tenant_id":"acme"}}`,
		"query template":  `{"expr":"up","annotations":{"x":"{{ query \"up\" }}"}}`,
		"two objects":     `{"expr":"up"}{"expr":"up"}`,
		"pack name":       `{"expr":"up"}`,
		"not json":        `expr=up`,
		"bad for":         `{"expr":"up","for":"soon"}`,
		"unparseable exp": `{"expr":"sum("}`,
	} {
		path := "/alerting/v1/rules/Other"
		if name == "pack name" {
			path = "/alerting/v1/rules/GPUFailed"
		}
		a := e.call(t, "globex", http.MethodPut, path, body)
		require.Equal(t, http.StatusBadRequest, a.code, name)
		require.NotEmpty(t, a.Error, name)
	}
	require.Len(t, e.rulesFile(t, "globex")[1].Rules, 1, "no refused rule was stored")

	a = e.call(t, "globex", http.MethodGet, "/alerting/v1/rules", nil)
	require.Equal(t, http.StatusOK, a.code)
	var rules rulesAnswer
	require.NoError(t, json.Unmarshal(a.Data, &rules))
	require.Len(t, rules.Pack, len(defaultPack()))
	require.Len(t, rules.Rules, 1)
	require.Equal(t, "firing", rules.Engine["pack"][0].State, "globex's own group's state, not acme's")

	// The limit on rules.
	e.s.cfg.Limits.MaxRules = 2
	require.Equal(t, http.StatusOK, e.call(t, "globex", http.MethodPut, "/alerting/v1/rules/Two", `{"expr":"up"}`).code)
	a = e.call(t, "globex", http.MethodPut, "/alerting/v1/rules/Three", `{"expr":"up"}`)
	require.Equal(t, http.StatusBadRequest, a.code)
	require.Contains(t, a.Error, "the most it may have")
	require.Equal(t, http.StatusOK, e.call(t, "globex", http.MethodPut, "/alerting/v1/rules/Two", `{"expr":"up > 1"}`).code, "replacing is not adding")

	require.Equal(t, http.StatusOK, e.call(t, "globex", http.MethodDelete, "/alerting/v1/rules/Mine", nil).code)
	require.Equal(t, http.StatusNotFound, e.call(t, "globex", http.MethodDelete, "/alerting/v1/rules/Mine", nil).code)
	require.Equal(t, http.StatusNotFound, e.call(t, "acme", http.MethodDelete, "/alerting/v1/rules/Two", nil).code, "acme cannot delete globex's rule")
	require.Equal(t, http.StatusMethodNotAllowed, e.call(t, "acme", http.MethodPost, "/alerting/v1/rules", nil).code)
	require.Equal(t, http.StatusNotFound, e.call(t, "acme", http.MethodGet, "/alerting/v1/other", nil).code)
}

func TestReceiversThroughTheAPI(t *testing.T) {
	e := newAPIEnv(t)
	for _, u := range []string{
		"http://hooks.example.com/x", "https://127.0.0.1/x", "https://10.1.2.3/x", "https://169.254.169.254/latest",
		"https://[::1]/x", "https://user:pw@hooks.example.com/x", "https:///x", "ftp://x",
	} {
		a := e.call(t, "acme", http.MethodPut, "/alerting/v1/receivers/hook", map[string]string{"url": u})
		require.Equal(t, http.StatusBadRequest, a.code, u)
		require.True(t, strings.HasPrefix(a.Error, "url: "), a.Error)
	}
	a := e.call(t, "acme", http.MethodPut, "/alerting/v1/receivers/hook", map[string]string{"type": "pager", "url": "https://203.0.113.9/"})
	require.Equal(t, http.StatusBadRequest, a.code)
	require.Contains(t, a.Error, "type:")
	a = e.call(t, "acme", http.MethodPut, "/alerting/v1/receivers/bad-name", map[string]string{"url": "https://198.51.100.7/"})
	require.Equal(t, http.StatusBadRequest, a.code, "documentation ranges are refused too")

	// A public IP literal needs no DNS here.
	a = e.call(t, "acme", http.MethodPut, "/alerting/v1/receivers/hook", map[string]string{"url": "https://8.8.8.8/hook"})
	require.Equal(t, http.StatusOK, a.code, a.Error)
	var made receiverView
	require.NoError(t, json.Unmarshal(a.Data, &made))
	require.Len(t, made.Secret, 64, "the secret is in the answer that sets the receiver")
	a = e.call(t, "acme", http.MethodPut, "/alerting/v1/receivers/chat", map[string]string{"type": "slack", "url": "https://8.8.4.4/services/T/B/secret"})
	require.Equal(t, http.StatusOK, a.code, a.Error)

	a = e.call(t, "acme", http.MethodGet, "/alerting/v1/receivers", nil)
	require.NotContains(t, string(a.Data), made.Secret, "never listed again")
	require.NotContains(t, string(a.Data), "/services/T/B/secret", "a Slack URL is a secret")
	am, err := os.ReadFile(filepath.Join(e.dir, "alertmanager.yml"))
	require.NoError(t, err)
	require.Contains(t, string(am), "/deliver/acme/hook")
	require.Contains(t, string(am), "/deliver/acme/chat")
	require.NotContains(t, string(am), "8.8.8.8")

	a = e.call(t, "globex", http.MethodGet, "/alerting/v1/receivers", nil)
	require.Equal(t, "[]", strings.TrimSpace(string(a.Data)))
	require.Equal(t, http.StatusNotFound, e.call(t, "globex", http.MethodDelete, "/alerting/v1/receivers/hook", nil).code)
	require.Equal(t, http.StatusOK, e.call(t, "acme", http.MethodDelete, "/alerting/v1/receivers/hook", nil).code)
	am, err = os.ReadFile(filepath.Join(e.dir, "alertmanager.yml"))
	require.NoError(t, err)
	require.NotContains(t, string(am), "/deliver/acme/hook")
}

func TestAlertsAndSilencesAreTheTenantsOwn(t *testing.T) {
	e := newAPIEnv(t)
	e.engines.alerts = []amAlert{
		{Labels: map[string]string{"alertname": "GPUFailed", "alertgroup": "acme:pack", "tenant_id": "acme"}, Fingerprint: "a"},
		{Labels: map[string]string{"alertname": "GPUFailed", "alertgroup": "globex:pack", "tenant_id": "globex"}, Fingerprint: "g"},
		// globex's rule whose result carried a label that became tenant_id=acme.
		{Labels: map[string]string{"alertname": "Spoof", "alertgroup": "globex:custom", "tenant_id": "acme"}, Fingerprint: "s"},
	}
	a := e.call(t, "acme", http.MethodGet, "/alerting/v1/alerts", nil)
	require.Equal(t, http.StatusOK, a.code)
	require.Contains(t, string(a.Data), `"fingerprint":"a"`)
	require.NotContains(t, string(a.Data), "globex", "Alertmanager's filter is checked again")
	require.NotContains(t, string(a.Data), "Spoof", "whose an alert is comes from its group, not a label a query can set")

	for name, body := range map[string]string{
		"tenant matcher": `{"matchers":[{"name":"tenant_id","value":"globex","isRegex":false}],"duration":"1h"}`,
		"group matcher":  `{"matchers":[{"name":"alertgroup","value":"globex:pack","isRegex":false}],"duration":"1h"}`,
		"no matcher":     `{"matchers":[],"duration":"1h"}`,
		"too long":       `{"matchers":[{"name":"alertname","value":"X","isRegex":false}],"duration":"800h"}`,
		"bad regex":      `{"matchers":[{"name":"alertname","value":"(","isRegex":true}],"duration":"1h"}`,
		"extra field":    `{"matchers":[{"name":"alertname","value":"X","isRegex":false}],"duration":"1h","createdBy":"x"}`,
	} {
		a := e.call(t, "acme", http.MethodPost, "/alerting/v1/silences", body)
		require.Equal(t, http.StatusBadRequest, a.code, name)
	}
	a = e.call(t, "acme", http.MethodPost, "/alerting/v1/silences", `{"matchers":[{"name":"hw.id","value":"GPU-1","isRegex":false}],"duration":"1h"}`)
	require.Equal(t, http.StatusOK, a.code, a.Error)
	require.Len(t, e.engines.silences, 1)
	ms := e.engines.silences[0].Matchers
	require.Equal(t, Matcher{Name: "alertgroup", Value: "acme:.+", IsRegex: true, IsEqual: ms[len(ms)-1].IsEqual}, ms[len(ms)-1],
		"every silence is held to the tenant's own groups' alerts")
	require.Equal(t, "acme/acme-key", e.engines.silences[0].CreatedBy)

	a = e.call(t, "globex", http.MethodGet, "/alerting/v1/silences", nil)
	require.Equal(t, "[]", strings.TrimSpace(string(a.Data)))
	require.Equal(t, http.StatusNotFound, e.call(t, "globex", http.MethodDelete, "/alerting/v1/silences/s1", nil).code,
		"globex cannot expire acme's silence")
	require.Equal(t, http.StatusOK, e.call(t, "acme", http.MethodDelete, "/alerting/v1/silences/s1", nil).code)
	require.Equal(t, "expired", e.engines.silences[0].Status.State)

	// Expired silences count: making and expiring in a loop cannot fill
	// Alertmanager.
	e.s.cfg.Limits.MaxSilences = 2
	silence := `{"matchers":[{"name":"alertname","value":"X","isRegex":false}],"duration":"1h"}`
	require.Equal(t, http.StatusOK, e.call(t, "acme", http.MethodPost, "/alerting/v1/silences", silence).code)
	a = e.call(t, "acme", http.MethodPost, "/alerting/v1/silences", silence)
	require.Equal(t, http.StatusBadRequest, a.code)
	require.Contains(t, a.Error, "expired ones count")
	require.Equal(t, http.StatusOK, e.call(t, "globex", http.MethodPost, "/alerting/v1/silences", silence).code, "another tenant's count is its own")
}

// Replicas sharing the directory (two stores on it here) never lose each
// other's changes.
func TestConcurrentUpdatesFromTwoStoresKeepEveryChange(t *testing.T) {
	dir := t.TempDir()
	a, err := newStateStore(dir)
	require.NoError(t, err)
	b, err := newStateStore(dir)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := range 40 {
		st := a
		if i%2 == 1 {
			st = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			require.NoError(t, st.update("acme", func(s *tenantState) error {
				s.Rules = append(s.Rules, Rule{Name: fmt.Sprintf("R%d", i), Expr: "up"})
				return nil
			}))
		}()
	}
	wg.Wait()
	st, err := a.load("acme")
	require.NoError(t, err)
	require.Len(t, st.Rules, 40)
	info, err := os.Stat(a.path("acme"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "receivers' secrets are in it")
}

// A rule the engine refuses is undone: the tenant is told, and every
// tenant's rules stay as vmalert had them.
func TestARuleTheEngineRefusesIsUndone(t *testing.T) {
	e := newAPIEnv(t)
	require.Equal(t, http.StatusOK, e.call(t, "acme", http.MethodPut, "/alerting/v1/rules/Kept", `{"expr":"hw.power > 100"}`).code)
	e.engines.mu.Lock()
	e.engines.refuse = "refuse_me"
	e.engines.mu.Unlock()
	a := e.call(t, "acme", http.MethodPut, "/alerting/v1/rules/Bad", `{"expr":"refuse_me > 1"}`)
	require.Equal(t, http.StatusBadRequest, a.code)
	require.Contains(t, a.Error, "the alerting engine refused the change")
	st, err := e.s.state.load("acme")
	require.NoError(t, err)
	require.Len(t, st.Rules, 1)
	require.Equal(t, "Kept", st.Rules[0].Name)
	groups := e.rulesFile(t, "acme")
	require.Len(t, groups, 2)
	require.Len(t, groups[1].Rules, 1, "the file vmalert reads is back as it was")
	e.engines.mu.Lock()
	ok := e.engines.lastOK
	e.engines.mu.Unlock()
	require.True(t, ok, "the engines were reloaded with the files they had")
}
