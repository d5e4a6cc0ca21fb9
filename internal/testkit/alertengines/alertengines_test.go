package alertengines

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
)

// TestEnginesStartAndReload runs both engines (skipped where `make alerting`
// has not installed them): vmalert starts on a rules glob that matches
// nothing, picks up a file on reload and reports a reload of a bad file as
// failed; Alertmanager starts, rejects a bad config on reload and keeps
// answering.
func TestEnginesStartAndReload(t *testing.T) {
	root := proc.RepoRoot(t)
	vmalertBin, err := FindVMAlert(root)
	if err != nil {
		t.Skipf("vmalert absent: %v", err)
	}
	amBin, err := FindAlertmanager(root)
	if err != nil {
		t.Skipf("alertmanager absent: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules")
	if err := os.MkdirAll(rules, 0o755); err != nil {
		t.Fatal(err)
	}
	amConfig := filepath.Join(dir, "alertmanager.yml")
	write(t, amConfig, "route:\n  receiver: none\nreceivers:\n  - name: none\n")

	am, err := proc.RetryBind(3, t.Logf, func() (*Alertmanager, error) {
		return StartAlertmanager(ctx, amBin, AlertmanagerOptions{
			Addr: proc.Addr(proc.Port(t)), ConfigFile: amConfig, DataDir: filepath.Join(dir, "am"),
		}, nil)
	})
	if am != nil {
		t.Cleanup(am.Kill)
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, am.Output())
	}
	// The datasource is never queried: there are no rules that run long
	// enough to matter, and a refused connection is only a rule error.
	va, err := proc.RetryBind(3, t.Logf, func() (*VMAlert, error) {
		return StartVMAlert(ctx, vmalertBin, VMAlertOptions{
			Addr: proc.Addr(proc.Port(t)), DatasourceURL: "http://" + proc.Addr(proc.Port(t)),
			NotifierURL: am.URL(), RulesGlob: filepath.Join(rules, "*.yaml"), EvaluationInterval: time.Second,
		}, nil)
	})
	if va != nil {
		t.Cleanup(va.Kill)
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, va.Output())
	}

	write(t, filepath.Join(rules, "acme.yaml"), `groups:
  - name: acme-gpu
    params: {extra_label: ["tenant_id=acme"]}
    labels: {tenant_id: acme}
    rules:
      - alert: GPUFailed
        expr: 'hw.status{hw.state="failed"} == 1'
`)
	if err := va.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	groups := waitGroups(ctx, t, va, 1)
	if g := groups[0]; g.Name != "acme-gpu" || g.File != filepath.Join(rules, "acme.yaml") || len(g.Rules) != 1 {
		t.Fatalf("group after reload: %+v", g)
	}
	if ok, err := va.LastReloadOK(ctx); err != nil || !ok {
		t.Fatalf("last reload successful = %v, %v; want true", ok, err)
	}

	write(t, filepath.Join(rules, "bad.yaml"), "groups: [{name: bad, rules: [{alert: B, expr: 'sum('}]}]\n")
	if err := va.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, err := va.LastReloadOK(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a reload with a bad rules file reported successful")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if g := waitGroups(ctx, t, va, 1); g[0].Name != "acme-gpu" {
		t.Fatalf("the old rules should stay after a failed reload: %+v", g)
	}

	write(t, amConfig, "route: [\n")
	if err := am.Reload(ctx); err == nil {
		t.Fatal("Alertmanager accepted a bad config on reload")
	}
	if _, err := am.Alerts(ctx, `tenant_id="acme"`); err != nil {
		t.Fatalf("alerts after a failed reload: %v", err)
	}
}

func waitGroups(ctx context.Context, t *testing.T, va *VMAlert, n int) []RuleGroup {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, err := va.Rules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(g) == n {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("vmalert has %d rule groups, want %d: %+v", len(g), n, g)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
