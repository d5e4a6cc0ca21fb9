// Package outbound is the HTTP client that delivers alert notifications to
// webhook URLs given by customers. Such URLs are a server-side request
// forgery vector: a customer could point one at the metadata service, at a
// private address of the provider's network or at a name that resolves there.
// The client therefore checks every address it is about to dial (at dial
// time, on the IP it then dials itself, so DNS rebinding between the check and
// the dial cannot reach a forbidden address), re-checks every redirect, speaks
// only HTTPS and never uses a proxy from the environment.
package outbound

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// ErrForbidden is wrapped by every refusal of a destination: a URL that is
// not acceptable (scheme, userinfo, ...), an address in a forbidden range (at
// any redirect hop) or a redirect to a non-https URL. Such errors are
// permanent: retrying the delivery cannot help.
var ErrForbidden = errors.New("forbidden destination")

// Resolver resolves host names; *net.Resolver implements it. Tests and
// callers with their own DNS set one in Config.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config configures a Client. Zero values take the documented defaults.
type Config struct {
	// Timeout bounds a whole delivery, from the first dial to the last body
	// byte read, redirects included. Default 10s.
	Timeout time.Duration
	// MaxResponseBytes is how much of a response body is read (and
	// discarded); the connection is dropped rather than read further.
	// Default 64 KiB.
	MaxResponseBytes int64
	// MaxRedirects is how many redirects are followed, each re-checked.
	// Default 3; negative: none are followed and the 3xx status is returned.
	MaxRedirects int
	// AllowCIDRs are operator exceptions, dialled even if otherwise forbidden
	// (tests, a receiver run by the provider). They win over everything else.
	AllowCIDRs []netip.Prefix
	// DenyCIDRs are forbidden in addition to the built-in ranges (the
	// provider's own public ranges).
	DenyCIDRs []netip.Prefix
	// RootCAs verify servers' certificates; nil: the system roots.
	RootCAs *x509.CertPool
	// Resolver resolves host names; nil: net.DefaultResolver.
	Resolver Resolver
}

const (
	defaultTimeout          = 10 * time.Second
	defaultMaxResponseBytes = 64 << 10
	defaultMaxRedirects     = 3
	// maxURLLength bounds stored customer URLs.
	maxURLLength = 2048
)

// Client delivers webhook requests. It is safe for concurrent use.
type Client struct {
	http     *http.Client
	resolver Resolver
	dialer   *net.Dialer
	allow    []netip.Prefix
	deny     []netip.Prefix
	maxBody  int64
	maxRedir int
}

// New returns a Client for cfg. It fails on invalid CIDRs.
func New(cfg Config) (*Client, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = defaultMaxResponseBytes
	}
	if cfg.MaxRedirects == 0 {
		cfg.MaxRedirects = defaultMaxRedirects
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	allow, err := normalize(cfg.AllowCIDRs)
	if err != nil {
		return nil, fmt.Errorf("outbound: allow CIDRs: %w", err)
	}
	deny, err := normalize(cfg.DenyCIDRs)
	if err != nil {
		return nil, fmt.Errorf("outbound: deny CIDRs: %w", err)
	}
	c := &Client{
		resolver: cfg.Resolver,
		allow:    allow,
		deny:     deny,
		maxBody:  cfg.MaxResponseBytes,
		maxRedir: cfg.MaxRedirects,
	}
	c.dialer = &net.Dialer{
		Timeout: cfg.Timeout,
		// Second line of defence: whatever address reaches connect(2) is
		// checked again.
		Control: c.control,
	}
	transport := &http.Transport{
		Proxy:       nil, // never a proxy from the environment: it would dial for us
		DialContext: c.dialContext,
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			RootCAs:    cfg.RootCAs,
		},
		ForceAttemptHTTP2:      true, // a custom DialContext disables HTTP/2 otherwise
		TLSHandshakeTimeout:    cfg.Timeout,
		ResponseHeaderTimeout:  cfg.Timeout,
		MaxResponseHeaderBytes: 64 << 10,
		// The body is discarded: count wire bytes, never inflate a bomb.
		DisableCompression:  true,
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
	}
	c.http = &http.Client{
		Transport:     transport,
		CheckRedirect: c.checkRedirect,
		Timeout:       cfg.Timeout,
	}
	return c, nil
}

// normalize validates prefixes and writes IPv4-mapped IPv6 prefixes as IPv4,
// since addresses are unmapped before they are matched.
func normalize(prefixes []netip.Prefix) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(prefixes))
	for _, p := range prefixes {
		if !p.IsValid() {
			return nil, fmt.Errorf("invalid prefix %q", p)
		}
		if a := p.Addr(); a.Is4In6() {
			if p.Bits() < 96 {
				return nil, fmt.Errorf("prefix %s mixes IPv4-mapped and other IPv6 addresses", p)
			}
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// CheckURL validates a customer URL when it is created: https only, a host,
// no userinfo, no fragment, at most 2048 bytes; then it resolves the host and
// refuses the URL if any of its addresses is forbidden. Refusals wrap
// ErrForbidden; a failed DNS lookup does not (it may be transient).
// Post checks again at dial time: passing here is no licence to dial later.
func (c *Client) CheckURL(ctx context.Context, raw string) error {
	u, err := parseURL(raw)
	if err != nil {
		return fmt.Errorf("webhook url: %w", err)
	}
	if _, err := c.resolve(ctx, u.Hostname()); err != nil {
		return fmt.Errorf("webhook url: %w", err)
	}
	return nil
}

// Post sends body to rawURL (https only) with header, following up to
// MaxRedirects redirects (each re-checked; 307 and 308 re-send the body).
// Only addresses that pass the check at dial time are dialled. It returns the
// final status code; the response body is read up to MaxResponseBytes and
// discarded, and errors reading it are ignored (the status already says
// whether the delivery was accepted).
//
// A forbidden destination at any hop, or a redirect to a non-https URL,
// returns an error wrapping ErrForbidden (permanent). Other failures
// (timeouts, refused connections, TLS errors, DNS errors) are returned as
// they are and may be retried.
func (c *Client) Post(ctx context.Context, rawURL string, header http.Header, body []byte) (int, error) {
	if _, err := parseURL(rawURL); err != nil {
		return 0, fmt.Errorf("webhook url: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	for k, v := range header {
		req.Header[k] = append([]string(nil), v...)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	// Draining up to the limit lets a short response's connection be reused;
	// a longer one is dropped by Close.
	_, _ = io.CopyN(io.Discard, resp.Body, c.maxBody)
	return resp.StatusCode, nil
}

// checkRedirect bounds the number of hops and refuses non-https targets; the
// target's addresses are checked when it is dialled.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if c.maxRedir < 0 {
		return http.ErrUseLastResponse
	}
	if len(via) > c.maxRedir {
		return fmt.Errorf("stopped after %d redirects", c.maxRedir)
	}
	if err := checkTarget(req.URL); err != nil {
		return fmt.Errorf("redirect to %q: %w", req.URL.Redacted(), err)
	}
	return nil
}

// dialContext resolves the host with the configured Resolver, refuses it if
// any address is forbidden, and dials the checked addresses themselves (never
// the name), so the address connected to is the address checked.
func (c *Client) dialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	addrs, err := c.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, a := range addrs {
		conn, err := c.dialer.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// control checks the address a socket is about to connect to.
func (c *Client) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return refusal(fmt.Sprintf("unparsable dial address %q", address))
	}
	return c.checkAddr(ap.Addr(), "")
}

// resolve returns the addresses of host (an IP literal is not looked up),
// refusing if any of them is forbidden: a name with one private address
// among public ones could be dialled there.
func (c *Client) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		if err := c.checkAddr(a, ""); err != nil {
			return nil, err
		}
		return []netip.Addr{a}, nil
	}
	addrs, err := c.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolving %q: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolving %q: no addresses", host)
	}
	for _, a := range addrs {
		if err := c.checkAddr(a, host); err != nil {
			return nil, err
		}
	}
	return addrs, nil
}

// checkAddr refuses a forbidden address; host, if not empty, is the name it
// came from (for the message).
func (c *Client) checkAddr(a netip.Addr, host string) error {
	why := c.forbidden(a)
	if why == "" {
		return nil
	}
	if host != "" {
		return refusal(fmt.Sprintf("%s (from %q) %s", a, host, why))
	}
	return refusal(fmt.Sprintf("%s %s", a, why))
}

// forbidden says why a may not be dialled ("is in a private range"), or ""
// if it may. IPv4-mapped IPv6 addresses are judged as IPv4, and zones are
// ignored (netip.Prefix never contains a zoned address).
func (c *Client) forbidden(a netip.Addr) string {
	if !a.IsValid() {
		return "is not a valid address"
	}
	a = a.Unmap().WithZone("")
	for _, p := range c.allow {
		if p.Contains(a) {
			return ""
		}
	}
	for _, p := range c.deny {
		if p.Contains(a) {
			return "is in a denied range"
		}
	}
	for _, r := range forbiddenRanges {
		if r.prefix.Contains(a) {
			return r.why
		}
	}
	return ""
}

// forbiddenRanges are never dialled unless AllowCIDRs says so: the host
// itself, private and shared networks (where the provider's infrastructure
// lives), link-local (the metadata service at 169.254.169.254), multicast,
// reserved and documentation ranges, and IPv6 ranges that embed an IPv4
// address a gateway would reach on the customer's behalf.
var forbiddenRanges = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "is in the \"this network\" range"},
	{netip.MustParsePrefix("10.0.0.0/8"), "is in a private range"},
	{netip.MustParsePrefix("100.64.0.0/10"), "is in the shared (CGNAT) range"},
	{netip.MustParsePrefix("127.0.0.0/8"), "is a loopback address"},
	{netip.MustParsePrefix("169.254.0.0/16"), "is link-local (metadata service)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "is in a private range"},
	{netip.MustParsePrefix("192.0.0.0/24"), "is in the IETF protocol assignments range"},
	{netip.MustParsePrefix("192.0.2.0/24"), "is in a documentation range"},
	{netip.MustParsePrefix("192.168.0.0/16"), "is in a private range"},
	{netip.MustParsePrefix("198.18.0.0/15"), "is in the benchmarking range"},
	{netip.MustParsePrefix("198.51.100.0/24"), "is in a documentation range"},
	{netip.MustParsePrefix("203.0.113.0/24"), "is in a documentation range"},
	{netip.MustParsePrefix("224.0.0.0/4"), "is multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "is the broadcast address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "is in a reserved range"},

	{netip.MustParsePrefix("::/128"), "is unspecified"},
	{netip.MustParsePrefix("::1/128"), "is a loopback address"},
	// IPv4-compatible (deprecated) addresses embed an IPv4 address.
	{netip.MustParsePrefix("::/96"), "is an IPv4-compatible address"},
	{netip.MustParsePrefix("64:ff9b::/96"), "is a NAT64 address (embeds IPv4)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "is a NAT64 address (embeds IPv4)"},
	{netip.MustParsePrefix("100::/64"), "is in the discard-only range"},
	{netip.MustParsePrefix("2001::/32"), "is a Teredo address (embeds IPv4)"},
	{netip.MustParsePrefix("2001:db8::/32"), "is in a documentation range"},
	{netip.MustParsePrefix("2002::/16"), "is a 6to4 address (embeds IPv4)"},
	{netip.MustParsePrefix("fc00::/7"), "is in a private range"},
	{netip.MustParsePrefix("fe80::/10"), "is link-local"},
	{netip.MustParsePrefix("ff00::/8"), "is multicast"},
}

// parseURL applies the checks on a stored customer URL that need no DNS.
func parseURL(raw string) (*url.URL, error) {
	if len(raw) > maxURLLength {
		return nil, refusal(fmt.Sprintf("longer than %d bytes", maxURLLength))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, refusal(err.Error())
	}
	if u.Fragment != "" || u.RawFragment != "" {
		return nil, refusal("must not have a fragment")
	}
	if err := checkTarget(u); err != nil {
		return nil, err
	}
	return u, nil
}

// checkTarget applies the checks on every URL requested, redirects included.
func checkTarget(u *url.URL) error {
	if u.Scheme != "https" {
		return refusal(fmt.Sprintf("scheme must be https, not %q", u.Scheme))
	}
	if u.User != nil {
		return refusal("must not contain userinfo")
	}
	if u.Hostname() == "" {
		return refusal("has no host")
	}
	return nil
}

// refusal is a permanent refusal: it wraps ErrForbidden.
type refusal string

func (r refusal) Error() string { return string(r) }

func (r refusal) Unwrap() error { return ErrForbidden }
