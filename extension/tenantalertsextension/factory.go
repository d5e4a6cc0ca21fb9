package tenantalertsextension

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/extension"

	"github.com/otelcol-gpu/otelcol-gpu/extension/tenantalertsextension/internal/metadata"
)

const (
	defaultReloadInterval = 5 * time.Second
	defaultTenantLabel    = "tenant_id"
	// vmalert's own default: a GPU failure is seen within 30 s of the
	// store having it, and a tenant's pack costs 8 queries each time.
	defaultEvaluationInterval = 30 * time.Second
	defaultVMAlertEndpoint    = "http://127.0.0.1:8880"
	defaultAMEndpoint         = "http://127.0.0.1:9093"
	defaultEngineTimeout      = 10 * time.Second
	defaultRelayEndpoint      = "127.0.0.1:9095"
	// Alertmanager's defaults: the first notification of a group 30 s
	// after its first alert (others that come with it join), a change in
	// the group 5 min after the last notification, and an unchanged
	// firing group again after 4 h.
	defaultGroupWait      = 30 * time.Second
	defaultGroupInterval  = 5 * time.Minute
	defaultRepeatInterval = 4 * time.Hour
	// A customer's endpoint answers within 10 s or is tried again later.
	defaultDeliveryTimeout = 10 * time.Second
	defaultMaxResponse     = 64 << 10
	// One notification per group per group_interval: 30 a minute covers
	// a tenant with dozens of alert groups failing at once.
	defaultPerMinute = 30
	defaultBurst     = 30
	// A rule pack of 8 and 50 of the tenant's own, each of at most 1000
	// series (an 8-GPU fleet of 125 VMs per rule).
	defaultMaxRules           = 50
	defaultMaxReceivers       = 5
	defaultMaxSilences        = 50
	defaultMaxSeriesPerRule   = 1000
	defaultMaxFor             = 24 * time.Hour
	defaultMaxExprBytes       = 4096
	defaultMaxSilenceDuration = 30 * 24 * time.Hour
	// A pack query over one tenant's GPUs takes milliseconds; 10 s is a
	// rule gone wrong.
	defaultRuleQueryTimeout = 10 * time.Second
)

// NewFactory returns the factory of the tenant_alerts extension.
func NewFactory() extension.Factory {
	return extension.NewFactory(metadata.Type, createDefaultConfig, createExtension, metadata.ExtensionStability)
}

func createDefaultConfig() component.Config {
	engine := func(endpoint string) confighttp.ClientConfig {
		c := confighttp.NewDefaultClientConfig()
		c.Endpoint = endpoint
		c.Timeout = defaultEngineTimeout
		return c
	}
	relay := confighttp.NewDefaultServerConfig()
	relay.NetAddr.Endpoint = defaultRelayEndpoint
	relay.ReadHeaderTimeout = 10 * time.Second
	relay.ReadTimeout = 30 * time.Second
	relay.WriteTimeout = defaultDeliveryTimeout + 20*time.Second
	return &Config{
		ReloadInterval:     defaultReloadInterval,
		TenantLabel:        defaultTenantLabel,
		EvaluationInterval: defaultEvaluationInterval,
		VMAlert:            engine(defaultVMAlertEndpoint),
		Alertmanager:       engine(defaultAMEndpoint),
		Routing: RoutingConfig{
			GroupWait: defaultGroupWait, GroupInterval: defaultGroupInterval, RepeatInterval: defaultRepeatInterval,
		},
		Relay: RelayConfig{ServerConfig: relay},
		Delivery: DeliveryConfig{
			Timeout: defaultDeliveryTimeout, MaxResponseBytes: defaultMaxResponse,
			PerTenantPerMinute: defaultPerMinute, Burst: defaultBurst,
		},
		Limits: LimitsConfig{
			MaxRules: defaultMaxRules, MaxReceivers: defaultMaxReceivers, MaxSilences: defaultMaxSilences,
			MaxSeriesPerRule: defaultMaxSeriesPerRule, MaxFor: defaultMaxFor, MaxExprBytes: defaultMaxExprBytes,
			MaxSilenceDuration: defaultMaxSilenceDuration, RuleQueryTimeout: defaultRuleQueryTimeout,
		},
	}
}

func createExtension(_ context.Context, set extension.Settings, cfg component.Config) (extension.Extension, error) {
	return newAlertsServer(cfg.(*Config), set.TelemetrySettings)
}
