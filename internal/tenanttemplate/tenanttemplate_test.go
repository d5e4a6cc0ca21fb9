package tenanttemplate

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseAndRender(t *testing.T) {
	tm, err := Parse("http://s/{tenant}/{account}?x={tenant}")
	require.NoError(t, err)
	require.Equal(t, []string{"account"}, tm.Vars())
	got, err := RenderURL(tm, "acme", map[string]string{"account": "a b/c"})
	require.NoError(t, err)
	require.Equal(t, "http://s/acme/a%20b%2Fc?x=acme", got, "variables are escaped, never spliced raw into the URL")
	_, err = tm.Render("acme", nil, func(s string) string { return s })
	require.ErrorContains(t, err, `tenant "acme" has no "account"`)
	for _, bad := range []string{"{}", "{Tenant}", "a}b", "{a{b}"} {
		_, err := Parse(bad)
		require.Error(t, err, bad)
	}
	_, err = RenderURL(mustParse(t, "{tenant}"), "acme", nil)
	require.ErrorContains(t, err, "not an http(s) URL")
}

func mustParse(t *testing.T, s string) Template {
	tm, err := Parse(s)
	require.NoError(t, err)
	return tm
}

func TestUses(t *testing.T) {
	require.False(t, mustParse(t, "http://store:8428").Uses())
	require.True(t, mustParse(t, "http://store/select/{account}/prometheus").Uses())
	require.True(t, mustParse(t, "{tenant}").Uses())
	require.True(t, Template{}.IsZero())
	require.Equal(t, "{tenant}", mustParse(t, "{tenant}").Raw())
}

func TestParseHeaders(t *testing.T) {
	h, errs := ParseHeaders("tenant_headers", map[string]string{"x-scope-orgid": "{tenant}", "X-Bad": "{oops"})
	require.Len(t, errs, 1)
	require.ErrorContains(t, errs[0], "tenant_headers.X-Bad: template")
	require.Equal(t, "{tenant}", h["X-Scope-Orgid"].Raw(), "keyed by canonical name")
}
