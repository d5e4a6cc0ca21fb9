package tenantotlphttpexporter

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
)

// template is a string with {tenant} and {variable} placeholders.
type template struct {
	raw   string
	parts []tmplPart
}

type tmplPart struct {
	lit string
	v   string // placeholder name; empty for a literal
}

func parseTemplate(raw string) (template, error) {
	t := template{raw: raw}
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

// vars lists the placeholders other than {tenant}.
func (t template) vars() []string {
	var out []string
	for _, p := range t.parts {
		if p.v != "" && p.v != "tenant" {
			out = append(out, p.v)
		}
	}
	return out
}

// render fills the template for one tenant. Tenant ids follow the grammar,
// so they are safe in a URL path, query value or header without escaping;
// variables from the config are escaped for where they may land.
func (t template) render(tenant string, vars map[string]string, escape func(string) string) (string, error) {
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

func renderURL(t template, tenant string, vars map[string]string) (string, error) {
	s, err := t.render(tenant, vars, url.PathEscape)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("endpoint %q rendered for tenant %q is not an http(s) URL", s, tenant)
	}
	return s, nil
}
