package tenantprocessor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/otelcol-gpu/otelcol-gpu/extension/tenantauthextension"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
)

// gatewayHost hands the receiver its authenticator, as the collector does.
type gatewayHost struct {
	component.Host
	ext map[component.ID]component.Component
}

func (h gatewayHost) GetExtensions() map[component.ID]component.Component { return h.ext }

func credentialsYAML(entries ...[3]string) string {
	var b strings.Builder
	b.WriteString("credentials:\n")
	for _, e := range entries {
		sum := sha256.Sum256([]byte(e[2]))
		fmt.Fprintf(&b, "  - id: %s\n    tenant: %s\n    sha256: %s\n", e[0], e[1], hex.EncodeToString(sum[:]))
	}
	return b.String()
}

// gateway is the real otlp receiver (gRPC and HTTP) with tenant_auth as its
// authenticator, feeding the tenant processor in gateway mode.
type gateway struct {
	*pipeline
	grpcAddr, httpAddr string
	credFile           string
}

func startGateway(t *testing.T, onMismatch string) *gateway {
	t.Helper()
	g := &gateway{
		pipeline: newPipeline(t, gatewayConfig(onMismatch)).mustStart(t),
		grpcAddr: proc.Addr(proc.Port(t)),
		httpAddr: proc.Addr(proc.Port(t)),
		credFile: filepath.Join(t.TempDir(), "credentials.yaml"),
	}
	writeCreds(t, g.credFile, credentialsYAML([3]string{"vm-a1", "acme", "token-acme"}, [3]string{"vm-g1", "globex", "token-globex"}))

	authCfg := tenantauthextension.NewFactory().CreateDefaultConfig()
	require.NoError(t, confmap.NewFromStringMap(map[string]any{"credentials_file": g.credFile, "reload_interval": "20ms"}).Unmarshal(authCfg))
	authType := tenantauthextension.NewFactory().Type()
	auth, err := tenantauthextension.NewFactory().Create(context.Background(), extensiontest.NewNopSettings(authType), authCfg)
	require.NoError(t, err)
	require.NoError(t, auth.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, auth.Shutdown(context.Background())) })

	rf := otlpreceiver.NewFactory()
	rcfg := rf.CreateDefaultConfig()
	authRef := map[string]any{"authenticator": authType.String()}
	require.NoError(t, confmap.NewFromStringMap(map[string]any{"protocols": map[string]any{
		"grpc": map[string]any{"endpoint": g.grpcAddr, "auth": authRef},
		"http": map[string]any{"endpoint": g.httpAddr, "auth": authRef},
	}}).Unmarshal(rcfg))
	rcv, err := rf.CreateMetrics(context.Background(), receivertest.NewNopSettings(rf.Type()), rcfg, g.metrics)
	require.NoError(t, err)
	host := gatewayHost{Host: componenttest.NewNopHost(), ext: map[component.ID]component.Component{component.NewID(authType): auth}}
	require.NoError(t, rcv.Start(context.Background(), host))
	t.Cleanup(func() { require.NoError(t, rcv.Shutdown(context.Background())) })
	return g
}

func writeCreds(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path+".tmp", []byte(content), 0o600))
	require.NoError(t, os.Rename(path+".tmp", path))
}

func request(claims ...any) pmetricotlp.ExportRequest {
	return pmetricotlp.NewExportRequestFromMetrics(buildMetrics(defaultAttribute, claims))
}

// sendGRPC exports over OTLP/gRPC with the given bearer token ("" for none).
func (g *gateway) sendGRPC(t *testing.T, token string, req pmetricotlp.ExportRequest) error {
	t.Helper()
	conn, err := grpc.NewClient(g.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	_, err = pmetricotlp.NewGRPCClient(conn).Export(ctx, req)
	return err
}

// sendHTTP exports over OTLP/HTTP protobuf and returns the status code.
func (g *gateway) sendHTTP(t *testing.T, token string, req pmetricotlp.ExportRequest) int {
	t.Helper()
	body, err := req.MarshalProto()
	require.NoError(t, err)
	hreq, err := http.NewRequest(http.MethodPost, "http://"+g.httpAddr+"/v1/metrics", bytes.NewReader(body))
	require.NoError(t, err)
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	if token != "" {
		hreq.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(hreq)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func (g *gateway) landed() []any { return signals[0].got(g.pipeline, defaultAttribute) }

func TestThroughTheOTLPReceiverATokenDecidesTheTenant(t *testing.T) {
	g := startGateway(t, OnMismatchOverride)

	require.NoError(t, g.sendGRPC(t, "token-acme", request(noAttr{})))
	require.Equal(t, http.StatusOK, g.sendHTTP(t, "token-globex", request(noAttr{})))
	require.Equal(t, []any{"acme", "globex"}, g.landed())

	// A's token with a payload claiming B lands as A, over both transports.
	g.mSink.Reset()
	require.NoError(t, g.sendGRPC(t, "token-acme", request("globex", "globex")))
	require.Equal(t, http.StatusOK, g.sendHTTP(t, "token-acme", request("globex")))
	require.Equal(t, []any{"acme", "acme", "acme"}, g.landed())
	require.Equal(t, int64(3), counter(t, g.tel, "otelcol_processor_tenant_mismatched_resources", map[string]string{"tenant": "acme"}))
}

func TestThroughTheOTLPReceiverRejectMode(t *testing.T) {
	g := startGateway(t, OnMismatchReject)
	err := g.sendGRPC(t, "token-acme", request("globex"))
	require.Equal(t, codes.PermissionDenied, status.Code(err), "a spoofed payload must not be retried: %v", err)
	require.Equal(t, http.StatusForbidden, g.sendHTTP(t, "token-acme", request("acme", "globex")))
	require.Empty(t, g.landed())

	require.NoError(t, g.sendGRPC(t, "token-acme", request("acme")))
	require.Equal(t, []any{"acme"}, g.landed())
}

func TestThroughTheOTLPReceiverStrangersAreRefused(t *testing.T) {
	g := startGateway(t, OnMismatchOverride)
	for name, token := range map[string]string{"no token": "", "wrong token": "token-nobody", "hash as token": hex.EncodeToString(make([]byte, 32))} {
		err := g.sendGRPC(t, token, request("acme"))
		require.Equal(t, codes.Unauthenticated, status.Code(err), name)
		require.NotContains(t, err.Error(), "acme")
		require.Equal(t, http.StatusUnauthorized, g.sendHTTP(t, token, request("acme")), name)
	}
	require.Empty(t, g.landed(), "nothing of an unauthenticated request reaches the pipeline")
}

func TestThroughTheOTLPReceiverRevocationNeedsNoRestart(t *testing.T) {
	g := startGateway(t, OnMismatchOverride)
	require.NoError(t, g.sendGRPC(t, "token-acme", request(noAttr{})))

	// Rotate acme's token: revoke the old one, add a new one; globex untouched.
	writeCreds(t, g.credFile, credentialsYAML([3]string{"vm-a2", "acme", "token-acme-2"}, [3]string{"vm-g1", "globex", "token-globex"}))
	require.Eventually(t, func() bool {
		return status.Code(g.sendGRPC(t, "token-acme", request(noAttr{}))) == codes.Unauthenticated
	}, 5*time.Second, 20*time.Millisecond)
	require.Equal(t, http.StatusUnauthorized, g.sendHTTP(t, "token-acme", request(noAttr{})))

	g.mSink.Reset()
	require.NoError(t, g.sendGRPC(t, "token-acme-2", request(noAttr{})))
	require.Equal(t, http.StatusOK, g.sendHTTP(t, "token-globex", request(noAttr{})))
	require.Equal(t, []any{"acme", "globex"}, g.landed())

	// Delete the tenant globex: its token stops working.
	writeCreds(t, g.credFile, credentialsYAML([3]string{"vm-a2", "acme", "token-acme-2"}))
	require.Eventually(t, func() bool { return g.sendHTTP(t, "token-globex", request(noAttr{})) == http.StatusUnauthorized }, 5*time.Second, 20*time.Millisecond)
}

// Through the real receiver and tenant_auth: the credentials file's
// instance_id (else the credential id) is the VM every resource carries,
// and a request with nothing in the timestamp window is refused for good.
func TestThroughTheOTLPReceiverTheCredentialNamesTheVM(t *testing.T) {
	g := startGateway(t, OnMismatchOverride)
	writeCreds(t, g.credFile, credentialsYAML([3]string{"vm-a1", "acme", "token-acme"}, [3]string{"vm-g1", "globex", "token-globex"})+
		"    instance_id: i-0globex\n    gpus: 8\n")
	require.Eventually(t, func() bool {
		g.mSink.Reset()
		req := request("globex")
		req.Metrics().ResourceMetrics().At(0).Resource().Attributes().PutStr("host.id", "i-0acme")
		return g.sendGRPC(t, "token-globex", req) == nil && slices.Equal(signals[0].got(g.pipeline, "host.id"), []any{"i-0globex"})
	}, 5*time.Second, 20*time.Millisecond, "the reloaded file's instance_id is stamped")

	g.mSink.Reset()
	require.Equal(t, http.StatusOK, g.sendHTTP(t, "token-acme", request(noAttr{})))
	require.Equal(t, []any{"vm-a1"}, signals[0].got(g.pipeline, "host.id"), "without instance_id the credential's id is the VM")

	stale := request(noAttr{})
	eachPoint(stale.Metrics(), func(dp timedPoint) { dp.SetTimestamp(pcommon.NewTimestampFromTime(time.Now().Add(-48 * time.Hour))) })
	err := g.sendGRPC(t, "token-acme", stale)
	require.Equal(t, codes.InvalidArgument, status.Code(err), "an agent drops what can never be accepted: %v", err)
	require.Equal(t, http.StatusBadRequest, g.sendHTTP(t, "token-acme", stale))
}
