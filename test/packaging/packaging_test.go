//go:build system

// Package packaging checks what make package builds and the deployment
// files: package contents and scripts, the systemd units, the packaged
// configs against the packaged binary, the Kubernetes manifests and the
// cloud-init example.
package packaging

import (
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
)

func dist(t *testing.T) string {
	d := os.Getenv("OTELCOL_GPU_DIST")
	if d == "" {
		d = filepath.Join(proc.RepoRoot(t), "dist")
	}
	return d
}

func pkg(t *testing.T, pattern string) string {
	matches, err := filepath.Glob(filepath.Join(dist(t), pattern))
	require.NoError(t, err)
	require.Len(t, matches, 1, "run 'make package': %s", pattern)
	return matches[0]
}

func run(t *testing.T, name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %v:\n%s", name, args, out)
	return string(out)
}

var packaged = []string{
	"./usr/bin/otelcol-gpu",
	"./usr/bin/otelcol-gpu-usage",
	"./etc/otelcol-gpu/agent.yaml",
	"./etc/otelcol-gpu/gateway.yaml",
	"./etc/otelcol-gpu/usage.yaml",
	"./etc/otelcol-gpu/query.yaml",
	"./etc/default/otelcol-gpu-agent",
	"./etc/default/otelcol-gpu-gateway",
	"./etc/default/otelcol-gpu-usage",
	"./etc/default/otelcol-gpu-query",
	"./usr/lib/systemd/system/otelcol-gpu-agent.service",
	"./usr/lib/systemd/system/otelcol-gpu-gateway.service",
	"./usr/lib/systemd/system/otelcol-gpu-usage.service",
	"./usr/lib/systemd/system/otelcol-gpu-query.service",
	"./usr/share/otelcol-gpu/store/victoria-metrics.flags",
	"./usr/share/otelcol-gpu/store/victoria-logs.flags",
}

// roles are the packaged units: otelcol-gpu-<role>.service runs
// /etc/otelcol-gpu/<role>.yaml with /etc/default/otelcol-gpu-<role>.
var roles = []string{"agent", "gateway", "usage", "query"}

func TestDebPackages(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			deb := pkg(t, "otelcol-gpu_*_"+arch+".deb")
			contents := run(t, "dpkg-deb", "-c", deb)
			for _, f := range packaged {
				require.Contains(t, contents, f)
			}
			info := run(t, "dpkg-deb", "-I", deb)
			require.Contains(t, info, "Architecture: "+arch)
			for _, s := range []string{"preinst", "postinst", "prerm", "postrm", "conffiles"} {
				require.Contains(t, info, s)
			}
			dir := t.TempDir()
			run(t, "dpkg-deb", "-e", deb, filepath.Join(dir, "DEBIAN"))
			cf, err := os.ReadFile(filepath.Join(dir, "DEBIAN", "conffiles"))
			require.NoError(t, err)
			for _, role := range roles {
				for _, f := range []string{"/etc/otelcol-gpu/" + role + ".yaml", "/etc/default/otelcol-gpu-" + role} {
					require.Contains(t, string(cf), f, "config files survive upgrades")
				}
			}
			postrm, err := os.ReadFile(filepath.Join(dir, "DEBIAN", "postrm"))
			require.NoError(t, err)
			require.Contains(t, string(postrm), "purge)", "only purge removes config and queues")

			run(t, "dpkg-deb", "-x", deb, filepath.Join(dir, "root"))
			f, err := elf.Open(filepath.Join(dir, "root", "usr", "bin", "otelcol-gpu"))
			require.NoError(t, err)
			defer func() { _ = f.Close() }()
			want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
			require.Equal(t, want, f.Machine)
			flags, err := f.DynValue(elf.DT_FLAGS_1)
			require.NoError(t, err)
			for _, v := range flags {
				require.Zero(t, v&uint64(elf.DF_1_NOW), "never BIND_NOW: go-nvml resolves NVML symbols lazily")
			}

			// The usage report beside the job's unit, for the same machine.
			u, err := elf.Open(filepath.Join(dir, "root", "usr", "bin", "otelcol-gpu-usage"))
			require.NoError(t, err)
			defer func() { _ = u.Close() }()
			require.Equal(t, want, u.Machine)
			if arch == "amd64" {
				out, err := exec.Command(filepath.Join(dir, "root", "usr", "bin", "otelcol-gpu-usage")).CombinedOutput()
				require.Error(t, err, "no command given")
				require.Contains(t, string(out), "usage report -from HOUR -to HOUR")
			}
		})
	}
}

func TestRpmPackagesBuild(t *testing.T) {
	for _, arch := range []string{"x86_64", "aarch64"} {
		rpm := pkg(t, "otelcol-gpu-*."+arch+".rpm")
		b, err := os.ReadFile(rpm)
		require.NoError(t, err)
		require.True(t, bytes.HasPrefix(b, []byte{0xed, 0xab, 0xee, 0xdb}), "%s is an RPM", rpm)
		require.Contains(t, string(b), "otelcol-gpu")
	}
}

// The packaged configs validate with the packaged (amd64) binary, run with
// the arguments of the packaged unit and its environment file.
func TestPackagedConfigsValidate(t *testing.T) {
	dir := t.TempDir()
	run(t, "dpkg-deb", "-x", pkg(t, "otelcol-gpu_*_amd64.deb"), dir)
	bin := filepath.Join(dir, "usr", "bin", "otelcol-gpu")
	for _, role := range roles {
		env := os.Environ()
		if role == "usage" {
			// The one setting the operator must make.
			env = append(env, "OTELCOL_GPU_BILLING_URL=https://openmeter.example/api/v1/events")
		}
		for _, line := range strings.Split(string(must(os.ReadFile(filepath.Join(dir, "etc", "default", "otelcol-gpu-"+role)))), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				env = append(env, line)
			}
		}
		args := unitArgs(t, string(must(os.ReadFile(filepath.Join(dir, "usr", "lib", "systemd", "system", "otelcol-gpu-"+role+".service")))))
		require.Equal(t, []string{"--config", "/etc/otelcol-gpu/" + role + ".yaml"}, args[:2], role)
		cmd := exec.Command(bin, append([]string{"validate"}, underRoot(dir, args)...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s:\n%s", role, out)
	}

	// The read tier runs no pipeline, which the collector refuses unless
	// the unit turns the gate on.
	out, err := exec.Command(bin, "validate", "--config", filepath.Join(dir, "etc", "otelcol-gpu", "query.yaml")).CombinedOutput()
	require.Error(t, err, "query.yaml without --feature-gates=service.AllowNoPipelines:\n%s", out)
	require.Contains(t, string(out), "at least one pipeline")
}

// The read tier runs the gateway's read path, setting for setting, and
// nothing else: a change to one config's tenant_query block is made to both.
func TestQueryConfigIsTheGatewaysReadPath(t *testing.T) {
	root := proc.RepoRoot(t)
	gateway := decodeAll(t, filepath.Join(root, "config", "gateway.yaml"))[0]
	query := decodeAll(t, filepath.Join(root, "config", "query.yaml"))[0]
	require.Equal(t, dig(gateway, "extensions", "tenant_query"), dig(query, "extensions", "tenant_query"))
	require.Equal(t, dig(gateway, "extensions", "health_check"), dig(query, "extensions", "health_check"))
	require.Equal(t, dig(gateway, "service", "telemetry"), dig(query, "service", "telemetry"))
	require.Equal(t, dig(gateway, "extensions", "tenant_alerts"), dig(query, "extensions", "tenant_alerts"))
	require.Equal(t, []any{"health_check", "tenant_alerts", "tenant_query"}, dig(query, "service", "extensions"))
	for _, k := range []string{"receivers", "processors", "exporters", "connectors"} {
		require.Nil(t, query[k], "no %s in the read tier", k)
	}
	require.Nil(t, dig(query, "service", "pipelines"))
}

// unitArgs are the arguments of a unit's ExecStart after the binary.
func unitArgs(t *testing.T, unit string) []string {
	t.Helper()
	for _, line := range strings.Split(unit, "\n") {
		if rest, ok := strings.CutPrefix(line, "ExecStart="); ok {
			f := strings.Fields(rest)
			require.Equal(t, "/usr/bin/otelcol-gpu", f[0])
			return f[1:]
		}
	}
	t.Fatalf("no ExecStart in\n%s", unit)
	return nil
}

// underRoot moves the absolute paths among args under root.
func underRoot(root string, args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.HasPrefix(a, "/") {
			a = filepath.Join(root, a)
		}
		out[i] = a
	}
	return out
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// systemd-analyze verify needs the ExecStart binary: check copies that
// point at the built one.
func TestSystemdUnitsVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatalf("systemd-analyze is needed (Debian package systemd): %v", err)
	}
	root := proc.RepoRoot(t)
	bin := filepath.Join(root, "bin", "otelcol-gpu")
	dir := t.TempDir()
	for _, role := range roles {
		unit := "otelcol-gpu-" + role + ".service"
		src := string(must(os.ReadFile(filepath.Join(root, "packaging", "systemd", unit))))
		for _, want := range []string{"NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
			"CapabilityBoundingSet=\n", "Restart=on-failure", "StateDirectory=", "User=otelcol-gpu"} {
			require.Contains(t, src, want, unit)
		}
		src = strings.ReplaceAll(src, "/usr/bin/otelcol-gpu", bin)
		src = strings.ReplaceAll(src, "EnvironmentFile=", "EnvironmentFile=-")
		path := filepath.Join(dir, unit)
		require.NoError(t, os.WriteFile(path, []byte(src), 0o644))
		out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
		require.NoError(t, err, "%s:\n%s", unit, out)
		require.NotContains(t, string(out), unit+":", "no warning about the unit itself:\n%s", out)
	}
}

func decodeAll(t *testing.T, path string) []map[string]any {
	dec := yaml.NewDecoder(bytes.NewReader(must(os.ReadFile(path))))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		require.NoError(t, err, path)
		docs = append(docs, d)
	}
}

func dig(m any, path ...string) any {
	for _, p := range path {
		mm, ok := m.(map[string]any)
		if !ok {
			return nil
		}
		m = mm[p]
	}
	return m
}

// manifest decodes deploy/kubernetes/<name> into its objects by kind/name.
func manifest(t *testing.T, name string) map[string]map[string]any {
	t.Helper()
	kinds := map[string]map[string]any{}
	for _, d := range decodeAll(t, filepath.Join(proc.RepoRoot(t), "deploy", "kubernetes", name)) {
		require.NotEmpty(t, d["apiVersion"])
		kinds[d["kind"].(string)+"/"+dig(d, "metadata", "name").(string)] = d
	}
	return kinds
}

// firstContainer is a workload's first container.
func firstContainer(workload map[string]any) map[string]any {
	return dig(workload, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)
}

// keys collects the values of key in a list of objects (a container's
// ports by name, its mounts by mountPath).
func keys(list any, key string) map[string]bool {
	out := map[string]bool{}
	for _, v := range list.([]any) {
		out[v.(map[string]any)[key].(string)] = true
	}
	return out
}

// secrets are the Secrets a workload's pods mount.
func secrets(workload map[string]any) map[string]bool {
	out := map[string]bool{}
	for _, v := range dig(workload, "spec", "template", "spec", "volumes").([]any) {
		if s := dig(v, "secret", "secretName"); s != nil {
			out[s.(string)] = true
		}
	}
	return out
}

// envValues are a container's literal environment values.
func envValues(c map[string]any) map[string]string {
	out := map[string]string{}
	for _, e := range c["env"].([]any) {
		if v, ok := e.(map[string]any)["value"].(string); ok {
			out[e.(map[string]any)["name"].(string)] = v
		}
	}
	return out
}

func TestKubernetesManifests(t *testing.T) {
	kinds := manifest(t, "gateway.yaml")
	sts := kinds["StatefulSet/otelcol-gpu-gateway"]
	require.NotNil(t, sts)
	require.NotEmpty(t, dig(sts, "spec", "volumeClaimTemplates"), "a volume per replica for the queues")
	c := firstContainer(sts)
	require.NotNil(t, dig(c, "lifecycle", "preStop"), "preStop drain")
	require.True(t, keys(c["volumeMounts"], "mountPath")["/var/lib/otelcol-gpu"])
	sec := secrets(sts)
	require.True(t, sec["otelcol-gpu-credentials"] && sec["otelcol-gpu-tls"], "credentials and certificates from Secrets")
	require.NotNil(t, kinds["Service/otelcol-gpu-gateway"])
	require.Equal(t, "StatefulSet", dig(kinds["HorizontalPodAutoscaler/otelcol-gpu-gateway"], "spec", "scaleTargetRef", "kind"))
	require.NotNil(t, kinds["PodDisruptionBudget/otelcol-gpu-gateway"])

	// Ingest only: the read tier is query.yaml's. The gateways' own read
	// listener is off, as the collector reads their arguments.
	require.Nil(t, kinds["Service/otelcol-gpu-query"], "the read Service selects the read tier (query.yaml)")
	require.False(t, keys(c["ports"], "name")["query"], "no read listener in the gateways")
	extensions := dig(effectiveConfig(t, c), "service", "extensions").([]any)
	require.Contains(t, extensions, "tenant_auth")
	require.NotContains(t, extensions, "tenant_query")
}

// The read tier: its own pods behind the read Service (browser affinity),
// each tenant's limits divided by a replica count equal to the
// StatefulSet's, the read records' log on a volume that outlives the pod,
// and arguments the collector accepts for config/query.yaml.
func TestKubernetesQueryManifest(t *testing.T) {
	kinds := manifest(t, "query.yaml")
	for k := range kinds {
		require.False(t, strings.HasPrefix(k, "HorizontalPodAutoscaler/"), "limits.replicas is fixed: no autoscaler")
	}
	sts := kinds["StatefulSet/otelcol-gpu-query"]
	require.NotNil(t, sts)
	svc := kinds["Service/otelcol-gpu-query"]
	require.NotNil(t, svc, "the customers' read API")
	require.Equal(t, "ClientIP", dig(svc, "spec", "sessionAffinity"), "browser sessions live in one replica")
	podLabels := dig(sts, "spec", "template", "metadata", "labels").(map[string]any)
	for k, v := range dig(svc, "spec", "selector").(map[string]any) {
		require.Equal(t, v, podLabels[k], "the read Service selects the read tier's pods")
	}
	require.NotEmpty(t, dig(sts, "spec", "volumeClaimTemplates"), "the read records' log outlives the pod")
	require.NotNil(t, kinds["PodDisruptionBudget/otelcol-gpu-query"])

	c := firstContainer(sts)
	env := envValues(c)
	require.Equal(t, strconv.Itoa(dig(sts, "spec", "replicas").(int)), env["OTELCOL_GPU_QUERY_REPLICAS"],
		"each replica enforces its share of the tier's limits: replicas as many as there are")
	require.Equal(t, "/var/lib/otelcol-gpu", env["OTELCOL_GPU_STATE_DIR"])
	mounts := keys(c["volumeMounts"], "mountPath")
	require.True(t, mounts["/var/lib/otelcol-gpu"] && mounts["/etc/otelcol-gpu/query.yaml"])
	sec := secrets(sts)
	require.True(t, sec["otelcol-gpu-credentials"] && sec["otelcol-gpu-tls"], "credentials and certificates from Secrets")
	ports := keys(c["ports"], "name")
	require.True(t, ports["query"] && ports["health"])

	cfg := effectiveConfig(t, c)
	require.Equal(t, []any{"health_check", "tenant_alerts", "tenant_query"}, dig(cfg, "service", "extensions"))
	require.Empty(t, dig(cfg, "service", "pipelines"), "nothing of the data path")
	require.Equal(t, dig(sts, "spec", "replicas"), dig(cfg, "extensions", "tenant_query", "limits", "replicas"))
}

// effectiveConfig validates a manifest container's arguments, with its
// environment, against the repository's config files with the built binary,
// and returns the configuration the collector resolves from them.
func effectiveConfig(t *testing.T, c map[string]any) map[string]any {
	t.Helper()
	root := proc.RepoRoot(t)
	var args []string
	for _, a := range c["args"].([]any) {
		if s := a.(string); strings.HasPrefix(s, "/etc/otelcol-gpu/") && strings.HasSuffix(s, ".yaml") {
			args = append(args, filepath.Join(root, "config", filepath.Base(s)))
		} else {
			args = append(args, s)
		}
	}
	env := os.Environ()
	for k, v := range envValues(c) {
		env = append(env, k+"="+v)
	}
	bin := proc.Binary(t)
	cmd := exec.Command(bin, append([]string{"validate"}, args...)...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "validate %v:\n%s", args, out)
	cmd = exec.Command(bin, append([]string{"print-config"}, args...)...)
	cmd.Env = env
	out, err = cmd.Output()
	require.NoError(t, err, "print-config %v", args)
	var cfg map[string]any
	require.NoError(t, yaml.Unmarshal(out, &cfg), "%s", out)
	return cfg
}

// The usage job: exactly one replica, its state on its own volume, the
// billing URL from a Secret, and the config file the release ships.
func TestKubernetesUsageManifest(t *testing.T) {
	docs := decodeAll(t, filepath.Join(proc.RepoRoot(t), "deploy", "kubernetes", "usage.yaml"))
	require.Len(t, docs, 1)
	sts := docs[0]
	require.Equal(t, "StatefulSet", sts["kind"])
	require.Equal(t, 1, dig(sts, "spec", "replicas"), "one usage job per store")
	require.NotEmpty(t, dig(sts, "spec", "volumeClaimTemplates"), "the cursor survives a reschedule")
	c := firstContainer(sts)
	require.Equal(t, []any{"--config", "/etc/otelcol-gpu/usage.yaml"}, c["args"])
	env := map[string]any{}
	for _, e := range c["env"].([]any) {
		env[e.(map[string]any)["name"].(string)] = e
	}
	require.Equal(t, "otelcol-gpu-billing", dig(env["OTELCOL_GPU_BILLING_URL"], "valueFrom", "secretKeyRef", "name"))
	require.Equal(t, "/var/lib/otelcol-gpu", dig(env["OTELCOL_GPU_STATE_DIR"], "value"))
	mounts := keys(c["volumeMounts"], "mountPath")
	require.True(t, mounts["/var/lib/otelcol-gpu"] && mounts["/etc/otelcol-gpu/usage.yaml"])
}

func TestCloudInitUsesOnlyWhatThePackageInstalls(t *testing.T) {
	root := proc.RepoRoot(t)
	raw := must(os.ReadFile(filepath.Join(root, "deploy", "cloud-init", "agent-user-data.yaml")))
	require.True(t, bytes.HasPrefix(raw, []byte("#cloud-config\n")))
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &doc))

	contents := run(t, "dpkg-deb", "-c", pkg(t, "otelcol-gpu_*_amd64.deb"))
	written := map[string]bool{}
	for _, f := range doc["write_files"].([]any) {
		path := f.(map[string]any)["path"].(string)
		written[path] = true
		if strings.HasPrefix(path, "/etc/default/") {
			require.Contains(t, contents, "."+path, "cloud-init overrides a file the package installs")
		}
	}
	require.True(t, written["/etc/otelcol-gpu/token"])
	envFile := ""
	for _, f := range doc["write_files"].([]any) {
		if f.(map[string]any)["path"] == "/etc/default/otelcol-gpu-agent" {
			envFile = f.(map[string]any)["content"].(string)
		}
	}
	for _, ref := range []string{"/etc/otelcol-gpu/token", "/etc/otelcol-gpu/tenant", "/etc/otelcol-gpu/ca.pem"} {
		require.Contains(t, envFile, ref)
		require.True(t, written[ref], "%s is referenced and written", ref)
	}
	var units []string
	for _, c := range doc["runcmd"].([]any) {
		if cmd, ok := c.([]any); ok && len(cmd) > 0 && cmd[0] == "systemctl" {
			units = append(units, cmd[len(cmd)-1].(string))
		}
	}
	require.Equal(t, []string{"otelcol-gpu-agent.service"}, units)
	require.Contains(t, contents, "./usr/lib/systemd/system/otelcol-gpu-agent.service")
}
