package tenantalertsextension

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxEngineAnswer bounds an answer read from vmalert or Alertmanager.
const maxEngineAnswer = 32 << 20

// engines talks to vmalert and Alertmanager on the provider's side.
type engines struct {
	vmalert, alertmanager       *http.Client
	vmalertURL, alertmanagerURL string
}

func (e *engines) call(ctx context.Context, client *http.Client, method, u string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxEngineAnswer))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return &engineError{status: resp.StatusCode, body: strings.TrimSpace(string(data))}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// engineError is an engine's refusal, with what it said.
type engineError struct {
	status int
	body   string
}

func (e *engineError) Error() string {
	b := e.body
	if len(b) > 300 {
		b = b[:300] + "..."
	}
	return fmt.Sprintf("status %d: %s", e.status, b)
}

// errEngineRefused says an engine read the files and refused them (it
// keeps its previous configuration, for every tenant).
var errEngineRefused = errors.New("refused the new configuration")

// reloadPoll is how often vmalert's metrics are read while its reload runs.
const reloadPoll = 50 * time.Millisecond

// reload has both engines read their files again, and waits for vmalert's
// verdict: its /-/reload answers 200 at once and reloads in the
// background, refusing every file if one does not load, which only its
// metrics tell.
func (e *engines) reload(ctx context.Context) error {
	before, _, err := e.vmalertReloads(ctx)
	if err != nil {
		return fmt.Errorf("vmalert: %w", err)
	}
	if err := e.call(ctx, e.vmalert, http.MethodPost, e.vmalertURL+"/-/reload", nil, nil); err != nil {
		return fmt.Errorf("vmalert reload: %w", err)
	}
	for {
		total, ok, err := e.vmalertReloads(ctx)
		if err != nil {
			return fmt.Errorf("vmalert: %w", err)
		}
		if total > before {
			if !ok {
				return fmt.Errorf("vmalert %w (its log says why)", errEngineRefused)
			}
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vmalert reload: no verdict: %w", ctx.Err())
		case <-time.After(reloadPoll):
		}
	}
	if err := e.call(ctx, e.alertmanager, http.MethodPost, e.alertmanagerURL+"/-/reload", nil, nil); err != nil {
		var ee *engineError
		if errors.As(err, &ee) && ee.status == http.StatusInternalServerError {
			return fmt.Errorf("alertmanager %w: %s", errEngineRefused, ee.body)
		}
		return fmt.Errorf("alertmanager reload: %w", err)
	}
	return nil
}

// vmalertReloads reads vmalert's count of config reloads and whether the
// last one succeeded.
func (e *engines) vmalertReloads(ctx context.Context) (total float64, ok bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.vmalertURL+"/metrics", http.NoBody)
	if err != nil {
		return 0, false, err
	}
	resp, err := e.vmalert.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return 0, false, fmt.Errorf("/metrics: status %d", resp.StatusCode)
	}
	found := 0
	sc := bufio.NewScanner(io.LimitReader(resp.Body, maxEngineAnswer))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, cut := strings.Cut(sc.Text(), " ")
		if !cut {
			continue
		}
		switch name {
		case "vmalert_config_last_reload_total":
			total, err = strconv.ParseFloat(value, 64)
			found++
		case "vmalert_config_last_reload_successful":
			ok = value == "1"
			found++
		}
		if err != nil {
			return 0, false, fmt.Errorf("/metrics: %s: %w", name, err)
		}
	}
	if found != 2 {
		return 0, false, errors.New("/metrics: no vmalert_config_last_reload_total or _successful (is this vmalert?)")
	}
	return total, ok, sc.Err()
}

// amAlert is an alert as Alertmanager's API v2 lists it.
type amAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	UpdatedAt   time.Time         `json:"updatedAt"`
	Fingerprint string            `json:"fingerprint"`
	Status      struct {
		State       string   `json:"state"`
		SilencedBy  []string `json:"silencedBy"`
		InhibitedBy []string `json:"inhibitedBy"`
	} `json:"status"`
}

// alerts lists a tenant's alerts: those of its groups (Alertmanager
// filters, and every alert is checked again here).
func (e *engines) alerts(ctx context.Context, tenant string) ([]amAlert, error) {
	q := url.Values{"filter": {ownerMatcher(tenant)}}
	var all []amAlert
	if err := e.call(ctx, e.alertmanager, http.MethodGet, e.alertmanagerURL+"/api/v2/alerts?"+q.Encode(), nil, &all); err != nil {
		return nil, fmt.Errorf("alertmanager: %w", err)
	}
	out := all[:0]
	for _, a := range all {
		if ownedBy(a.Labels, tenant) {
			out = append(out, a)
		}
	}
	return out, nil
}

// Matcher is one matcher of a silence.
type Matcher struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	IsRegex bool   `json:"isRegex"`
	IsEqual *bool  `json:"isEqual,omitempty"`
}

// amSilence is a silence as Alertmanager's API v2 has it.
type amSilence struct {
	ID        string    `json:"id,omitempty"`
	Matchers  []Matcher `json:"matchers"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	CreatedBy string    `json:"createdBy"`
	Comment   string    `json:"comment"`
	Status    *struct {
		State string `json:"state"`
	} `json:"status,omitempty"`
}

// ownerSilenceMatcher is the matcher every silence made through the read
// path gets: it can only ever mute the tenant's own alerts.
func ownerSilenceMatcher(tenant string) Matcher {
	eq := true
	return Matcher{Name: groupLabel, Value: ownerPattern(tenant), IsRegex: true, IsEqual: &eq}
}

// ownedBy says whether a silence is the tenant's: it has the tenant's
// owner matcher.
func (s *amSilence) ownedBy(tenant string) bool {
	own := ownerSilenceMatcher(tenant)
	for _, m := range s.Matchers {
		if m.Name == own.Name && m.Value == own.Value && m.IsRegex && (m.IsEqual == nil || *m.IsEqual) {
			return true
		}
	}
	return false
}

// silences lists the tenant's silences (expired ones included, as
// Alertmanager keeps them for a while).
func (e *engines) silences(ctx context.Context, tenant string) ([]amSilence, error) {
	q := url.Values{"filter": {ownerMatcher(tenant)}}
	var all []amSilence
	if err := e.call(ctx, e.alertmanager, http.MethodGet, e.alertmanagerURL+"/api/v2/silences?"+q.Encode(), nil, &all); err != nil {
		return nil, fmt.Errorf("alertmanager: %w", err)
	}
	out := all[:0]
	for _, s := range all {
		if s.ownedBy(tenant) {
			out = append(out, s)
		}
	}
	return out, nil
}

func (e *engines) createSilence(ctx context.Context, s amSilence) (string, error) {
	var out struct {
		SilenceID string `json:"silenceID"`
	}
	if err := e.call(ctx, e.alertmanager, http.MethodPost, e.alertmanagerURL+"/api/v2/silences", s, &out); err != nil {
		return "", fmt.Errorf("alertmanager: %w", err)
	}
	return out.SilenceID, nil
}

func (e *engines) expireSilence(ctx context.Context, id string) error {
	if err := e.call(ctx, e.alertmanager, http.MethodDelete, e.alertmanagerURL+"/api/v2/silence/"+url.PathEscape(id), nil, nil); err != nil {
		return fmt.Errorf("alertmanager: %w", err)
	}
	return nil
}

// vmRuleState is what vmalert says of one rule.
type vmRuleState struct {
	Name           string    `json:"name"`
	State          string    `json:"state"`
	Health         string    `json:"health"`
	LastError      string    `json:"lastError"`
	LastSamples    int       `json:"lastSamples"`
	LastEvaluation time.Time `json:"lastEvaluation"`
	Alerts         []struct {
		State string `json:"state"`
	} `json:"alerts"`
}

type vmGroupState struct {
	Name  string        `json:"name"`
	File  string        `json:"file"`
	Rules []vmRuleState `json:"rules"`
}

// ruleStates lists what vmalert says of the tenant's groups (found by
// name, which only this extension writes).
func (e *engines) ruleStates(ctx context.Context, tenant string) (map[string][]vmRuleState, error) {
	var out struct {
		Data struct {
			Groups []vmGroupState `json:"groups"`
		} `json:"data"`
	}
	if err := e.call(ctx, e.vmalert, http.MethodGet, e.vmalertURL+"/api/v1/rules", nil, &out); err != nil {
		return nil, fmt.Errorf("vmalert: %w", err)
	}
	states := map[string][]vmRuleState{}
	for _, g := range out.Data.Groups {
		for _, which := range []string{packGroup, customGroup} {
			if g.Name == groupName(tenant, which) {
				states[which] = g.Rules
			}
		}
	}
	return states, nil
}
