package credentials

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

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
	f.Add([]byte("credentials:\n" + credLine("a", "acme", "t1") + "    instance_id: i-1\n    gpus: 8\n" + credLine("b", "acme", "t2") + "    instance_id: i-1\n    gpus: 8\n"))
	f.Add([]byte("credentials:\n" + credLine("a", "acme", "t1") + "    expires: 2027-01-31T00:00:00+02:00\n" + credLine("b", "acme", "t2") + "    expires: 2027-01-31\n"))
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
			require.Equal(t, time.UTC, c.Expires.Location(), "an expiry is held in UTC: Current compares whole values")
			if c.Scope == ScopeIngest {
				vm, ok := set.Instances()[c.VM()]
				require.True(t, ok, "every VM token's VM is an instance")
				require.Equal(t, Instance{Tenant: c.Tenant, GPUs: c.GPUs, GPUsKnown: c.GPUsKnown}, vm, "credentials of one VM agree")
			} else {
				require.Empty(t, c.InstanceID)
				require.False(t, c.GPUsKnown)
			}
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

func TestVMFields(t *testing.T) {
	data := "credentials:\n" +
		credLine("vm-1", "acme", "t1") + "    instance_id: i-0abc\n    gpus: 8\n" +
		credLine("vm-1-next", "acme", "t1b") + "    instance_id: i-0abc\n    gpus: 8\n" + // rotation: the same VM
		credLine("vm-2", "acme", "t2") + "    gpus: 0\n" + // no GPUs, known
		credLine("vm-3", "globex", "t3") + "    instance_id: \"eu-1:9f2c.A_b-C\"\n" + // GPUs unknown
		credLine("vm-4", "globex", "t4") + // neither: the id is the VM
		credLine("key-1", "acme", "k1") + "    scope: read\n"
	set, err := Parse([]byte(data))
	require.NoError(t, err)

	c, ok := set.Lookup("t1b")
	require.True(t, ok)
	require.Equal(t, Credential{ID: "vm-1-next", Tenant: "acme", Scope: ScopeIngest, Hash: c.Hash,
		InstanceID: "i-0abc", GPUs: 8, GPUsKnown: true}, *c)
	require.Equal(t, "i-0abc", c.VM())
	c, _ = set.Lookup("t4")
	require.Equal(t, "vm-4", c.VM(), "without instance_id the credential's id is the VM")
	require.False(t, c.GPUsKnown)

	require.Equal(t, map[string]Instance{
		"i-0abc":          {Tenant: "acme", GPUs: 8, GPUsKnown: true},
		"vm-2":            {Tenant: "acme", GPUs: 0, GPUsKnown: true},
		"eu-1:9f2c.A_b-C": {Tenant: "globex"},
		"vm-4":            {Tenant: "globex"},
	}, set.Instances(), "one entry a VM, keyed as the gateway stamps it; read keys are no VMs")

	got := set.Instances()
	delete(got, "vm-4")
	require.Contains(t, set.Instances(), "vm-4", "the returned map is the caller's")
}

func TestVMFieldsMayJoinAnIDToAnInstanceID(t *testing.T) {
	// The old token had no instance_id, so its id was the VM; its successor
	// names that VM explicitly.
	set, err := Parse([]byte("credentials:\n" + credLine("vm-9", "acme", "old") +
		credLine("vm-9-next", "acme", "new") + "    instance_id: vm-9\n"))
	require.NoError(t, err)
	require.Equal(t, map[string]Instance{"vm-9": {Tenant: "acme"}}, set.Instances())
}

func TestVMFieldErrorsNameTheEntry(t *testing.T) {
	long := strings.Repeat("a", MaxInstanceIDLen+1)
	cases := map[string]struct{ data, want string }{
		"empty instance_id": {credLine("a", "acme", "t1") + "    instance_id: \"\"\n",
			`credentials[0] (id "a"): instance_id: "": must be 1 to 128 characters long, is 0`},
		"long instance_id": {credLine("a", "acme", "t1") + "    instance_id: " + long + "\n",
			`credentials[0] (id "a"): instance_id: "` + long + `": must be 1 to 128 characters long, is 129`},
		"instance_id with a slash": {credLine("a", "acme", "t1") + "    instance_id: i/0\n",
			`credentials[0] (id "a"): instance_id: "i/0": character '/' at position 1 is not allowed`},
		"instance_id with a space": {credLine("a", "acme", "t1") + "    instance_id: \"i 0\"\n", `character ' ' at position 1`},
		"instance_id not ascii":    {credLine("a", "acme", "t1") + "    instance_id: \"é\"\n", "is not allowed"},
		"negative gpus": {credLine("a", "acme", "t1") + "    gpus: -1\n",
			`credentials[0] (id "a"): gpus: must be an integer from 0 to 1024, got -1`},
		"too many gpus": {credLine("a", "acme", "t1") + "    gpus: 1025\n", `(id "a"): gpus: must be an integer from 0 to 1024, got 1025`},
		"fraction gpus": {credLine("a", "acme", "t1") + "    gpus: 1.5\n", `(id "a"): gpus: must be an integer from 0 to 1024, got 1.5`},
		"string gpus":   {credLine("a", "acme", "t1") + "    gpus: \"8\"\n", `(id "a"): gpus: must be an integer`},
		"huge gpus":     {credLine("a", "acme", "t1") + "    gpus: 99999999999999999999\n", `(id "a"): gpus: must be an integer`},
		"list gpus":     {credLine("a", "acme", "t1") + "    gpus: [8]\n", `(id "a"): gpus: must be an integer`},
		"read key with instance_id": {credLine("k", "acme", "k1") + "    scope: read\n    instance_id: i-1\n",
			`credentials[0] (id "k"): instance_id, gpus: only an ingest credential (a VM's token) describes a VM`},
		"read key with gpus": {credLine("k", "acme", "k1") + "    scope: read\n    gpus: 0\n",
			`credentials[0] (id "k"): instance_id, gpus: only an ingest credential`},
		"one VM, two tenants": {credLine("a", "acme", "t1") + "    instance_id: i-1\n" + credLine("b", "globex", "t2") + "    instance_id: i-1\n",
			`credentials[1] (id "b"): instance_id "i-1": id "a" names the same VM with tenant "acme" and gpus unknown, this entry says tenant "globex" and gpus unknown`},
		"one VM, two GPU counts": {credLine("a", "acme", "t1") + "    instance_id: i-1\n    gpus: 8\n" + credLine("b", "acme", "t2") + "    instance_id: i-1\n    gpus: 4\n",
			`credentials[1] (id "b"): instance_id "i-1": id "a" names the same VM with tenant "acme" and gpus 8, this entry says tenant "acme" and gpus 4`},
		"one VM, gpus known and unknown": {credLine("a", "acme", "t1") + "    instance_id: i-1\n    gpus: 0\n" + credLine("b", "acme", "t2") + "    instance_id: i-1\n",
			`id "a" names the same VM with tenant "acme" and gpus 0, this entry says tenant "acme" and gpus unknown`},
		"an id and an instance_id, two tenants": {credLine("vm-9", "acme", "t1") + credLine("b", "globex", "t2") + "    instance_id: vm-9\n",
			`credentials[1] (id "b"): instance_id "vm-9": id "vm-9" names the same VM with tenant "acme"`},
		"an instance_id and an id, two tenants": {credLine("b", "globex", "t2") + "    instance_id: vm-9\n" + credLine("vm-9", "acme", "t1"),
			`credentials[1] (id "vm-9"): VM "vm-9" (the id; no instance_id given): id "b" names the same VM with tenant "globex"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte("credentials:\n" + tc.data))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestCurrentFollowsTheVMFields(t *testing.T) {
	before, err := Parse([]byte("credentials:\n" + credLine("vm-1", "acme", "t") + "    instance_id: i-1\n    gpus: 8\n"))
	require.NoError(t, err)
	c, ok := before.Lookup("t")
	require.True(t, ok)
	require.True(t, before.Current(c))
	for name, data := range map[string]string{
		"instance moved": credLine("vm-1", "acme", "t") + "    instance_id: i-2\n    gpus: 8\n",
		"gpus changed":   credLine("vm-1", "acme", "t") + "    instance_id: i-1\n    gpus: 4\n",
		"gpus unknown":   credLine("vm-1", "acme", "t") + "    instance_id: i-1\n",
	} {
		after, err := Parse([]byte("credentials:\n" + data))
		require.NoError(t, err)
		require.False(t, after.Current(c), name)
	}
}

// at is a Set's clock held still at t.
func at(s *Set, t time.Time) { s.now = func() time.Time { return t } }

func TestExpiresIsJudgedAtLookup(t *testing.T) {
	data := "credentials:\n" +
		credLine("vm-1", "acme", "t1") + "    expires: 2027-01-31T00:00:00Z\n" +
		credLine("key-1", "acme", "k1") + "    scope: read\n    expires: \"2027-01-31T02:00:00+02:00\"\n" + // the same instant
		credLine("vm-2", "acme", "t2") // never expires
	set, err := Parse([]byte(data))
	require.NoError(t, err)
	expiry := time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)

	at(set, expiry.Add(-time.Nanosecond))
	c1, ok := set.Lookup("t1")
	require.True(t, ok, "before its expiry a credential works")
	require.Equal(t, expiry, c1.Expires)
	k1, ok := set.Lookup("k1")
	require.True(t, ok)
	require.Equal(t, c1.Expires, k1.Expires, "an offset is the same instant, held in UTC")
	require.True(t, set.Current(c1))
	require.True(t, set.Current(k1))
	c2, ok := set.Lookup("t2")
	require.True(t, ok)
	require.True(t, c2.Expires.IsZero())

	for _, now := range []time.Time{expiry, expiry.Add(time.Hour), expiry.AddDate(10, 0, 0)} {
		at(set, now)
		for _, token := range []string{"t1", "k1"} {
			c, ok := set.Lookup(token)
			require.False(t, ok, "%s at %s: from its expiry on a credential is refused like an unknown one", token, now)
			require.Nil(t, c)
		}
		require.False(t, set.Current(c1), "a session of an expired key ends")
		require.False(t, set.Current(k1))
		_, ok = set.Lookup("t2")
		require.True(t, ok, "a credential without expires never expires")
		require.True(t, set.Current(c2))
	}
	require.Equal(t, 3, set.Len(), "an expired credential is still the file's")

	// The same file read again gives the same credential: sessions survive
	// a reload that changed nothing, whatever zone the expiry was written in.
	again, err := Parse([]byte(data))
	require.NoError(t, err)
	at(again, expiry.Add(-time.Hour))
	require.True(t, again.Current(c1))
	require.True(t, again.Current(k1))

	// An expiry moved is a changed credential.
	moved, err := Parse([]byte(strings.Replace(data, "2027-01-31T00:00:00Z", "2027-02-28T00:00:00Z", 1)))
	require.NoError(t, err)
	at(moved, expiry.Add(-time.Hour))
	require.False(t, moved.Current(c1))
}

func TestExpiresErrorsNameTheEntry(t *testing.T) {
	for value, want := range map[string]string{
		"2027-01-31":            `credentials[0] (id "a"): expires: want an RFC 3339 time such as 2027-01-31T00:00:00Z, got "2027-01-31"`,
		"2027-01-31T00:00:00":   `credentials[0] (id "a"): expires: want an RFC 3339 time such as 2027-01-31T00:00:00Z, got "2027-01-31T00:00:00"`,
		"\"\"":                  `credentials[0] (id "a"): expires: want an RFC 3339 time`,
		"tomorrow":              `(id "a"): expires: want an RFC 3339 time such as 2027-01-31T00:00:00Z, got "tomorrow"`,
		"1800000000":            `(id "a"): expires: want an RFC 3339 time such as 2027-01-31T00:00:00Z, got "1800000000"`,
		"2027-02-30T00:00:00Z":  `(id "a"): expires: want an RFC 3339 time`,
		"2027-01-31 00:00:00Z":  `(id "a"): expires: want an RFC 3339 time`,
		"2027-01-31T00:00:00+2": `(id "a"): expires: want an RFC 3339 time`,
	} {
		_, err := Parse([]byte("credentials:\n" + credLine("a", "acme", "t1") + "    expires: " + value + "\n"))
		require.ErrorContains(t, err, want, value)
	}
	// Every problem of the entry is reported together.
	_, err := Parse([]byte("credentials:\n" + credLine("a", "Acme", "t1") + "    expires: soon\n"))
	require.ErrorContains(t, err, `tenant id "Acme"`)
	require.ErrorContains(t, err, `expires: want an RFC 3339 time such as 2027-01-31T00:00:00Z, got "soon"`)
}

func TestASetFromTheFileIsAvailable(t *testing.T) {
	set, err := Parse([]byte("credentials:\n" + credLine("a", "acme", "t1")))
	require.NoError(t, err)
	require.NoError(t, set.Unavailable())
}
