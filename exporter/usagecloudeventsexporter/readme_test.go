package usagecloudeventsexporter

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/readmetable"
)

func TestReadmeTelemetryTableMatchesTheCode(t *testing.T) {
	readmetable.CheckTelemetry(t, (&telemetry{}).metrics(), "telemetry.go")
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
