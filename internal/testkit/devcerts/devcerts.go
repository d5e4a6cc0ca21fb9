// Package devcerts writes a development certificate authority and the
// certificates signed by it that the demo, the smoke tests, the system tests
// and the benchmarks use for TLS between agents and gateways.
//
// It exists so that nothing in the build depends on openssl being installed.
// The keys it writes are for loopback use only: production deployments bring
// certificates from their own PKI (see docs/gateway.md).
package devcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names written into the output directory.
const (
	CAFile         = "ca.pem"
	CAKeyFile      = "ca-key.pem"
	ServerCertFile = "gateway.pem"
	ServerKeyFile  = "gateway-key.pem"
	ClientCertFile = "agent.pem"
	ClientKeyFile  = "agent-key.pem"
)

// validity is long enough that a developer's certificates do not expire
// between two `make certs`, short enough to be obviously not for production.
const validity = 90 * 24 * time.Hour

// Options says what to write.
type Options struct {
	// Dir is created if missing; existing files are overwritten.
	Dir string
	// ServerHosts are DNS names or IP addresses for the gateway certificate.
	ServerHosts []string
	// Now is the start of validity; zero means time.Now().
	Now time.Time
}

// DefaultServerHosts covers every loopback spelling the demo and tests use.
var DefaultServerHosts = []string{"localhost", "127.0.0.1", "::1"}

type keyPair struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

// Write creates the CA, the gateway server certificate and an agent client
// certificate (for mTLS) in opts.Dir.
func Write(opts Options) error {
	if opts.Dir == "" {
		return errors.New("devcerts: output directory is empty")
	}
	if len(opts.ServerHosts) == 0 {
		opts.ServerHosts = DefaultServerHosts
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return fmt.Errorf("devcerts: %w", err)
	}
	notBefore := opts.Now.Add(-time.Hour)
	notAfter := opts.Now.Add(validity)

	ca, err := issue(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "otelcol-gpu development CA"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil)
	if err != nil {
		return err
	}
	srv, err := issue(serverTemplate(opts.ServerHosts, notBefore, notAfter), ca)
	if err != nil {
		return err
	}
	cli, err := issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "otelcol-gpu agent"},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		kp   *keyPair
		cert bool
	}{
		{CAFile, ca, true}, {CAKeyFile, ca, false},
		{ServerCertFile, srv, true}, {ServerKeyFile, srv, false},
		{ClientCertFile, cli, true}, {ClientKeyFile, cli, false},
	} {
		if err := writePEM(filepath.Join(opts.Dir, f.name), f.kp, f.cert); err != nil {
			return err
		}
	}
	return nil
}

// ReissueServer writes a new gateway certificate and key into dir, signed by
// the CA already there: a certificate rotation, for reload tests and drills.
func ReissueServer(dir string, hosts []string, now time.Time) error {
	caPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return fmt.Errorf("devcerts: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return fmt.Errorf("devcerts: %w", err)
	}
	cb, _ := pem.Decode(caPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return errors.New("devcerts: the CA files are not PEM")
	}
	caCert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return fmt.Errorf("devcerts: CA certificate: %w", err)
	}
	caKey, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return fmt.Errorf("devcerts: CA key: %w", err)
	}
	if len(hosts) == 0 {
		hosts = DefaultServerHosts
	}
	srv, err := issue(serverTemplate(hosts, now.Add(-time.Hour), now.Add(validity)), &keyPair{cert: caCert, der: cb.Bytes, key: caKey})
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, ServerKeyFile), srv, false); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, ServerCertFile), srv, true)
}

func serverTemplate(hosts []string, notBefore, notAfter time.Time) *x509.Certificate {
	server := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "otelcol-gpu gateway"},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			server.IPAddresses = append(server.IPAddresses, ip)
		} else {
			server.DNSNames = append(server.DNSNames, h)
		}
	}
	return server
}

func issue(tmpl *x509.Certificate, parent *keyPair) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devcerts: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("devcerts: serial: %w", err)
	}
	tmpl.SerialNumber = serial
	signerCert, signerKey := tmpl, key
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, &key.PublicKey, signerKey)
	if err != nil {
		return nil, fmt.Errorf("devcerts: sign %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("devcerts: parse %q: %w", tmpl.Subject.CommonName, err)
	}
	return &keyPair{cert: cert, der: der, key: key}, nil
}

func writePEM(path string, kp *keyPair, cert bool) error {
	var block *pem.Block
	mode := os.FileMode(0o644)
	if cert {
		block = &pem.Block{Type: "CERTIFICATE", Bytes: kp.der}
	} else {
		der, err := x509.MarshalECPrivateKey(kp.key)
		if err != nil {
			return fmt.Errorf("devcerts: marshal key: %w", err)
		}
		block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
		mode = 0o600
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), mode); err != nil {
		return fmt.Errorf("devcerts: %w", err)
	}
	return nil
}
