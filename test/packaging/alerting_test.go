//go:build system

package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/alertengines"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
)

// alertsFiles are what the engines read of an alerts directory.
func alertsFiles(dir string) (rules, amConfig string) {
	return dir + "/rules/*.yaml", dir + "/alertmanager.yml"
}

// packagedStateDir is a packaged unit's OTELCOL_GPU_STATE_DIR.
func packagedStateDir(t *testing.T, unit string) string {
	t.Helper()
	data := string(must(os.ReadFile(filepath.Join(proc.RepoRoot(t), "packaging", "default", unit))))
	m := regexp.MustCompile(`(?m)^OTELCOL_GPU_STATE_DIR=(.+)$`).FindStringSubmatch(data)
	require.NotNil(t, m, unit)
	return m[1]
}

// engineFlags reads the flags of an env file's one VAR="..." line.
func engineFlags(t *testing.T, name, variable string) []string {
	t.Helper()
	data := string(must(os.ReadFile(filepath.Join(proc.RepoRoot(t), "deploy", "alerting", name))))
	m := regexp.MustCompile(`(?m)^` + variable + `="([^"]*)"$`).FindStringSubmatch(data)
	require.NotNil(t, m, "%s: no %s", name, variable)
	return strings.Fields(m[1])
}

// The engines' units pass systemd's checks with the pinned binaries, and
// read the files where tenant_alerts writes them in the packaged configs.
func TestAlertEngineUnits(t *testing.T) {
	root := proc.RepoRoot(t)
	vmalert, err := alertengines.FindVMAlert(root)
	require.NoError(t, err)
	am, err := alertengines.FindAlertmanager(root)
	require.NoError(t, err)
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatalf("systemd-analyze is needed (Debian package systemd): %v", err)
	}
	dir := t.TempDir()
	for unit, bin := range map[string]string{"otelcol-gpu-vmalert.service": vmalert, "otelcol-gpu-alertmanager.service": am} {
		src := string(must(os.ReadFile(filepath.Join(root, "deploy", "alerting", unit))))
		for _, want := range []string{"NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=\n", "Restart=on-failure", "User=otelcol-gpu"} {
			require.Contains(t, src, want, unit)
		}
		src = strings.ReplaceAll(src, "/usr/local/bin/"+filepath.Base(bin), bin)
		src = strings.ReplaceAll(src, "EnvironmentFile=", "EnvironmentFile=-")
		path := filepath.Join(dir, unit)
		require.NoError(t, os.WriteFile(path, []byte(src), 0o644))
		out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
		require.NoError(t, err, "%s:\n%s", unit, out)
		require.NotContains(t, string(out), unit+":", "no warning about the unit itself:\n%s", out)
	}

	// The engines read the read tier's directory: tenant_alerts writes it
	// under the query unit's state directory (config/query.yaml).
	alertRuleGlob, amConfigFile := alertsFiles(packagedStateDir(t, "otelcol-gpu-query") + "/alerts")
	vm := engineFlags(t, "vmalert.env", "VMALERT_FLAGS")
	require.Contains(t, vm, "-rule="+alertRuleGlob)
	require.Contains(t, vm, "-notifier.url=http://127.0.0.1:9093")
	require.Contains(t, vm, "-httpListenAddr=127.0.0.1:8880", "where config/gateway.yaml's tenant_alerts reloads it")
	amFlags := engineFlags(t, "alertmanager.env", "ALERTMANAGER_FLAGS")
	require.Contains(t, amFlags, "--config.file="+amConfigFile)
	require.Contains(t, amFlags, "--web.listen-address=127.0.0.1:9093")

	// The packaged configs write there, and reload the engines there.
	for _, name := range []string{"gateway.yaml", "query.yaml"} {
		cfg := string(must(os.ReadFile(filepath.Join(root, "config", name))))
		require.Contains(t, cfg, "directory: ${env:OTELCOL_GPU_STATE_DIR:-/var/lib/otelcol-gpu}/alerts", name)
		require.Contains(t, cfg, "${env:OTELCOL_GPU_VMALERT_URL:-http://127.0.0.1:8880}", name)
		require.Contains(t, cfg, "${env:OTELCOL_GPU_ALERTMANAGER_URL:-http://127.0.0.1:9093}", name)
	}
}

// The Kubernetes pieces fit: the engines read the shared alerts volume
// where the read tier writes, at the pinned releases, and Alertmanager
// reaches the relay through its Service.
func TestKubernetesAlertingManifests(t *testing.T) {
	root := proc.RepoRoot(t)
	query := manifest(t, "query.yaml")["StatefulSet/otelcol-gpu-query"]
	alertsDir := envValues(firstContainer(query))["OTELCOL_GPU_STATE_DIR"] + "/alerts"
	alertRuleGlob, amConfigFile := alertsFiles(alertsDir)
	kinds := map[string]map[string]any{}
	for _, name := range []string{"kubernetes.yaml", "query-patch.yaml"} {
		for _, d := range decodeAll(t, filepath.Join(root, "deploy", "alerting", name)) {
			kinds[d["kind"].(string)+"/"+dig(d, "metadata", "name").(string)] = d
		}
	}
	require.Equal(t, []any{"ReadWriteMany"}, dig(kinds["PersistentVolumeClaim/otelcol-gpu-alerts"], "spec", "accessModes"),
		"every read-tier replica shares the tenants' alert state")

	vmalert := firstContainer(kinds["Deployment/otelcol-gpu-vmalert"])
	require.Equal(t, "victoriametrics/vmalert:"+alertengines.VMAlertVersion, vmalert["image"])
	require.Contains(t, vmalert["args"], "-rule="+alertRuleGlob)
	require.Contains(t, vmalert["args"], "-notifier.url=http://otelcol-gpu-alertmanager:9093")
	require.True(t, keys(vmalert["volumeMounts"], "mountPath")[alertsDir])

	am := firstContainer(kinds["StatefulSet/otelcol-gpu-alertmanager"])
	require.Equal(t, "prom/alertmanager:"+alertengines.AlertmanagerVersion, am["image"])
	require.Contains(t, am["args"], "--config.file="+amConfigFile)
	require.True(t, keys(am["volumeMounts"], "mountPath")[alertsDir])
	require.NotEmpty(t, dig(kinds["StatefulSet/otelcol-gpu-alertmanager"], "spec", "volumeClaimTemplates"),
		"the notification log and silences outlive the pod")

	patch := kinds["StatefulSet/otelcol-gpu-query"]
	require.NotNil(t, patch, "the patch is of the read tier, where tenant_alerts runs")
	require.Equal(t, firstContainer(query)["name"], firstContainer(patch)["name"], "the patch names the read tier's container")
	env := envValues(firstContainer(patch))
	require.Equal(t, "http://otelcol-gpu-vmalert:8880", env["OTELCOL_GPU_VMALERT_URL"])
	require.Equal(t, "http://otelcol-gpu-alertmanager:9093", env["OTELCOL_GPU_ALERTMANAGER_URL"])
	require.Equal(t, "http://otelcol-gpu-alerts-relay:9095", env["OTELCOL_GPU_ALERTS_RELAY_URL"])
	require.NotNil(t, kinds["Service/otelcol-gpu-alerts-relay"])
	require.Equal(t, dig(query, "spec", "template", "metadata", "labels"), dig(kinds["Service/otelcol-gpu-alerts-relay"], "spec", "selector"),
		"the relay Service selects the read tier's pods")
	require.True(t, keys(firstContainer(patch)["volumeMounts"], "mountPath")[alertsDir])
}
