package tenantqueryextension

import (
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/otelcol-gpu/otelcol-gpu/internal/credentials"
)

// sessionCookie carries a browser's session id (never the key). The
// __Host- prefix has browsers take it only with Secure, Path=/ and no
// Domain, from this host: a sibling subdomain cannot plant one that wins.
const sessionCookie = "__Host-otelcol_gpu_session"

// authResult is why a request was or was not identified.
type authResult string

const (
	authOK         authResult = "ok"
	authMissing    authResult = "missing"
	authInvalid    authResult = "invalid"
	authWrongScope authResult = "wrong_scope"
	// authUnavailable: the credentials file has failed to load for longer
	// than credentials_max_stale, so no key can be checked (503, retryable;
	// browser sessions are kept).
	authUnavailable authResult = "credentials_unavailable"
)

// identify finds the read key behind a request: an Authorization header
// (Bearer <key>, or Basic with the key as password, which Grafana's
// Prometheus data source and browsers send), else a session cookie from
// the login page. Keys are never taken from the URL. An ingest token is
// refused like an unknown key, counted apart.
func (s *queryServer) identify(r *http.Request) (*credentials.Credential, string, authResult) {
	set := s.creds.Set()
	if set.Unavailable() != nil {
		return nil, "", authUnavailable
	}
	if values := r.Header.Values("Authorization"); len(values) > 0 {
		if len(values) != 1 {
			return nil, "", authInvalid
		}
		key, via, ok := keyFromHeader(values[0])
		if !ok {
			return nil, "", authInvalid
		}
		cred, found := set.Lookup(key)
		switch {
		case !found:
			return nil, via, authInvalid
		case cred.Scope != credentials.ScopeRead:
			return nil, via, authWrongScope
		}
		return cred, via, authOK
	}
	if c, err := r.Cookie(sessionCookie); err == nil && s.sessions != nil {
		cred, ok := s.sessions.get(c.Value)
		if !ok || !set.Current(cred) {
			return nil, "session", authInvalid
		}
		return cred, "session", authOK
	}
	return nil, "", authMissing
}

// keyFromHeader reads "Bearer <key>" or "Basic base64(user:key)".
func keyFromHeader(v string) (key, via string, ok bool) {
	scheme, rest, found := strings.Cut(strings.TrimSpace(v), " ")
	if !found {
		return "", "", false
	}
	rest = strings.TrimSpace(rest)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return rest, "bearer", rest != ""
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", "basic", false
		}
		_, pass, found := strings.Cut(string(raw), ":")
		return pass, "basic", found && pass != ""
	}
	return "", "", false
}
