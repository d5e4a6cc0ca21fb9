package tenantauthextension

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"

	"github.com/otelcol-gpu/otelcol-gpu/extension/tenantauthextension/internal/metadata"
)

const (
	defaultReloadInterval = 5 * time.Second
	// Long enough to repair a broken file (or see a Secret update through)
	// before agents are turned away; short enough that a token revoked by
	// the broken edit stops working soon.
	defaultCredentialsMaxStale = 10 * time.Minute
	defaultHeader              = "Authorization"
	defaultScheme              = "Bearer"
	// An agent's request nests attribute values 1 deep; 16 leaves room for
	// any real customer payload and keeps decoding far from the stack limit.
	defaultMaxNestingDepth = 16
	// A 380-point agent request holds ~780 attributes; a batched one a few
	// thousand.
	defaultMaxValues         = 100_000
	defaultFailuresPerMinute = 30
	// 2 MiB of agent requests (~40 KB each) is ~50 decoded at once: enough
	// to keep 16 cores busy while parts wait ~1 ms for the queue's disk
	// write; another 8 MiB may wait for room. More only holds memory: at
	// 1,000 agents on one core, 8/32 MiB peaked ~80 MiB higher for the
	// same throughput (BENCHMARKS.md).
	defaultRequestLimitMiB = 2
	defaultWaitingLimitMiB = 8
	defaultTrackedSources  = 65536
)

// NewFactory returns the factory of the tenant_auth extension.
func NewFactory() extension.Factory {
	return extension.NewFactory(metadata.Type, createDefaultConfig, createExtension, metadata.ExtensionStability)
}

func createDefaultConfig() component.Config {
	return &Config{
		ReloadInterval:      defaultReloadInterval,
		CredentialsMaxStale: defaultCredentialsMaxStale,
		Header:              defaultHeader,
		Scheme:              defaultScheme,
		DecodeLimits:        DecodeLimits{MaxNestingDepth: defaultMaxNestingDepth, MaxValues: defaultMaxValues},
		FailureLimit:        FailureLimit{PerMinute: defaultFailuresPerMinute, TrackedSources: defaultTrackedSources},
		Admission:           Admission{RequestLimitMiB: defaultRequestLimitMiB, WaitingLimitMiB: defaultWaitingLimitMiB},
	}
}

func createExtension(_ context.Context, set extension.Settings, cfg component.Config) (extension.Extension, error) {
	return newAuthenticator(cfg.(*Config), set.TelemetrySettings)
}
