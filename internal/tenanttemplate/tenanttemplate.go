// Package tenanttemplate renders per-tenant endpoints and headers from
// templates with {tenant} and {variable} placeholders: the one vocabulary
// of the tenant_otlp_http exporter (writing) and the tenant_query extension
// (reading), so one operator config describes both ways to the store.
package tenanttemplate

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
)

// Template is a string with {tenant} and {variable} placeholders.
type Template struct {
	raw   string
	parts []tmplPart
}

type tmplPart struct {
	lit string
	v   string // placeholder name; empty for a literal
}

// Parse parses a template; placeholder names follow the tenant id grammar
// with '_' for '-'.
func Parse(raw string) (Template, error) {
	t := Template{raw: raw}
	rest := raw
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			if strings.IndexByte(rest, '}') >= 0 {
				return t, fmt.Errorf("template %q: '}' without '{'", raw)
			}
			t.parts = append(t.parts, tmplPart{lit: rest})
			break
		}
		if strings.IndexByte(rest[:open], '}') >= 0 {
			return t, fmt.Errorf("template %q: '}' without '{'", raw)
		}
		if open > 0 {
			t.parts = append(t.parts, tmplPart{lit: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return t, fmt.Errorf("template %q: '{' without '}'", raw)
		}
		name := rest[open+1 : open+end]
		if err := tenantid.Validate(strings.ReplaceAll(name, "_", "-")); err != nil || name == "" {
			return t, fmt.Errorf("template %q: %q is not a placeholder name (lowercase letters, digits, '_')", raw, name)
		}
		t.parts = append(t.parts, tmplPart{v: name})
		rest = rest[open+end+1:]
	}
	return t, nil
}

// Vars lists the placeholders other than {tenant}.
func (t Template) Vars() []string {
	var out []string
	for _, p := range t.parts {
		if p.v != "" && p.v != "tenant" {
			out = append(out, p.v)
		}
	}
	return out
}

// Render fills the template for one tenant. Tenant ids follow the grammar,
// so they are safe in a URL path, query value or header without escaping;
// variables from the config are escaped for where they may land.
func (t Template) Render(tenant string, vars map[string]string, escape func(string) string) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		switch p.v {
		case "":
			b.WriteString(p.lit)
		case "tenant":
			b.WriteString(tenant)
		default:
			v, ok := vars[p.v]
			if !ok {
				return "", fmt.Errorf("tenant %q has no %q in tenants: (needed by %q)", tenant, p.v, t.raw)
			}
			b.WriteString(escape(v))
		}
	}
	return b.String(), nil
}

// RenderURL renders an endpoint template and checks it is an http(s) URL;
// variables are path-escaped.
func RenderURL(t Template, tenant string, vars map[string]string) (string, error) {
	s, err := t.Render(tenant, vars, url.PathEscape)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("endpoint %q rendered for tenant %q is not an http(s) URL", s, tenant)
	}
	return s, nil
}

// Raw is the template as written in the config.
func (t Template) Raw() string { return t.raw }

// IsZero says the template was never parsed (no endpoint configured).
func (t Template) IsZero() bool { return t.raw == "" && t.parts == nil }

// Uses says whether the template has any placeholder: one that renders
// differently per tenant.
func (t Template) Uses() bool {
	for _, p := range t.parts {
		if p.v != "" {
			return true
		}
	}
	return false
}

// ParseHeaders parses header templates, keyed by canonical header name;
// each error names the header under field (the config key).
func ParseHeaders(field string, raw map[string]string) (map[string]Template, []error) {
	out := make(map[string]Template, len(raw))
	var errs []error
	for name, r := range raw {
		t, err := Parse(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.%s: %w", field, name, err))
			continue
		}
		out[http.CanonicalHeaderKey(name)] = t
	}
	return out, errs
}
