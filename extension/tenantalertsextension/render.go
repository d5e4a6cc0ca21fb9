package tenantalertsextension

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The group names of a tenant's rule file: the default pack and its own.
const (
	packGroup   = "pack"
	customGroup = "custom"
)

// vmGroup is a vmalert rule group as its rule files spell it.
type vmGroup struct {
	Name        string              `yaml:"name"`
	Type        string              `yaml:"type"`
	Interval    string              `yaml:"interval"`
	Limit       int                 `yaml:"limit"`
	Concurrency int                 `yaml:"concurrency"`
	Params      map[string][]string `yaml:"params"`
	Labels      map[string]string   `yaml:"labels"`
	Rules       []vmRule            `yaml:"rules"`
}

type vmRule struct {
	Alert         string            `yaml:"alert"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for,omitempty"`
	KeepFiringFor string            `yaml:"keep_firing_for,omitempty"`
	Labels        map[string]string `yaml:"labels,omitempty"`
	Annotations   map[string]string `yaml:"annotations,omitempty"`
}

func toVMRule(r Rule) vmRule {
	v := vmRule{Alert: r.Name, Expr: r.Expr, Labels: r.Labels, Annotations: r.Annotations}
	if r.For > 0 {
		v.For = vmDuration(r.For)
	}
	if r.KeepFiringFor > 0 {
		v.KeepFiringFor = vmDuration(r.KeepFiringFor)
	}
	return v
}

// vmDuration writes whole seconds as vmalert reads them (it does not read
// Go's µs or ns): validate keeps durations whole seconds.
func vmDuration(d Duration) string {
	return strconv.FormatInt(int64(time.Duration(d)/time.Second), 10) + "s"
}

// groupName is unique over all tenants' files.
func groupName(tenant, group string) string { return tenant + ":" + group }

// groupLabel is the label vmalert sets on every alert to its group's name,
// <tenant>:<group>. No query result can set it: vmalert keeps a result's
// own alertgroup as exported_alertgroup, and no other label name becomes
// it when vmalert makes names Prometheus-safe (dots and dashes become
// underscores, so a result's tenant.id or tenant-id arrives as a second
// tenant_id, which is why the tenant label cannot say whose an alert is).
// Routes, lists, silences and the relay go by it.
const groupLabel = "alertgroup"

// ownerMatcher is the Alertmanager matcher of a tenant's alerts (tenant ids
// have no ':' and no regular-expression operator).
func ownerMatcher(tenant string) string { return groupLabel + `=~"` + ownerPattern(tenant) + `"` }

func ownerPattern(tenant string) string { return tenant + ":.+" }

// ownedBy says whether an alert's labels are of one of the tenant's groups.
func ownedBy(labels map[string]string, tenant string) bool {
	return strings.HasPrefix(labels[groupLabel], tenant+":")
}

// renderRules is a tenant's vmalert rule file. Every group, whatever the
// tenant set, has the store hold its queries to the tenant
// (params.extra_label, which VictoriaMetrics ANDs with every selector of the
// expression, subqueries and WITH templates included) and labels its
// alerts with the tenant (a group label, which vmalert sets over whatever
// the query's result says, so label_replace cannot route an alert to
// another tenant). Nothing else of a group (datasource type, headers,
// params, interval) is the tenant's to set.
func renderRules(tenant, tenantLabel string, interval, timeout time.Duration, limit int, pack []PackRule, own []Rule) ([]byte, error) {
	group := func(name string, rules []vmRule) vmGroup {
		return vmGroup{
			Name:        groupName(tenant, name),
			Type:        "prometheus",
			Interval:    interval.String(),
			Limit:       limit,
			Concurrency: 1,
			Params: map[string][]string{
				"extra_label": {tenantLabel + "=" + tenant},
				"timeout":     {strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64) + "s"},
			},
			Labels: map[string]string{tenantLabel: tenant},
			Rules:  rules,
		}
	}
	packRules := make([]vmRule, 0, len(pack))
	for _, r := range pack {
		packRules = append(packRules, toVMRule(r.Rule))
	}
	groups := []vmGroup{group(packGroup, packRules)}
	if len(own) > 0 {
		ownRules := make([]vmRule, 0, len(own))
		for _, r := range own {
			ownRules = append(ownRules, toVMRule(r))
		}
		groups = append(groups, group(customGroup, ownRules))
	}
	out, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		return nil, err
	}
	return append([]byte("# Written by otelcol-gpu's tenant_alerts extension for tenant "+tenant+": do not edit.\n"), out...), nil
}

// amConfig is the part of Alertmanager's configuration written here.
type amConfig struct {
	Route     amRoute      `yaml:"route"`
	Receivers []amReceiver `yaml:"receivers"`
}

type amRoute struct {
	Receiver       string    `yaml:"receiver"`
	Matchers       []string  `yaml:"matchers,omitempty"`
	GroupBy        []string  `yaml:"group_by,omitempty"`
	GroupWait      string    `yaml:"group_wait,omitempty"`
	GroupInterval  string    `yaml:"group_interval,omitempty"`
	RepeatInterval string    `yaml:"repeat_interval,omitempty"`
	Continue       bool      `yaml:"continue,omitempty"`
	Routes         []amRoute `yaml:"routes,omitempty"`
}

type amReceiver struct {
	Name           string      `yaml:"name"`
	WebhookConfigs []amWebhook `yaml:"webhook_configs,omitempty"`
}

type amWebhook struct {
	URL          string       `yaml:"url"`
	SendResolved bool         `yaml:"send_resolved"`
	HTTPConfig   amHTTPConfig `yaml:"http_config"`
	Timeout      string       `yaml:"timeout,omitempty"`
}

type amHTTPConfig struct {
	Authorization   amAuthorization `yaml:"authorization"`
	FollowRedirects bool            `yaml:"follow_redirects"`
}

type amAuthorization struct {
	Type            string `yaml:"type"`
	CredentialsFile string `yaml:"credentials_file"`
}

// noReceiver takes the alerts of tenants with no receiver (their alerts
// are still listed for them).
const noReceiver = "none"

// amReceiverName names a tenant's receiver in Alertmanager: its
// notification log is keyed by it, so a receiver keeps its history when
// another is added or removed.
func amReceiverName(tenant, receiver string) string { return tenant + "/" + receiver }

// renderAlertmanager is the Alertmanager configuration for all tenants:
// one route per tenant, matched on its groups (groupLabel), whose children
// send every alert of the tenant to each of its receivers through the
// relay. Alertmanager never calls a tenant's URL itself: it only knows the
// relay, which checks and signs each delivery.
func renderAlertmanager(cfg *Config, tokenFile string, receivers map[string][]Receiver, tenants []string) ([]byte, error) {
	root := amRoute{
		Receiver:       noReceiver,
		GroupBy:        []string{"alertname", groupLabel},
		GroupWait:      cfg.Routing.GroupWait.String(),
		GroupInterval:  cfg.Routing.GroupInterval.String(),
		RepeatInterval: cfg.Routing.RepeatInterval.String(),
	}
	conf := amConfig{Receivers: []amReceiver{{Name: noReceiver}}}
	base := cfg.relayURL()
	// Alertmanager's own timeout for a relay call: the relay's delivery
	// and its redirects, with a margin.
	timeout := (cfg.Delivery.Timeout + 5*time.Second).String()
	for _, tenant := range tenants {
		rs := receivers[tenant]
		if len(rs) == 0 {
			continue
		}
		route := amRoute{
			Receiver: noReceiver,
			Matchers: []string{ownerMatcher(tenant)},
		}
		for _, r := range rs {
			name := amReceiverName(tenant, r.Name)
			route.Routes = append(route.Routes, amRoute{Receiver: name, Continue: true})
			conf.Receivers = append(conf.Receivers, amReceiver{Name: name, WebhookConfigs: []amWebhook{{
				URL:          fmt.Sprintf("%s/deliver/%s/%s", base, url.PathEscape(tenant), url.PathEscape(r.Name)),
				SendResolved: true,
				HTTPConfig:   amHTTPConfig{Authorization: amAuthorization{Type: "Bearer", CredentialsFile: tokenFile}},
				Timeout:      timeout,
			}}})
		}
		root.Routes = append(root.Routes, route)
	}
	conf.Route = root
	out, err := yaml.Marshal(conf)
	if err != nil {
		return nil, err
	}
	return append([]byte("# Written by otelcol-gpu's tenant_alerts extension from the tenants' receivers: do not edit.\n"), out...), nil
}
