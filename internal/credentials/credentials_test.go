package credentials

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func hashOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func credLine(id, tenant, token string) string {
	return fmt.Sprintf("  - id: %s\n    tenant: %s\n    sha256: %s\n", id, tenant, hashOf(token))
}

func TestParse(t *testing.T) {
	data := "credentials:\n" +
		credLine("vm-1", "acme", "token-a1") +
		credLine("vm-2", "acme", "token-a2") +
		credLine("vm-3", "globex", "token-g1")
	set, err := Parse([]byte(data))
	require.NoError(t, err)
	require.Len(t, set.byHash, 3)
	require.Equal(t, 2, set.Tenants())

	c, ok := set.Lookup("token-a2")
	require.True(t, ok)
	require.Equal(t, "acme", c.Tenant)
	require.Equal(t, "vm-2", c.ID)
	c, ok = set.Lookup("token-g1")
	require.True(t, ok)
	require.Equal(t, "globex", c.Tenant)
	for _, bad := range []string{"", "token-a", "token-a1 ", hashOf("token-a1")} {
		_, ok = set.Lookup(bad)
		require.False(t, ok, "%q must not authenticate", bad)
	}
}

func TestParseAcceptsUppercaseHashAndEmptyFile(t *testing.T) {
	set, err := Parse([]byte("credentials:\n  - id: a\n    tenant: acme\n    sha256: " + strings.ToUpper(hashOf("t")) + "\n"))
	require.NoError(t, err)
	_, ok := set.Lookup("t")
	require.True(t, ok)

	for _, empty := range []string{"", "credentials: []\n", "# nothing yet\n"} {
		set, err = Parse([]byte(empty))
		require.NoError(t, err, "%q", empty)
		require.Empty(t, set.byHash)
	}
}

func TestParseErrorsNameTheEntry(t *testing.T) {
	cases := map[string]struct{ data, want string }{
		"unknown field": {"credentials:\n  - id: a\n    tenant: acme\n    token: secret\n", "field token not found"},
		"not a list":    {"credentials: acme\n", "cannot unmarshal"},
		"missing id":    {"credentials:\n" + strings.Replace(credLine("x", "acme", "t"), "id: x", "id: \"\"", 1), "credentials[0]: id: must be set"},
		"duplicate id":  {"credentials:\n" + credLine("a", "acme", "t1") + credLine("a", "acme", "t2"), `credentials[1] (id "a"): id: also used by credentials[0]`},
		"bad tenant":    {"credentials:\n" + credLine("a", "Acme", "t1"), `credentials[0] (id "a"): tenant: tenant id "Acme"`},
		"short hash":    {"credentials:\n  - id: a\n    tenant: acme\n    sha256: abcd\n", "sha256: want 64 hex characters"},
		"not hex":       {"credentials:\n  - id: a\n    tenant: acme\n    sha256: " + strings.Repeat("z", 64) + "\n", "sha256: not hexadecimal"},
		"bad scope":     {"credentials:\n" + credLine("a", "acme", "t1") + "    scope: admin\n", `credentials[0] (id "a"): scope: must be "ingest" or "read", got "admin"`},
		"same token twice": {
			"credentials:\n" + credLine("a", "acme", "t1") + credLine("b", "globex", "t1"),
			`credentials[1] (id "b"): sha256: the same token hash as id "a"`,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.data))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("credentials:\n" + credLine("vm-1", "acme", "token-a1") + credLine("vm-2", "globex", "token-g1")))
	f.Add([]byte("credentials: []\n"))
	f.Add([]byte("credentials:\n  - id: a\n    tenant: ACME\n    sha256: 00\n"))
	f.Add([]byte("{credentials: [{id: a, tenant: b, sha256: " + hashOf("x") + "}]}"))
	f.Add([]byte("credentials:\n  - &a {id: a}\n  - *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := Parse(data)
		if err != nil {
			require.Nil(t, set)
			return
		}
		// Whatever parses holds only well-formed, unambiguous credentials.
		ids := map[string]bool{}
		for h, c := range set.byHash {
			require.Equal(t, h, c.Hash)
			require.NotEmpty(t, c.ID)
			require.False(t, ids[c.ID], "duplicate id %q", c.ID)
			ids[c.ID] = true
			require.NotEmpty(t, c.Tenant)
			require.Contains(t, []Scope{ScopeIngest, ScopeRead}, c.Scope)
		}
	})
}

func TestScopes(t *testing.T) {
	data := "credentials:\n" +
		credLine("vm-1", "acme", "token-a1") + // written before scopes: an ingest token
		credLine("vm-2", "acme", "token-a2") + "    scope: ingest\n" +
		credLine("key-1", "acme", "key-a1") + "    scope: read\n"
	set, err := Parse([]byte(data))
	require.NoError(t, err)
	for token, want := range map[string]Scope{"token-a1": ScopeIngest, "token-a2": ScopeIngest, "key-a1": ScopeRead} {
		c, ok := set.Lookup(token)
		require.True(t, ok)
		require.Equal(t, want, c.Scope, token)
	}
}

func TestCurrentFollowsTheFile(t *testing.T) {
	before, err := Parse([]byte("credentials:\n" + credLine("key-1", "acme", "k") + "    scope: read\n"))
	require.NoError(t, err)
	c, ok := before.Lookup("k")
	require.True(t, ok)
	require.True(t, before.Current(c))

	for name, data := range map[string]string{
		"removed":         "credentials: []\n",
		"moved to tenant": "credentials:\n" + credLine("key-1", "globex", "k") + "    scope: read\n",
		"scope changed":   "credentials:\n" + credLine("key-1", "acme", "k") + "    scope: ingest\n",
		"id changed":      "credentials:\n" + credLine("key-2", "acme", "k") + "    scope: read\n",
	} {
		after, err := Parse([]byte(data))
		require.NoError(t, err)
		require.False(t, after.Current(c), name)
	}
}
