package usagecloudeventsexporter

import (
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite README.md's metric table from telemetry.go")

const (
	tableStart = "<!-- metrics:start (generated from telemetry.go by `go test -run TestReadme -update`) -->"
	tableEnd   = "<!-- metrics:end -->"
)

func metricTable() string {
	var b strings.Builder
	b.WriteString("| metric | unit | attributes | |\n|---|---|---|---|\n")
	for _, d := range metricDefs {
		attrs := "-"
		if len(d.attrs) > 0 {
			attrs = "`" + strings.Join(d.attrs, "`, `") + "`"
		}
		b.WriteString("| `" + d.name + "` | " + d.unit + " | " + attrs + " | " + d.description + " |\n")
	}
	return b.String()
}

func TestReadmeMetricTableMatchesTheCode(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	require.NoError(t, err)
	readme := string(raw)
	start := strings.Index(readme, tableStart)
	end := strings.Index(readme, tableEnd)
	require.True(t, start >= 0 && end > start, "README.md lacks the metric table markers")
	body := readme[start+len(tableStart)+1 : end]
	want := metricTable()
	if *update {
		readme = readme[:start+len(tableStart)+1] + want + readme[end:]
		require.NoError(t, os.WriteFile("README.md", []byte(readme), 0o644))
		return
	}
	require.Equal(t, want, body, "README.md's metric table differs from telemetry.go: run go test -run TestReadme -update")
}

// Every key of this exporter's own settings has a row in the README's
// configuration table (the upstream helpers' keys are documented upstream).
func TestReadmeConfigTableNamesEveryKey(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	require.NoError(t, err)
	readme := string(raw)
	for _, key := range configKeys(reflect.TypeOf(Config{}), "") {
		require.Contains(t, readme, "| `"+key+"` |", "README.md's configuration table lacks %s", key)
	}
}

func configKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		switch {
		case tag == "":
			keys = append(keys, "endpoint") // the squashed confighttp.ClientConfig
		case f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == t.PkgPath():
			keys = append(keys, configKeys(f.Type, prefix+tag+".")...)
		default:
			keys = append(keys, prefix+tag)
		}
	}
	return keys
}
