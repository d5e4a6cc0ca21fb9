package tenantauthextension

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/extension/extensionauth"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/otelcol-gpu/otelcol-gpu/extension/tenantauthextension/internal/metadata"
	"github.com/otelcol-gpu/otelcol-gpu/internal/bufpool"
	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/telemetrytest"
)

func TestMain(m *testing.M) {
	// The gRPC codec's copies come from a poisoned pool: a message that
	// kept a byte it did not write would not decode as sent in these tests
	// (no tenant's bytes reach another through a reused buffer).
	bufpool.Poison(true)
	goleak.VerifyTestMain(m)
}

const pollEvery = 20 * time.Millisecond

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(data), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

// startAuth starts the extension the way the collector does and returns the
// server authenticator and the observed logs.
func startAuth(t *testing.T, file string) (extensionauth.Server, *observer.ObservedLogs) {
	t.Helper()
	return startAuthWith(t, file, nil)
}

// startAuthWith starts tenant_auth on file, reporting its own metrics to tel
// when given.
func startAuthWith(t *testing.T, file string, tel *componenttest.Telemetry) (extensionauth.Server, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	set := extensiontest.NewNopSettings(metadata.Type)
	if tel != nil {
		set.TelemetrySettings = tel.NewTelemetrySettings()
	}
	set.Logger = zap.New(core)
	cfg := createDefaultConfig().(*Config)
	cfg.CredentialsFile = file
	cfg.ReloadInterval = pollEvery
	ext, err := NewFactory().Create(context.Background(), set, cfg)
	require.NoError(t, err)
	require.NoError(t, ext.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, ext.Shutdown(context.Background())) })
	return ext.(extensionauth.Server), logs
}

func hashOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func credLine(id, tenant, token string) string {
	return fmt.Sprintf("  - id: %s\n    tenant: %s\n    sha256: %s\n", id, tenant, hashOf(token))
}

func bearer(token string) map[string][]string {
	return map[string][]string{"Authorization": {"Bearer " + token}}
}

func tenantOf(t *testing.T, auth extensionauth.Server, headers map[string][]string) (string, error) {
	t.Helper()
	ctx, err := auth.Authenticate(context.Background(), headers)
	if err != nil {
		return "", err
	}
	info := client.FromContext(ctx)
	require.NotNil(t, info.Auth)
	require.NotEmpty(t, info.Auth.GetAttribute(tenantid.AuthAttributeCredential))
	require.NotEmpty(t, info.Auth.GetAttribute(tenantid.AuthAttributeInstance))
	require.ElementsMatch(t, []string{tenantid.AuthAttributeTenant, tenantid.AuthAttributeCredential, tenantid.AuthAttributeInstance, tenantid.AuthAttributeGPUs},
		info.Auth.GetAttributeNames())
	return info.Auth.GetAttribute(tenantid.AuthAttributeTenant).(string), nil
}

func TestAuthenticateMapsTokensToTenants(t *testing.T) {
	file := filepath.Join(t.TempDir(), "credentials.yaml")
	writeFile(t, file, "credentials:\n"+credLine("vm-1", "acme", "token-a")+credLine("vm-2", "globex", "token-g")+
		credLine("key-1", "acme", "read-key-a")+"    scope: read\n")
	auth, logs := startAuth(t, file)

	got, err := tenantOf(t, auth, bearer("token-a"))
	require.NoError(t, err)
	require.Equal(t, "acme", got)
	ctx, err := auth.Authenticate(context.Background(), bearer("token-a"))
	require.NoError(t, err)
	require.Equal(t, "vm-1", client.FromContext(ctx).Auth.GetAttribute(tenantid.AuthAttributeCredential))

	// gRPC metadata arrives lower-case; the scheme is case-insensitive.
	got, err = tenantOf(t, auth, map[string][]string{"authorization": {"bearer token-g"}})
	require.NoError(t, err)
	require.Equal(t, "globex", got)

	refused := map[string]struct {
		headers map[string][]string
		err     error
	}{
		"no header":      {map[string][]string{}, errMissingToken},
		"empty":          {map[string][]string{"Authorization": {""}}, errMissingToken},
		"no scheme":      {map[string][]string{"Authorization": {"token-a"}}, errMissingToken},
		"other scheme":   {map[string][]string{"Authorization": {"Basic token-a"}}, errMissingToken},
		"scheme only":    {map[string][]string{"Authorization": {"Bearer "}}, errMissingToken},
		"two values":     {map[string][]string{"Authorization": {"Bearer token-a", "Bearer token-g"}}, errMissingToken},
		"unknown token":  {bearer("token-x"), errInvalidToken},
		"hash as token":  {bearer(hashOf("token-a")), errInvalidToken},
		"token + suffix": {bearer("token-a2"), errInvalidToken},
		"read key":       {bearer("read-key-a"), errInvalidToken}, // a customer's key cannot write
	}
	for name, tc := range refused {
		_, err := auth.Authenticate(context.Background(), tc.headers)
		require.ErrorIs(t, err, tc.err, name)
		require.NotContains(t, err.Error(), "acme", "the error must not reveal tenants")
	}
	for _, entry := range logs.All() {
		for _, secret := range []string{"token-a", "token-g", "token-x"} {
			require.NotContains(t, entry.Message, secret)
			for _, f := range entry.Context {
				require.NotContains(t, f.String, secret, "a token reached the logs")
			}
		}
	}
}

// The VM's identity comes from the credentials file: its instance_id, else
// the credential's id; the tenant processor stamps it on the VM's data,
// and its GPUs on the VM's minutes.
func TestAuthDataCarriesTheVM(t *testing.T) {
	file := filepath.Join(t.TempDir(), "credentials.yaml")
	writeFile(t, file, "credentials:\n"+
		credLine("vm-1", "acme", "token-1")+"    instance_id: i-0abc\n    gpus: 8\n"+
		credLine("vm-1-next", "acme", "token-1b")+"    instance_id: i-0abc\n    gpus: 8\n"+
		credLine("vm-2", "acme", "token-2"))
	auth, _ := startAuth(t, file)
	for token, want := range map[string]struct {
		id, vm string
		gpus   any
	}{
		"token-1":  {"vm-1", "i-0abc", int64(8)},
		"token-1b": {"vm-1-next", "i-0abc", int64(8)}, // a rotated token, the same VM
		"token-2":  {"vm-2", "vm-2", nil},             // the file does not say
	} {
		ctx, err := auth.Authenticate(context.Background(), bearer(token))
		require.NoError(t, err)
		data := client.FromContext(ctx).Auth
		require.Equal(t, want.id, data.GetAttribute(tenantid.AuthAttributeCredential), token)
		require.Equal(t, want.vm, data.GetAttribute(tenantid.AuthAttributeInstance), token)
		require.Equal(t, want.gpus, data.GetAttribute(tenantid.AuthAttributeGPUs), token)
	}
}

func TestReloadRotatesAndRevokesWithoutRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "credentials.yaml")
	writeFile(t, file, "credentials:\n"+credLine("vm-1-old", "acme", "old"))
	auth, _ := startAuth(t, file)
	_, err := tenantOf(t, auth, bearer("old"))
	require.NoError(t, err)

	// Rotation with overlap: both live.
	writeFile(t, file, "credentials:\n"+credLine("vm-1-old", "acme", "old")+credLine("vm-1-new", "acme", "new"))
	require.Eventually(t, func() bool { _, err := tenantOf(t, auth, bearer("new")); return err == nil }, 5*time.Second, pollEvery)
	_, err = tenantOf(t, auth, bearer("old"))
	require.NoError(t, err)

	// Revoke the old one: the new one keeps working.
	writeFile(t, file, "credentials:\n"+credLine("vm-1-new", "acme", "new"))
	require.Eventually(t, func() bool { _, err := tenantOf(t, auth, bearer("old")); return err != nil }, 5*time.Second, pollEvery)
	_, err = tenantOf(t, auth, bearer("new"))
	require.NoError(t, err)

	// Delete the tenant: nothing of it authenticates.
	writeFile(t, file, "credentials: []\n")
	require.Eventually(t, func() bool { _, err := tenantOf(t, auth, bearer("new")); return err != nil }, 5*time.Second, pollEvery)
}

func TestBrokenFileKeepsTheLastGoodCredentials(t *testing.T) {
	file := filepath.Join(t.TempDir(), "credentials.yaml")
	writeFile(t, file, "credentials:\n"+credLine("vm-1", "acme", "token-a"))
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	auth, logs := startAuthWith(t, file, tel)
	failedReloads := func() int64 {
		return telemetrytest.Int64(tel, "otelcol_tenant_auth_reloads", map[string]string{"result": "failed"})
	}
	const failing = "cannot load the credentials file; keeping the last good credentials"

	writeFile(t, file, "credentials:\n"+credLine("vm-1", "Not A Tenant", "token-a"))
	require.Eventually(t, func() bool {
		return logs.FilterMessage(failing).Len() > 0
	}, 5*time.Second, pollEvery)
	got, err := tenantOf(t, auth, bearer("token-a"))
	require.NoError(t, err)
	require.Equal(t, "acme", got)
	line := logs.FilterMessage(failing).All()[0]
	require.Equal(t, zap.ErrorLevel, line.Level, "a credentials file that fails to load is loud")
	require.Contains(t, line.ContextMap()["error"], `tenant id "Not A Tenant"`)

	// A vanished file (mid-deploy) keeps them too, and the failure is logged
	// again after a minute, not per poll: ten more polls fail, no more lines.
	before := failedReloads()
	require.NoError(t, os.Remove(file))
	require.Eventually(t, func() bool { return failedReloads() >= before+10 }, 10*time.Second, pollEvery)
	_, err = tenantOf(t, auth, bearer("token-a"))
	require.NoError(t, err)
	require.Equal(t, 1, logs.FilterMessage(failing).Len())
	require.Equal(t, int64(0), telemetrytest.Int64(tel, "otelcol_tenant_auth_requests", map[string]string{"result": "credentials_unavailable"}))

	// Back: said once, at Info level.
	writeFile(t, file, "credentials:\n"+credLine("vm-1", "acme", "token-a"))
	require.Eventually(t, func() bool { return logs.FilterMessage("the credentials file loads again").Len() == 1 }, 5*time.Second, pollEvery)
	require.Equal(t, zap.InfoLevel, logs.FilterMessage("the credentials file loads again").All()[0].Level)
}

// An expired token is refused like an unknown one, as soon as its expiry
// comes, without a reload.
func TestExpiredTokenIsRefused(t *testing.T) {
	file := filepath.Join(t.TempDir(), "credentials.yaml")
	soon := time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339Nano)
	writeFile(t, file, "credentials:\n"+
		credLine("vm-old", "acme", "expired")+"    expires: 2020-01-01T00:00:00Z\n"+
		credLine("vm-soon", "acme", "soon")+"    expires: "+soon+"\n"+
		credLine("vm-new", "acme", "valid")+"    expires: 2999-01-01T00:00:00+01:00\n")
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	auth, logs := startAuthWith(t, file, tel)

	_, err := auth.Authenticate(context.Background(), bearer("expired"))
	require.ErrorIs(t, err, errInvalidToken)
	got, err := tenantOf(t, auth, bearer("valid"))
	require.NoError(t, err)
	require.Equal(t, "acme", got)
	_, err = tenantOf(t, auth, bearer("soon"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := auth.Authenticate(context.Background(), bearer("soon"))
		return err != nil
	}, 5*time.Second, pollEvery)
	_, err = auth.Authenticate(context.Background(), bearer("soon"))
	require.ErrorIs(t, err, errInvalidToken)
	require.GreaterOrEqual(t, telemetrytest.Int64(tel, "otelcol_tenant_auth_requests", map[string]string{"result": "invalid"}), int64(2))
	require.Zero(t, logs.FilterLevelExact(zap.ErrorLevel).Len(), "an expired token is no failure of the file")
}

// statusHost is a host that records the component status reported to it.
type statusHost struct {
	component.Host
	mu     sync.Mutex
	events []*componentstatus.Event
}

func (h *statusHost) Report(ev *componentstatus.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, ev)
}

func (h *statusHost) statuses() []componentstatus.Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []componentstatus.Status
	for _, ev := range h.events {
		out = append(out, ev.Status())
	}
	return out
}

// A failing credentials file is a recoverable error of the component while
// it lasts (the health_check extension can show it), OK again after.
func TestCredentialsFailureIsComponentStatus(t *testing.T) {
	file := filepath.Join(t.TempDir(), "credentials.yaml")
	writeFile(t, file, "credentials:\n"+credLine("vm-1", "acme", "token-a"))
	cfg := createDefaultConfig().(*Config)
	cfg.CredentialsFile, cfg.ReloadInterval = file, pollEvery
	ext, err := NewFactory().Create(context.Background(), extensiontest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	host := &statusHost{Host: componenttest.NewNopHost()}
	require.NoError(t, ext.Start(context.Background(), host))
	t.Cleanup(func() { require.NoError(t, ext.Shutdown(context.Background())) })
	require.Empty(t, host.statuses(), "the collector reports the start itself")

	require.NoError(t, os.Remove(file))
	require.Eventually(t, func() bool { return len(host.statuses()) == 1 }, 5*time.Second, pollEvery)
	time.Sleep(10 * pollEvery)
	require.Equal(t, []componentstatus.Status{componentstatus.StatusRecoverableError}, host.statuses(), "once a failure")
	host.mu.Lock()
	reported := host.events[0].Err()
	host.mu.Unlock()
	require.ErrorContains(t, reported, "credentials file fails to load")
	require.ErrorContains(t, reported, "for at most 10m0s (credentials_max_stale)")
	require.ErrorContains(t, reported, file)

	writeFile(t, file, "credentials:\n"+credLine("vm-1", "acme", "token-a"))
	require.Eventually(t, func() bool { return len(host.statuses()) == 2 }, 5*time.Second, pollEvery)
	require.Equal(t, []componentstatus.Status{componentstatus.StatusRecoverableError, componentstatus.StatusOK}, host.statuses())
}

func TestKubernetesSecretSymlinkSwapIsSeen(t *testing.T) {
	dir := t.TempDir()
	// The layout a Secret volume has: file -> ..data/file, ..data -> ..v1.
	require.NoError(t, os.Mkdir(filepath.Join(dir, "..v1"), 0o755))
	writeFile(t, filepath.Join(dir, "..v1", "credentials.yaml"), "credentials:\n"+credLine("vm-1", "acme", "v1"))
	require.NoError(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
	require.NoError(t, os.Symlink(filepath.Join("..data", "credentials.yaml"), filepath.Join(dir, "credentials.yaml")))
	auth, _ := startAuth(t, filepath.Join(dir, "credentials.yaml"))
	_, err := tenantOf(t, auth, bearer("v1"))
	require.NoError(t, err)

	require.NoError(t, os.Mkdir(filepath.Join(dir, "..v2"), 0o755))
	writeFile(t, filepath.Join(dir, "..v2", "credentials.yaml"), "credentials:\n"+credLine("vm-1", "acme", "v2"))
	require.NoError(t, os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	require.NoError(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	require.Eventually(t, func() bool { _, err := tenantOf(t, auth, bearer("v2")); return err == nil }, 5*time.Second, pollEvery)
	_, err = tenantOf(t, auth, bearer("v1"))
	require.ErrorIs(t, err, errInvalidToken)
}

func TestStartFailsWithoutAReadableFile(t *testing.T) {
	dir := t.TempDir()
	cfg := createDefaultConfig().(*Config)
	for name, setup := range map[string]func() string{
		"missing": func() string { return filepath.Join(dir, "nope.yaml") },
		"invalid": func() string {
			p := filepath.Join(dir, "bad.yaml")
			writeFile(t, p, "credentials:\n  - id: a\n    tenant: acme\n    sha256: 12\n")
			return p
		},
	} {
		cfg.CredentialsFile = setup()
		ext, err := NewFactory().Create(context.Background(), extensiontest.NewNopSettings(metadata.Type), cfg)
		require.NoError(t, err)
		err = ext.Start(context.Background(), componenttest.NewNopHost())
		require.ErrorContains(t, err, cfg.CredentialsFile, name)
		require.NoError(t, ext.Shutdown(context.Background()))
	}
}

func TestCustomHeaderWithoutScheme(t *testing.T) {
	file := filepath.Join(t.TempDir(), "credentials.yaml")
	writeFile(t, file, "credentials:\n"+credLine("vm-1", "acme", "k1"))
	cfg := createDefaultConfig().(*Config)
	cfg.CredentialsFile, cfg.Header, cfg.Scheme = file, "X-Api-Key", ""
	ext, err := NewFactory().Create(context.Background(), extensiontest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	require.NoError(t, ext.Start(context.Background(), componenttest.NewNopHost()))
	defer func() { require.NoError(t, ext.Shutdown(context.Background())) }()
	auth := ext.(extensionauth.Server)
	got, err := tenantOf(t, auth, map[string][]string{"x-api-key": {"k1"}})
	require.NoError(t, err)
	require.Equal(t, "acme", got)
	_, err = auth.Authenticate(context.Background(), bearer("k1"))
	require.ErrorIs(t, err, errMissingToken)
}
