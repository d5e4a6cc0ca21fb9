//go:build system

package packaging

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/devcerts"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
)

// The class of bug that `systemd-analyze verify` cannot see: a unit that is
// well-formed but whose user cannot read what docs/packaging.md tells the operator
// to put where. The .deb is unpacked into a root of its own, the operator's
// files placed and owned as docs/packaging.md says, and each role started as the
// unit's user and group, with the unit's environment file and the part of
// its sandbox that runs without systemd (no new privileges, no
// capabilities, the StateDirectory systemd would create). Paths in the
// environment file are moved under that root; nothing else is changed.
//
// It needs root (to own files as another user and switch to it) and runs
// the package's own preinstall script first, which creates the otelcol-gpu
// system user and group on this machine if missing, as an install would.
func TestInstalledPackageServesAsTheUnitsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: files owned by the service user, and the switch to it")
	}
	deb := pkg(t, "otelcol-gpu_*_amd64.deb")
	ctl := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, ctl)
	run(t, "sh", filepath.Join(ctl, "preinst"), "install")
	u, err := user.Lookup("otelcol-gpu")
	require.NoError(t, err)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)

	// A root the service user can walk down to, as / is.
	root, err := os.MkdirTemp("", "otelcol-gpu-root-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	require.NoError(t, os.Chmod(root, 0o755))
	run(t, "dpkg-deb", "-x", deb, root)
	at := func(p string) string { return filepath.Join(root, p) }

	// What the package ships for the keys: root:otelcol-gpu 0750.
	st := statOf(t, at("/etc/otelcol-gpu/tls"))
	require.Equal(t, os.ModeDir|0o750, st.mode, "/etc/otelcol-gpu/tls")
	require.Equal(t, [2]int{0, gid}, [2]int{st.uid, st.gid}, "/etc/otelcol-gpu/tls is root:otelcol-gpu")

	// The operator's files, owned as docs/packaging.md's table says.
	certs := t.TempDir()
	require.NoError(t, devcerts.Write(devcerts.Options{Dir: certs}))
	place := func(src, dst string, mode os.FileMode, owner int) {
		b, err := os.ReadFile(src)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(at(dst), b, mode))
		require.NoError(t, os.Chmod(at(dst), mode))
		require.NoError(t, os.Chown(at(dst), owner, gid))
	}
	place(filepath.Join(certs, devcerts.ServerCertFile), "/etc/otelcol-gpu/tls/gateway.pem", 0o644, 0)
	place(filepath.Join(certs, devcerts.ServerKeyFile), "/etc/otelcol-gpu/tls/gateway-key.pem", 0o640, 0)
	token := "install-test-token"
	sum := sha256.Sum256([]byte(token))
	creds := filepath.Join(certs, "credentials.yaml")
	require.NoError(t, os.WriteFile(creds, []byte("credentials:\n  - id: vm-1\n    tenant: acme\n    sha256: "+hex.EncodeToString(sum[:])+"\n"), 0o600))
	place(creds, "/etc/otelcol-gpu/credentials.yaml", 0o640, 0)
	place(filepath.Join(certs, devcerts.CAFile), "/etc/otelcol-gpu/ca.pem", 0o644, 0)
	tok := filepath.Join(certs, "token")
	require.NoError(t, os.WriteFile(tok, []byte(token+"\n"), 0o600))
	place(tok, "/etc/otelcol-gpu/token", 0o600, uid)
	tenant := filepath.Join(certs, "tenant")
	require.NoError(t, os.WriteFile(tenant, []byte("acme\n"), 0o644))
	place(tenant, "/etc/otelcol-gpu/tenant", 0o644, 0)

	// The gateway, then an agent sending to it.
	gwHealth, gwGRPC := proc.Port(t), proc.Port(t)
	gw := startAsUnit(t, root, uid, gid, "otelcol-gpu-gateway", "/etc/otelcol-gpu/gateway.yaml", map[string]string{
		"OTELCOL_GPU_GRPC_ENDPOINT":   proc.Addr(gwGRPC),
		"OTELCOL_GPU_HTTP_ENDPOINT":   proc.Addr(proc.Port(t)),
		"OTELCOL_GPU_HEALTH_ENDPOINT": proc.Addr(gwHealth),
		"OTELCOL_GPU_QUERY_ENDPOINT":  proc.Addr(proc.Port(t)),
		"OTELCOL_GPU_METRICS_PORT":    strconv.Itoa(proc.Port(t)),
	})
	require.NoError(t, gw.WaitHTTPOK(context.Background(), "http://"+proc.Addr(gwHealth)+"/", 30*time.Second),
		"the gateway, as otelcol-gpu with the packaged placement, must start")

	agHealth := proc.Port(t)
	ag := startAsUnit(t, root, uid, gid, "otelcol-gpu-agent", "/etc/otelcol-gpu/agent.yaml", map[string]string{
		"OTELCOL_GPU_GATEWAY_ENDPOINT": "localhost:" + strconv.Itoa(gwGRPC),
		"OTELCOL_GPU_HEALTH_ENDPOINT":  proc.Addr(agHealth),
		"OTELCOL_GPU_OTLP_GRPC":        proc.Addr(proc.Port(t)),
		"OTELCOL_GPU_OTLP_HTTP":        proc.Addr(proc.Port(t)),
		"OTELCOL_GPU_METRICS_PORT":     strconv.Itoa(proc.Port(t)),
		"OTELCOL_GPU_INTERVAL":         "1s",
	})
	require.NoError(t, ag.WaitHTTPOK(context.Background(), "http://"+proc.Addr(agHealth)+"/", 30*time.Second))
	// The agent's token (0600, the service user's) was read and accepted:
	// the gateway's queue directory receives the agent's data.
	require.Eventually(t, func() bool {
		entries, _ := os.ReadDir(at("/var/lib/otelcol-gpu-gateway"))
		return len(entries) > 0 && !strings.Contains(gw.Output(), "Unauthenticated") && !strings.Contains(ag.Output(), "Unauthenticated")
	}, 30*time.Second, 200*time.Millisecond, "agent -> gateway as installed")
	require.NotContains(t, gw.Output()+ag.Output(), "permission denied")

	// The read tier on the same host: a customer's read key answered with
	// the packaged certificate and credentials, and the answered query's
	// record written to the unit's own StateDirectory before the answer.
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
	}))
	t.Cleanup(store.Close)
	readKey := "install-test-read-key"
	sum = sha256.Sum256([]byte(readKey))
	require.NoError(t, os.WriteFile(creds, []byte(string(must(os.ReadFile(creds)))+
		"  - id: acme-grafana\n    tenant: acme\n    scope: read\n    sha256: "+hex.EncodeToString(sum[:])+"\n"), 0o600))
	place(creds, "/etc/otelcol-gpu/credentials.yaml", 0o640, 0)
	qHealth, qListen := proc.Port(t), proc.Port(t)
	q := startAsUnit(t, root, uid, gid, "otelcol-gpu-query", "/etc/otelcol-gpu/query.yaml", map[string]string{
		"OTELCOL_GPU_QUERY_ENDPOINT":  proc.Addr(qListen),
		"OTELCOL_GPU_HEALTH_ENDPOINT": proc.Addr(qHealth),
		"OTELCOL_GPU_METRICS_PORT":    strconv.Itoa(proc.Port(t)),
		"OTELCOL_GPU_STORE_URL":       store.URL,
		"OTELCOL_GPU_LOGS_STORE_URL":  "http://" + proc.Addr(proc.Port(t)),
	})
	require.NoError(t, q.WaitHTTPOK(context.Background(), "http://"+proc.Addr(qHealth)+"/", 30*time.Second),
		"the read tier, as otelcol-gpu with the packaged placement, must start")
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(must(os.ReadFile(filepath.Join(certs, devcerts.CAFile)))))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	require.Eventually(t, func() bool {
		req, _ := http.NewRequest(http.MethodGet, "https://"+proc.Addr(qListen)+"/api/v1/query?query=up", http.NoBody)
		req.Header.Set("Authorization", "Bearer "+readKey)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 15*time.Second, 200*time.Millisecond, "a read key answered by the installed read tier")
	entries, err := os.ReadDir(at("/var/lib/otelcol-gpu-query/read-events"))
	require.NoError(t, err, "the read records' log in the unit's StateDirectory")
	require.NotEmpty(t, entries)
	require.NotContains(t, q.Output(), "permission denied")

	require.NoError(t, q.Stop(30*time.Second))
	require.NoError(t, ag.Stop(30*time.Second))
	require.NoError(t, gw.Stop(30*time.Second))
}

type fileStat struct {
	mode     os.FileMode
	uid, gid int
}

func statOf(t *testing.T, path string) fileStat {
	fi, err := os.Stat(path)
	require.NoError(t, err)
	sys := fi.Sys().(*syscall.Stat_t)
	return fileStat{mode: fi.Mode() & (os.ModeDir | os.ModePerm), uid: int(sys.Uid), gid: int(sys.Gid)}
}

// startAsUnit runs the role the way its systemd unit does: ExecStart's
// arguments from the unit (paths moved under root), its EnvironmentFile (paths moved under root, listeners on
// loopback ports from override), as User/Group with no new privileges and
// no capabilities, and the StateDirectory systemd would create.
func startAsUnit(t *testing.T, root string, uid, gid int, unit, config string, override map[string]string) *proc.Proc {
	t.Helper()
	unitText, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system", unit+".service"))
	require.NoError(t, err)
	require.Contains(t, string(unitText), "User=otelcol-gpu\n")
	unitArgs := unitArgs(t, string(unitText))
	require.Equal(t, []string{"--config", config}, unitArgs[:2])
	require.Contains(t, string(unitText), "StateDirectory="+unit+"\n")
	state := filepath.Join(root, "var/lib", unit)
	require.NoError(t, os.MkdirAll(filepath.Dir(state), 0o755)) // as /var/lib is
	require.NoError(t, os.Mkdir(state, 0o750))
	require.NoError(t, os.Chown(state, uid, gid))

	env := []string{}
	f, err := os.Open(filepath.Join(root, "etc/default", unit))
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		k, v, ok := strings.Cut(line, "=")
		if line == "" || strings.HasPrefix(line, "#") || !ok {
			continue
		}
		if strings.HasPrefix(v, "/") {
			v = filepath.Join(root, v)
		}
		if o, ok := override[k]; ok {
			v = o
		}
		env = append(env, k+"="+v)
	}
	require.NoError(t, sc.Err())
	for k, v := range override {
		env = append(env, k+"="+v)
	}
	args := append([]string{
		"--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(gid), "--init-groups",
		"--no-new-privs", "--bounding-set=-all", "--inh-caps=-all",
		filepath.Join(root, "usr/bin/otelcol-gpu"),
	}, underRoot(root, unitArgs)...)
	// Only the unit's environment: a service sees nothing of the shell's.
	cmdline := append(append([]string{"-i", "PATH=/usr/bin:/bin"}, env...), append([]string{"setpriv"}, args...)...)
	return proc.StartTest(t, unit, "env", cmdline)
}
