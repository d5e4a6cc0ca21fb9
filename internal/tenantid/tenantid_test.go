package tenantid

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidate(t *testing.T) {
	for _, ok := range []string{"a", "acme", "acme-gpu_2", "0tenant", strings.Repeat("x", MaxLen)} {
		require.NoError(t, Validate(ok), ok)
	}
	for bad, want := range map[string]string{
		"":                            "empty",
		"Acme":                        `"Acme": character 'A'`,
		"-acme":                       "position 0",
		"_acme":                       "position 0",
		"ac me":                       `' '`,
		"acme/../b":                   `'/'`,
		"acme\x00":                    "position 4",
		"tenant.a":                    `'.'`,
		"ünicode":                     "position 0",
		strings.Repeat("x", MaxLen+1): "64 characters long",
	} {
		err := Validate(bad)
		require.Error(t, err, "%q accepted", bad)
		require.ErrorContains(t, err, want)
	}
}

func FuzzValidate(f *testing.F) {
	for _, s := range []string{"acme", "A", "-", "a-b_c", "", "x/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if Validate(s) != nil {
			return
		}
		// Whatever passes is safe as a label value, a path element and a host label.
		require.NotEmpty(t, s)
		require.LessOrEqual(t, len(s), MaxLen)
		require.Equal(t, strings.ToLower(s), s)
		require.NotContains(t, s, "/")
		require.NotContains(t, s, ".")
	})
}
