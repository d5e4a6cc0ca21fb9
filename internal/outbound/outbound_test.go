package outbound

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeResolver answers from a list of answers, one per lookup; the last one
// repeats.
type fakeResolver struct {
	mu      sync.Mutex
	answers [][]netip.Addr
	err     error
	calls   int
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, _ string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.err != nil {
		return nil, r.err
	}
	i := min(r.calls-1, len(r.answers)-1)
	return r.answers[i], nil
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

// newClient returns a client trusting the httptest certificate (the same for
// every test server).
func newClient(t *testing.T, srv *httptest.Server, cfg Config) *Client {
	t.Helper()
	if srv != nil {
		cfg.RootCAs = x509.NewCertPool()
		cfg.RootCAs.AddCert(srv.Certificate())
	}
	c, err := New(cfg)
	require.NoError(t, err)
	return c
}

// counting starts a TLS server counting requests and connections.
func counting(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32, *atomic.Int32) {
	t.Helper()
	var reqs, conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		if h != nil {
			h(w, r)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &reqs, &conns
}

func TestForbidden(t *testing.T) {
	c, err := New(Config{
		AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("::ffff:192.168.7.0/120")},
		DenyCIDRs:  []netip.Prefix{netip.MustParsePrefix("8.8.4.0/24"), netip.MustParsePrefix("2600:1f00::/24")},
	})
	require.NoError(t, err)
	forbidden := []string{
		"0.0.0.0", "0.1.2.3", "::", "127.0.0.1", "127.255.255.254", "::1",
		"10.0.0.5", "172.16.0.1", "172.31.255.255", "192.168.1.1", "fc00::1", "fd12:3456::1",
		"169.254.169.254", "169.254.0.1", "fe80::1", "fe80::1%eth0",
		"224.0.0.1", "239.255.255.250", "ff02::1", "ff0e::1",
		"100.64.0.1", "100.127.255.255", "192.0.0.8", "192.0.2.1", "198.18.0.1", "198.19.255.255",
		"198.51.100.7", "203.0.113.9", "240.0.0.1", "255.255.255.255",
		"2001:db8::1", "64:ff9b::a00:1", "64:ff9b:1::1", "2002:a00:1::1", "2001:0:4136:e378::1",
		"::7f00:1", "100::1",
		// IPv4-mapped IPv6 is judged as IPv4.
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
		// DenyCIDRs.
		"8.8.4.4", "2600:1f00::1",
	}
	for _, s := range forbidden {
		require.NotEmpty(t, c.forbidden(netip.MustParseAddr(s)), s)
	}
	allowed := []string{
		"8.8.8.8", "1.1.1.1", "11.0.0.1", "100.63.255.255", "100.128.0.1", "172.32.0.1",
		"192.169.0.1", "198.20.0.1", "223.255.255.255", "2606:4700:4700::1111",
		"2001:4860:4860::8888", "::ffff:8.8.8.8",
		// AllowCIDRs wins, mapped prefixes are normalized.
		"10.1.2.3", "::ffff:10.1.2.3", "192.168.7.9",
	}
	for _, s := range allowed {
		require.Empty(t, c.forbidden(netip.MustParseAddr(s)), s)
	}
	require.NotEmpty(t, c.forbidden(netip.Addr{}))

	// The dialer's Control hook refuses whatever reaches connect(2).
	require.ErrorIs(t, c.control("tcp", "169.254.169.254:80", nil), ErrForbidden)
	require.ErrorIs(t, c.control("tcp6", "[::1]:443", nil), ErrForbidden)
	require.NoError(t, c.control("tcp", "10.1.0.1:443", nil))

	_, err = New(Config{AllowCIDRs: []netip.Prefix{{}}})
	require.Error(t, err)
}

func TestCheckURL(t *testing.T) {
	res := &fakeResolver{answers: [][]netip.Addr{addrs("93.184.215.14")}}
	c := newClient(t, nil, Config{Resolver: res})
	ctx := context.Background()

	require.NoError(t, c.CheckURL(ctx, "https://hooks.example.com/alert?x=1"))
	require.NoError(t, c.CheckURL(ctx, "https://8.8.8.8:8443/"))

	for raw, want := range map[string]string{
		"http://hooks.example.com/":          `scheme must be https, not "http"`,
		"https://user:pw@hooks.example.com/": "userinfo",
		"https:///path":                      "no host",
		"https://:443/":                      "no host",
		"https:opaque":                       "no host",
		"https://hooks.example.com/#frag":    "fragment",
		"https://hooks.example.com/" + strings.Repeat("a", 2048): "longer than 2048",
		"https://10.0.0.5/":                 "10.0.0.5 is in a private range",
		"https://[::ffff:169.254.169.254]/": "link-local",
		"https://[fe80::1%25eth0]/":         "link-local",
	} {
		err := c.CheckURL(ctx, raw)
		require.ErrorIs(t, err, ErrForbidden, raw)
		require.ErrorContains(t, err, want, raw)
		require.True(t, strings.HasPrefix(err.Error(), "webhook url: "), err.Error())
	}
	require.Equal(t, 1, res.calls, "IP literals and refused URLs are not looked up")

	// One private address among public ones is enough to refuse.
	res.answers = [][]netip.Addr{addrs("93.184.215.14", "10.0.0.5")}
	err := c.CheckURL(ctx, "https://hooks.example.com/")
	require.ErrorIs(t, err, ErrForbidden)
	require.EqualError(t, err, `webhook url: 10.0.0.5 (from "hooks.example.com") is in a private range`)

	// A DNS failure is not a permanent refusal.
	res.err = errors.New("server misbehaving")
	err = c.CheckURL(ctx, "https://hooks.example.com/")
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrForbidden)
}

func TestPostLoopback(t *testing.T) {
	secret := []byte("s3cret")
	body := []byte(`{"alert":"gpu hot"}`)
	var got atomic.Value
	srv, reqs, conns := counting(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(Verify(secret, r.Header.Get(SignatureHeader), b, time.Now(), time.Minute) == nil &&
			r.Header.Get("Content-Type") == "application/json")
		w.WriteHeader(http.StatusAccepted)
	})
	header := http.Header{}
	header.Set("Content-Type", "application/json")
	header.Set(SignatureHeader, Sign(secret, time.Now(), body))
	ctx := context.Background()

	// Refused without an exception, before any connection.
	c := newClient(t, srv, Config{})
	_, err := c.Post(ctx, srv.URL, header, body)
	require.ErrorIs(t, err, ErrForbidden)
	require.ErrorContains(t, err, "127.0.0.1 is a loopback address")
	require.Zero(t, conns.Load())

	// Delivered with the exception, by IP literal ...
	c = newClient(t, srv, Config{AllowCIDRs: loopback})
	code, err := c.Post(ctx, srv.URL, header, body)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, code)
	require.Equal(t, true, got.Load())

	// ... and by name (resolved by the Resolver, verified by the certificate).
	res := &fakeResolver{answers: [][]netip.Addr{addrs("127.0.0.1")}}
	c = newClient(t, srv, Config{AllowCIDRs: loopback, Resolver: res})
	code, err = c.Post(ctx, "https://example.com:"+portOf(srv)+"/", header, body)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, code)
	require.Equal(t, int32(2), reqs.Load())

	// Post applies the URL checks too.
	_, err = c.Post(ctx, strings.Replace(srv.URL, "https", "http", 1), header, body)
	require.ErrorIs(t, err, ErrForbidden)
	require.Equal(t, int32(2), reqs.Load())
}

func portOf(srv *httptest.Server) string {
	return strconv.Itoa(int(srv.Listener.Addr().(*net.TCPAddr).AddrPort().Port()))
}

func TestPostRebinding(t *testing.T) {
	srv, reqs, conns := counting(t, nil)
	// Public at the check, loopback (where the server is) at the dial.
	res := &fakeResolver{answers: [][]netip.Addr{addrs("93.184.215.14"), addrs("127.0.0.1")}}
	c := newClient(t, srv, Config{Resolver: res})
	u := "https://example.com:" + portOf(srv) + "/"
	require.NoError(t, c.CheckURL(context.Background(), u))
	_, err := c.Post(context.Background(), u, nil, []byte("x"))
	require.ErrorIs(t, err, ErrForbidden)
	require.ErrorContains(t, err, `127.0.0.1 (from "example.com") is a loopback address`)
	require.Equal(t, 2, res.calls, "the dial resolves again")
	require.Zero(t, reqs.Load())
	require.Zero(t, conns.Load())

	// A DNS failure at dial time is transient.
	res.err = errors.New("timeout")
	_, err = c.Post(context.Background(), u, nil, []byte("x"))
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrForbidden)
}

func TestPostRedirectForbidden(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("127.0.0.2 not local here: %v", err)
	}
	var reqs2, conns2 atomic.Int32
	srv2 := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reqs2.Add(1) }))
	require.NoError(t, srv2.Listener.Close())
	srv2.Listener = ln
	srv2.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns2.Add(1)
		}
	}
	srv2.StartTLS()
	t.Cleanup(srv2.Close)

	srv1, reqs1, _ := counting(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, srv2.URL+"/next", http.StatusTemporaryRedirect)
	})
	c := newClient(t, srv1, Config{AllowCIDRs: loopback})
	_, err = c.Post(context.Background(), srv1.URL, nil, []byte("x"))
	require.ErrorIs(t, err, ErrForbidden)
	require.ErrorContains(t, err, "127.0.0.2 is a loopback address")
	require.Equal(t, int32(1), reqs1.Load())
	require.Zero(t, reqs2.Load())
	require.Zero(t, conns2.Load())
}

func TestPostRedirectToHTTP(t *testing.T) {
	var plainReqs atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { plainReqs.Add(1) }))
	t.Cleanup(plain.Close)
	srv, _, _ := counting(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL, http.StatusFound)
	})
	c := newClient(t, srv, Config{AllowCIDRs: loopback})
	_, err := c.Post(context.Background(), srv.URL, nil, []byte("x"))
	require.ErrorIs(t, err, ErrForbidden)
	require.ErrorContains(t, err, "scheme must be https")
	require.Zero(t, plainReqs.Load())
}

func TestPostRedirects(t *testing.T) {
	var mu sync.Mutex
	var final struct {
		method, body string
	}
	srv, reqs, _ := counting(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			http.Redirect(w, r, "/second", http.StatusTemporaryRedirect)
		case "/second":
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			final.method, final.body = r.Method, string(b)
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		default: // /loop
			http.Redirect(w, r, "/loop", http.StatusPermanentRedirect)
		}
	})
	c := newClient(t, srv, Config{AllowCIDRs: loopback, MaxRedirects: 2})
	code, err := c.Post(context.Background(), srv.URL+"/", nil, []byte("payload"))
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, code)
	require.Equal(t, http.MethodPost, final.method)
	require.Equal(t, "payload", final.body, "307 re-sends the body")

	// Hops are bounded: the first request and MaxRedirects more.
	reqs.Store(0)
	_, err = c.Post(context.Background(), srv.URL+"/loop", nil, []byte("payload"))
	require.ErrorContains(t, err, "stopped after 2 redirects")
	require.Equal(t, int32(3), reqs.Load())

	// Negative: not followed, the 3xx is the answer.
	c = newClient(t, srv, Config{AllowCIDRs: loopback, MaxRedirects: -1})
	code, err = c.Post(context.Background(), srv.URL+"/", nil, []byte("payload"))
	require.NoError(t, err)
	require.Equal(t, http.StatusTemporaryRedirect, code)
}

func TestPostTimeout(t *testing.T) {
	release := make(chan struct{})
	srv, _, _ := counting(t, func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	const timeout = 200 * time.Millisecond
	c := newClient(t, srv, Config{AllowCIDRs: loopback, Timeout: timeout})
	start := time.Now()
	_, err := c.Post(context.Background(), srv.URL, nil, []byte("x"))
	elapsed := time.Since(start)
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrForbidden)
	var uerr *url.Error
	require.ErrorAs(t, err, &uerr)
	require.True(t, uerr.Timeout(), err.Error())
	require.GreaterOrEqual(t, elapsed, timeout)
	require.Less(t, elapsed, timeout+5*time.Second)
}

func TestPostLargeResponse(t *testing.T) {
	const total = 64 << 20
	done := make(chan error, 1)
	srv, _, _ := counting(t, func(w http.ResponseWriter, _ *http.Request) {
		chunk := make([]byte, 32<<10)
		for n := 0; n < total; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	})
	// A long timeout, so that only the client closing can stop the server.
	c := newClient(t, srv, Config{AllowCIDRs: loopback, Timeout: time.Minute, MaxResponseBytes: 16 << 10})
	code, err := c.Post(context.Background(), srv.URL, nil, []byte("x"))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	require.Error(t, <-done, "the client read the whole body instead of closing after MaxResponseBytes")
}

func TestSignVerify(t *testing.T) {
	secret := []byte("whsec_test")
	body := []byte(`{"status":"firing"}`)
	at := time.Unix(1767225600, 0)
	h := Sign(secret, at, body)
	require.Regexp(t, `^t=1767225600,v1=[0-9a-f]{64}$`, h)

	require.NoError(t, Verify(secret, h, body, at.Add(time.Minute), 5*time.Minute))
	// Several v1 (secret rotation): any match passes.
	require.NoError(t, Verify(secret, h+",v1="+strings.Repeat("00", 32), body, at, time.Minute))

	require.ErrorContains(t, Verify(secret, h, []byte(`{"status":"resolved"}`), at, time.Minute), "mismatch")
	require.ErrorContains(t, Verify([]byte("other"), h, body, at, time.Minute), "mismatch")
	// The timestamp is signed: moving it breaks the signature.
	moved := strings.Replace(h, "t=1767225600", "t=1767225900", 1)
	require.ErrorContains(t, Verify(secret, moved, body, at.Add(5*time.Minute), time.Minute), "mismatch")
	// Stale or from the future: a replay.
	require.ErrorContains(t, Verify(secret, h, body, at.Add(10*time.Minute), 5*time.Minute), "tolerance")
	require.ErrorContains(t, Verify(secret, h, body, at.Add(-10*time.Minute), 5*time.Minute), "tolerance")
	for _, bad := range []string{"", "t=1767225600", "v1=00", "t=x,v1=00", "t=1767225600,v1=zz", "garbage"} {
		require.Error(t, Verify(secret, bad, body, at, time.Minute), bad)
	}
}
