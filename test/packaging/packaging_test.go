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
	"./etc/default/otelcol-gpu-agent",
	"./etc/default/otelcol-gpu-gateway",
	"./etc/default/otelcol-gpu-usage",
	"./usr/lib/systemd/system/otelcol-gpu-agent.service",
	"./usr/lib/systemd/system/otelcol-gpu-gateway.service",
	"./usr/lib/systemd/system/otelcol-gpu-usage.service",
}

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
			for _, f := range []string{"/etc/otelcol-gpu/agent.yaml", "/etc/otelcol-gpu/gateway.yaml", "/etc/otelcol-gpu/usage.yaml",
				"/etc/default/otelcol-gpu-agent", "/etc/default/otelcol-gpu-gateway", "/etc/default/otelcol-gpu-usage"} {
				require.Contains(t, string(cf), f, "config files survive upgrades")
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

// The packaged configs validate with the packaged (amd64) binary.
func TestPackagedConfigsValidate(t *testing.T) {
	dir := t.TempDir()
	run(t, "dpkg-deb", "-x", pkg(t, "otelcol-gpu_*_amd64.deb"), dir)
	bin := filepath.Join(dir, "usr", "bin", "otelcol-gpu")
	for _, role := range []string{"agent", "gateway", "usage"} {
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
		cmd := exec.Command(bin, "validate", "--config", filepath.Join(dir, "etc", "otelcol-gpu", role+".yaml"))
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s:\n%s", role, out)
	}
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
	for _, unit := range []string{"otelcol-gpu-agent.service", "otelcol-gpu-gateway.service", "otelcol-gpu-usage.service"} {
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

func TestKubernetesManifests(t *testing.T) {
	docs := decodeAll(t, filepath.Join(proc.RepoRoot(t), "deploy", "kubernetes", "gateway.yaml"))
	kinds := map[string]map[string]any{}
	for _, d := range docs {
		require.NotEmpty(t, d["apiVersion"])
		kinds[d["kind"].(string)+"/"+dig(d, "metadata", "name").(string)] = d
	}
	sts := kinds["StatefulSet/otelcol-gpu-gateway"]
	require.NotNil(t, sts)
	require.NotEmpty(t, dig(sts, "spec", "volumeClaimTemplates"), "a volume per replica for the queues")
	containers := dig(sts, "spec", "template", "spec", "containers").([]any)
	c := containers[0].(map[string]any)
	require.NotNil(t, dig(c, "lifecycle", "preStop"), "preStop drain")
	mounts := map[string]bool{}
	for _, m := range c["volumeMounts"].([]any) {
		mounts[m.(map[string]any)["mountPath"].(string)] = true
	}
	require.True(t, mounts["/var/lib/otelcol-gpu"])
	secrets := map[string]bool{}
	for _, v := range dig(sts, "spec", "template", "spec", "volumes").([]any) {
		if s := dig(v, "secret", "secretName"); s != nil {
			secrets[s.(string)] = true
		}
	}
	require.True(t, secrets["otelcol-gpu-credentials"] && secrets["otelcol-gpu-tls"], "credentials and certificates from Secrets")
	require.NotNil(t, kinds["Service/otelcol-gpu-gateway"])
	query := kinds["Service/otelcol-gpu-query"]
	require.NotNil(t, query, "the customers' read API")
	require.Equal(t, "ClientIP", dig(query, "spec", "sessionAffinity"), "browser sessions live in one replica")
	ports := map[string]bool{}
	for _, p := range c["ports"].([]any) {
		ports[p.(map[string]any)["name"].(string)] = true
	}
	require.True(t, ports["query"], "the read listener is a container port")
	require.Equal(t, "StatefulSet", dig(kinds["HorizontalPodAutoscaler/otelcol-gpu-gateway"], "spec", "scaleTargetRef", "kind"))
	require.NotNil(t, kinds["PodDisruptionBudget/otelcol-gpu-gateway"])
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
	c := dig(sts, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)
	require.Equal(t, []any{"--config", "/etc/otelcol-gpu/usage.yaml"}, c["args"])
	env := map[string]any{}
	for _, e := range c["env"].([]any) {
		env[e.(map[string]any)["name"].(string)] = e
	}
	require.Equal(t, "otelcol-gpu-billing", dig(env["OTELCOL_GPU_BILLING_URL"], "valueFrom", "secretKeyRef", "name"))
	require.Equal(t, "/var/lib/otelcol-gpu", dig(env["OTELCOL_GPU_STATE_DIR"], "value"))
	mounts := map[string]bool{}
	for _, m := range c["volumeMounts"].([]any) {
		mounts[m.(map[string]any)["mountPath"].(string)] = true
	}
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
