package tenantalertsextension

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"text/template/parse"
	"time"

	"github.com/VictoriaMetrics/metricsql"
)

// Rule is one alerting rule: a tenant's own, or one of the default pack.
// Its expression runs on the store held to the tenant (extra_label); what
// the rule says around it is checked here so that no part of it (labels,
// annotation templates) can reach another tenant or the provider's side.
type Rule struct {
	Name          string            `json:"name"`
	Expr          string            `json:"expr"`
	For           Duration          `json:"for,omitempty"`
	KeepFiringFor Duration          `json:"keep_firing_for,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// PackRule is a rule of the default pack, with why it is there and what
// the customer should do when it fires.
type PackRule struct {
	Rule
	Reason string `json:"reason"`
	Action string `json:"action"`
}

// Duration is a time.Duration written as "5m" in JSON and YAML.
type Duration time.Duration

// MarshalText writes the duration as Go and vmalert read it.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(time.Duration(d).String()), nil
}

// UnmarshalText reads "5m", "90s", "1h30m".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (e.g. 5m)", b)
	}
	*d = Duration(v)
	return nil
}

const (
	maxNameLen       = 64
	maxLabels        = 16
	maxLabelValueLen = 256
	maxAnnotationLen = 2048
)

var (
	ruleName  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
	labelName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// ruleLimits are what a tenant's rule may ask for.
type ruleLimits struct {
	maxExprBytes int
	maxFor       time.Duration
	tenantLabel  string
}

// validate checks a tenant's rule; every error names the field. The
// expression is parsed by MetricsQL's own parser (the one vmalert and the
// store use), so what passes here is what the engine accepts.
func (r *Rule) validate(l ruleLimits) error {
	var errs []error
	if len(r.Name) > maxNameLen || !ruleName.MatchString(r.Name) {
		errs = append(errs, fmt.Errorf("name: %q must be a letter then letters, digits or _, at most %d", r.Name, maxNameLen))
	}
	switch {
	case strings.TrimSpace(r.Expr) == "":
		errs = append(errs, errors.New("expr: must be set"))
	case len(r.Expr) > l.maxExprBytes:
		errs = append(errs, fmt.Errorf("expr: %d bytes, at most %d", len(r.Expr), l.maxExprBytes))
	default:
		if _, err := metricsql.Parse(r.Expr); err != nil {
			errs = append(errs, fmt.Errorf("expr: %w", err))
		}
	}
	for _, d := range []struct {
		field string
		v     Duration
	}{{"for", r.For}, {"keep_firing_for", r.KeepFiringFor}} {
		switch {
		case d.v < 0 || time.Duration(d.v) > l.maxFor:
			errs = append(errs, fmt.Errorf("%s: %s is outside 0 to %s", d.field, time.Duration(d.v), l.maxFor))
		case time.Duration(d.v)%time.Second != 0:
			errs = append(errs, fmt.Errorf("%s: %s is not whole seconds", d.field, time.Duration(d.v)))
		}
	}
	errs = append(errs, checkTemplated("labels", r.Labels, maxLabelValueLen, l.tenantLabel)...)
	errs = append(errs, checkTemplated("annotations", r.Annotations, maxAnnotationLen, "")...)
	return errors.Join(errs...)
}

// checkTemplated checks a rule's labels or annotations: names, sizes, and
// each value's template.
func checkTemplated(field string, m map[string]string, maxValue int, reserved string) []error {
	if len(m) > maxLabels {
		return []error{fmt.Errorf("%s: %d entries, at most %d", field, len(m), maxLabels)}
	}
	var errs []error
	for _, k := range sortedKeys(m) {
		v := m[k]
		switch {
		case !labelName.MatchString(k) || strings.HasPrefix(k, "__"):
			errs = append(errs, fmt.Errorf("%s: %q is not a label name (letters, digits, _; not starting with __)", field, k))
		case reserved != "" && k == reserved:
			errs = append(errs, fmt.Errorf("%s: %q is set by the provider to your tenant", field, k))
		case k == "alertname":
			errs = append(errs, fmt.Errorf("%s: alertname is the rule's name", field))
		case len(v) > maxValue:
			errs = append(errs, fmt.Errorf("%s.%s: %d bytes, at most %d", field, k, len(v), maxValue))
		default:
			if err := checkTemplate(v); err != nil {
				errs = append(errs, fmt.Errorf("%s.%s: %w", field, k, err))
			}
		}
	}
	return errs
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// templateFuncs are the template functions a tenant's labels and
// annotations may call: vmalert's formatting functions and Go's builtins
// whose output is bounded by their input. Not among them: query and first
// (a template's own query), externalURL and pathPrefix (the engine's
// address inside the provider's network), call and safeHtml, and what can
// make a template's output grow without bound at every evaluation in the
// engine every tenant shares: printf, print and println (a width of a
// million), reReplaceAll (a replacement repeated per character), slice.
var templateFuncs = func() map[string]any {
	m := map[string]any{}
	for _, name := range strings.Fields(`title toUpper toLower crlfEscape quotesEscape jsonEscape htmlEscape
		stripPort stripDomain match parseDuration parseDurationTime humanize humanize1024
		humanizeDuration humanizePercentage humanizeTimestamp toTime formatTime pathEscape queryEscape
		label value strvalue now
		and or not len index eq ne lt le gt ge html urlquery js`) {
		m[name] = func() {}
	}
	return m
}()

// templateVars are the variables vmalert gives a rule's templates, less
// $externalLabels and $externalURL (the provider's side).
const templateVars = `{{$labels := .Labels}}{{$value := .Value}}{{$expr := .Expr}}{{$activeAt := .ActiveAt}}{{$for := .For}}{{$alertID := .AlertID}}{{$groupID := .GroupID}}`

// checkTemplate refuses a template that does anything but format the
// alert's own labels and value: only the functions above, no {{template}}
// or {{define}}, no field or variable that reaches the engine's
// configuration, and {{range}} only over the alert's labels, not nested
// (Go's templates also range over a number: a hundred million times).
func checkTemplate(text string) error {
	if !strings.Contains(text, "{{") {
		return nil
	}
	trees, err := parse.Parse("t", templateVars+text, "{{", "}}", templateFuncs)
	if err != nil {
		return fmt.Errorf("template: %s", strings.TrimPrefix(err.Error(), "template: "))
	}
	if len(trees) != 1 {
		return errors.New("template: {{define}} and {{block}} are not allowed")
	}
	var bad error
	ranges := 0
	var walk func(parse.Node)
	walk = func(n parse.Node) {
		if n == nil || bad != nil {
			return
		}
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c)
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n == nil {
				return
			}
			for _, c := range n.Cmds {
				walk(c)
			}
		case *parse.CommandNode:
			for _, c := range n.Args {
				walk(c)
			}
		case *parse.IfNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			if ranges > 0 || !overLabels(n.Pipe) {
				bad = errors.New("template: {{range}} only over $labels, and not inside another")
				return
			}
			ranges++
			walk(n.List)
			walk(n.ElseList)
			ranges--
		case *parse.WithNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.TemplateNode:
			bad = errors.New("template: {{template}} is not allowed")
		case *parse.FieldNode:
			bad = checkIdents(n.Ident)
		case *parse.VariableNode:
			bad = checkIdents(n.Ident)
		case *parse.ChainNode:
			walk(n.Node)
			if bad == nil {
				bad = checkIdents(n.Field)
			}
		}
	}
	walk(trees["t"].Root)
	return bad
}

// overLabels says whether a range's pipeline is $labels or .Labels alone
// (with its variables declared: {{range $k, $v := $labels}}).
func overLabels(p *parse.PipeNode) bool {
	if p == nil || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return false
	}
	switch a := p.Cmds[0].Args[0].(type) {
	case *parse.VariableNode:
		return len(a.Ident) == 1 && a.Ident[0] == "$labels"
	case *parse.FieldNode:
		return len(a.Ident) == 1 && a.Ident[0] == "Labels"
	}
	return false
}

func checkIdents(idents []string) error {
	for _, id := range idents {
		if strings.Contains(strings.ToLower(id), "external") {
			return fmt.Errorf("template: %s is not available to rules", id)
		}
	}
	return nil
}
