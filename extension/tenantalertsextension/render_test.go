package tenantalertsextension

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// Every group of a tenant's file, the tenant's own included, is held to
// the tenant by the store and labelled with it, whatever its rules say.
func TestRenderRulesScopesEveryGroup(t *testing.T) {
	own := []Rule{{Name: "Mine", Expr: `label_replace(hw.status, "tenant_id", "acme", "", "")`, For: Duration(time.Minute),
		Labels: map[string]string{"severity": "info"}}}
	data, err := renderRules("globex", "tenant_id", 30*time.Second, 10*time.Second, 1000, defaultPack(), own)
	require.NoError(t, err)
	var file struct {
		Groups []vmGroup `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(data, &file))
	require.Len(t, file.Groups, 2)
	for _, g := range file.Groups {
		require.True(t, strings.HasPrefix(g.Name, "globex:"), g.Name)
		require.Equal(t, map[string][]string{"extra_label": {"tenant_id=globex"}, "timeout": {"10s"}}, g.Params)
		require.Equal(t, map[string]string{"tenant_id": "globex"}, g.Labels)
		require.Equal(t, "prometheus", g.Type)
		require.Equal(t, "30s", g.Interval)
		require.Equal(t, 1000, g.Limit)
		for _, r := range g.Rules {
			require.NotContains(t, r.Labels, "tenant_id")
		}
	}
	require.Equal(t, "globex:custom", file.Groups[1].Name)
	require.Equal(t, "Mine", file.Groups[1].Rules[0].Alert)
	require.Equal(t, "60s", file.Groups[1].Rules[0].For, "whole seconds, as vmalert reads them")
	require.Len(t, file.Groups[0].Rules, len(defaultPack()))

	// Without rules of its own a tenant has the pack alone.
	data, err = renderRules("acme", "tenant_id", time.Minute, 5*time.Second, 10, defaultPack(), nil)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(data, &file))
	require.Len(t, file.Groups, 1)
}

func TestRenderAlertmanagerRoutesEachTenantToItsRelayURLs(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Relay.NetAddr.Endpoint = "127.0.0.1:9095"
	receivers := map[string][]Receiver{
		"acme":   {{Name: "oncall", Type: receiverWebhook, URL: "https://hooks.acme.example/x"}, {Name: "chat", Type: receiverSlack, URL: "https://hooks.slack.com/services/T/B/x"}},
		"globex": {{Name: "hook", Type: receiverWebhook, URL: "https://globex.example/hook"}},
	}
	data, err := renderAlertmanager(cfg, "/state/relay.token", receivers, []string{"acme", "globex", "initech"})
	require.NoError(t, err)
	text := string(data)
	// The customers' URLs are never in Alertmanager's config: it only
	// calls the relay.
	require.NotContains(t, text, "acme.example")
	require.NotContains(t, text, "slack.com")
	var conf amConfig
	require.NoError(t, yaml.Unmarshal(data, &conf))
	require.Equal(t, noReceiver, conf.Route.Receiver)
	require.Equal(t, []string{"alertname", "alertgroup"}, conf.Route.GroupBy)
	require.Equal(t, "30s", conf.Route.GroupWait)
	require.Equal(t, "4h0m0s", conf.Route.RepeatInterval)
	require.Len(t, conf.Route.Routes, 2, "initech has no receiver: no route")
	acme := conf.Route.Routes[0]
	require.Equal(t, []string{`alertgroup=~"acme:.+"`}, acme.Matchers,
		"routed by the group vmalert names, which no query result can set")
	require.Len(t, acme.Routes, 2)
	for _, r := range acme.Routes {
		require.True(t, r.Continue, "every receiver of the tenant gets every alert")
		require.Empty(t, r.Matchers)
	}
	byName := map[string]amReceiver{}
	for _, r := range conf.Receivers {
		byName[r.Name] = r
	}
	hook := byName["acme/oncall"].WebhookConfigs[0]
	require.Equal(t, "http://127.0.0.1:9095/deliver/acme/oncall", hook.URL)
	require.True(t, hook.SendResolved)
	require.Equal(t, "/state/relay.token", hook.HTTPConfig.Authorization.CredentialsFile)
	require.False(t, hook.HTTPConfig.FollowRedirects)
	require.Equal(t, "http://127.0.0.1:9095/deliver/globex/hook", byName["globex/hook"].WebhookConfigs[0].URL)
	require.Contains(t, byName, noReceiver)
}
