package devcerts

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWriteProducesAChainThatVerifies(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, Write(Options{Dir: dir}))

	caPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))

	srv, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile))
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(srv.Certificate[0])
	require.NoError(t, err)
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		_, err = leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		require.NoError(t, err, host)
	}
	_, err = leaf.Verify(x509.VerifyOptions{DNSName: "gateway.example", Roots: pool})
	require.Error(t, err, "the server certificate must not cover names it was not asked for")

	cli, err := tls.LoadX509KeyPair(filepath.Join(dir, ClientCertFile), filepath.Join(dir, ClientKeyFile))
	require.NoError(t, err)
	cleaf, err := x509.ParseCertificate(cli.Certificate[0])
	require.NoError(t, err)
	_, err = cleaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)

	st, err := os.Stat(filepath.Join(dir, ServerKeyFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "private keys must not be world readable")
}

func TestWriteHonoursHostsAndTime(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	require.NoError(t, Write(Options{Dir: dir, ServerHosts: []string{"gw.internal", "10.0.0.7"}, Now: now}))
	srv, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile))
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(srv.Certificate[0])
	require.NoError(t, err)
	require.Equal(t, []string{"gw.internal"}, leaf.DNSNames)
	require.Len(t, leaf.IPAddresses, 1)
	require.Equal(t, "10.0.0.7", leaf.IPAddresses[0].String())
	require.True(t, leaf.NotBefore.Before(now))
	require.True(t, leaf.NotAfter.After(now.Add(30*24*time.Hour)))
}

func TestWriteRejectsEmptyDir(t *testing.T) {
	require.ErrorContains(t, Write(Options{}), "output directory is empty")
}

func TestReissueServerKeepsTheCA(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, Write(Options{Dir: dir}))
	before, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile))
	require.NoError(t, err)
	require.NoError(t, ReissueServer(dir, nil, time.Now()))
	after, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile))
	require.NoError(t, err)
	require.NotEqual(t, before.Certificate[0], after.Certificate[0])
	caPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))
	leaf, err := x509.ParseCertificate(after.Certificate[0])
	require.NoError(t, err)
	_, err = leaf.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: pool})
	require.NoError(t, err)
	require.ErrorContains(t, ReissueServer(t.TempDir(), nil, time.Now()), "no such file")
}
