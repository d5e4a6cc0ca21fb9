package tenantalertsextension

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var testLimits = ruleLimits{maxExprBytes: 4096, maxFor: 24 * time.Hour, tenantLabel: "tenant_id"}

func TestRuleValidation(t *testing.T) {
	good := Rule{Name: "HotGPU", Expr: `max by (hw.id) (hw.temperature) > 85`, For: Duration(5 * time.Minute),
		Labels:      map[string]string{"severity": "warning", "team": "ml"},
		Annotations: map[string]string{"summary": `{{ index $labels "hw.id" }} at {{ $value | humanize }} C`}}
	require.NoError(t, good.validate(testLimits))
	labels := good
	labels.Annotations = map[string]string{"all": `{{ range $k, $v := $labels }}{{ $k }}={{ $v }} {{ end }}{{ range .Labels }}{{ . }}{{ end }}`}
	require.NoError(t, labels.validate(testLimits), "ranging over the alert's labels, once, is fine")

	for name, tc := range map[string]struct {
		mutate func(*Rule)
		want   string
	}{
		"bad name":            {func(r *Rule) { r.Name = "1abc" }, "name:"},
		"name with dash":      {func(r *Rule) { r.Name = "a-b" }, "name:"},
		"long name":           {func(r *Rule) { r.Name = strings.Repeat("a", 65) }, "name:"},
		"empty expr":          {func(r *Rule) { r.Expr = " " }, "expr: must be set"},
		"unparseable expr":    {func(r *Rule) { r.Expr = "sum(" }, "expr:"},
		"huge expr":           {func(r *Rule) { r.Expr = strings.Repeat("a", 5000) }, "expr: 5000 bytes"},
		"for too long":        {func(r *Rule) { r.For = Duration(25 * time.Hour) }, "for: 25h0m0s is outside"},
		"negative keep":       {func(r *Rule) { r.KeepFiringFor = Duration(-time.Second) }, "keep_firing_for:"},
		"tenant label":        {func(r *Rule) { r.Labels["tenant_id"] = "acme" }, `labels: "tenant_id" is set by the provider`},
		"alertname label":     {func(r *Rule) { r.Labels["alertname"] = "x" }, "alertname is the rule's name"},
		"reserved label":      {func(r *Rule) { r.Labels["__name__"] = "x" }, "not a label name"},
		"dotted label":        {func(r *Rule) { r.Labels["hw.id"] = "x" }, "not a label name"},
		"query in annotation": {func(r *Rule) { r.Annotations["x"] = `{{ query "hw.status{tenant_id=\"acme\"}" | first | value }}` }, `function "query" not defined`},
		"query in label":      {func(r *Rule) { r.Labels["x"] = `{{ query "up" }}` }, `function "query" not defined`},
		"externalURL func":    {func(r *Rule) { r.Annotations["x"] = `{{ externalURL }}` }, `function "externalURL" not defined`},
		"pathPrefix func":     {func(r *Rule) { r.Annotations["x"] = `{{ pathPrefix }}` }, `function "pathPrefix" not defined`},
		"externalURL var":     {func(r *Rule) { r.Annotations["x"] = `{{ $externalURL }}` }, "undefined variable"},
		"externalLabels var":  {func(r *Rule) { r.Annotations["x"] = `{{ $externalLabels.dc }}` }, "undefined variable"},
		"external field":      {func(r *Rule) { r.Annotations["x"] = `{{ .ExternalURL }}` }, "ExternalURL is not available"},
		"external via with":   {func(r *Rule) { r.Annotations["x"] = `{{ with . }}{{ .ExternalLabels }}{{ end }}` }, "ExternalLabels is not available"},
		"template call":       {func(r *Rule) { r.Annotations["x"] = `{{ template "x" }}` }, "not allowed"},
		"define":              {func(r *Rule) { r.Annotations["x"] = `{{ define "y" }}a{{ end }}` }, "not allowed"},
		"call builtin":        {func(r *Rule) { r.Annotations["x"] = `{{ call .Value }}` }, `function "call" not defined`},
		"broken template":     {func(r *Rule) { r.Annotations["x"] = `{{ index $labels "a" ` }, "template:"},
		"printf width":        {func(r *Rule) { r.Annotations["x"] = `{{ printf "%01000000d" 0 }}` }, `function "printf" not defined`},
		"print":               {func(r *Rule) { r.Annotations["x"] = `{{ print 1 }}` }, `function "print" not defined`},
		"reReplaceAll":        {func(r *Rule) { r.Annotations["x"] = `{{ reReplaceAll "" "xxxxxxxx" $value }}` }, `function "reReplaceAll" not defined`},
		"range over a number": {func(r *Rule) { r.Annotations["x"] = `{{ range 100000000 }}x{{ end }}` }, "{{range}} only over $labels"},
		"range over a pipe":   {func(r *Rule) { r.Annotations["x"] = `{{ range $labels | len }}x{{ end }}` }, "{{range}} only over $labels"},
		"nested range": {func(r *Rule) {
			r.Annotations["x"] = `{{ range $labels }}{{ range $labels }}x{{ end }}{{ end }}`
		}, "not inside another"},
		"microseconds": {func(r *Rule) { r.For = Duration(1500 * time.Microsecond) }, "for: 1.5ms is not whole seconds"},
		"nanoseconds":  {func(r *Rule) { r.KeepFiringFor = Duration(2) }, "keep_firing_for: 2ns is not whole seconds"},
		"too many labels": {func(r *Rule) {
			for i := range 17 {
				r.Labels[string(rune('a'+i))] = "v"
			}
		}, "labels: 19 entries"},
		"long annotation": {func(r *Rule) { r.Annotations["x"] = strings.Repeat("a", 3000) }, "annotations.x: 3000 bytes"},
	} {
		t.Run(name, func(t *testing.T) {
			r := good
			r.Labels = map[string]string{"severity": "warning", "team": "ml"}
			r.Annotations = map[string]string{"summary": good.Annotations["summary"]}
			tc.mutate(&r)
			err := r.validate(testLimits)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// The default pack passes the checks a tenant's rules pass: its templates
// and expressions are what vmalert and the store accept.
func TestDefaultPackIsValid(t *testing.T) {
	names := map[string]bool{}
	for _, r := range defaultPack() {
		require.NoError(t, r.validate(testLimits), r.Name)
		require.NotEmpty(t, r.Reason, r.Name)
		require.NotEmpty(t, r.Action, r.Name)
		require.NotEmpty(t, r.Annotations["summary"], r.Name)
		require.Contains(t, []string{"critical", "warning", "info"}, r.Labels["severity"], r.Name)
		require.False(t, names[r.Name], "duplicate %s", r.Name)
		names[r.Name] = true
	}
	for _, want := range []string{"GPUFailed", "GPUDegraded", "GPUXidNeedsAction", "GPUThermalThrottling", "GPUPowerThrottling",
		"GPUUncorrectableMemoryErrors", "AgentNotReporting", "GPUIdle"} {
		require.True(t, names[want], want)
	}
}

func TestDurationJSON(t *testing.T) {
	var d Duration
	require.NoError(t, d.UnmarshalText([]byte("1h30m")))
	require.Equal(t, Duration(90*time.Minute), d)
	b, err := d.MarshalText()
	require.NoError(t, err)
	require.Equal(t, "1h30m0s", string(b))
	require.ErrorContains(t, d.UnmarshalText([]byte("soon")), `"soon" is not a duration`)
}
