package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestArgumentErrorsNameTheFlag(t *testing.T) {
	for args, want := range map[string][]string{
		"no command":   {},
		"-from is":     {"report"},
		"not on the":   {"report", "-from", "2026-12-01T10:30"},
		"is not after": {"report", "-from", "2026-12-01T10Z", "-to", "2026-12-01T09Z"},
		"-tenant":      {"report", "-from", "2026-12-01T10Z", "-tenant", "Acme Corp"},
	} {
		var out, errOut bytes.Buffer
		err := run(want, &out, &errOut)
		if assert.Error(t, err, "%v", want) && args != "no command" {
			assert.Contains(t, err.Error(), args)
		}
		assert.Empty(t, out.String())
	}
}
