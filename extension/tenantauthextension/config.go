package tenantauthextension

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
)

// Config configures the tenant_auth extension.
type Config struct {
	// CredentialsFile is the YAML file mapping SHA-256 token hashes to tenants
	// (see README.md). Required.
	CredentialsFile string `mapstructure:"credentials_file"`
	// ReloadInterval is how often the file's content is checked for changes.
	// Polling the content (not watching the file) also sees a Kubernetes
	// Secret update, which swaps a symlink.
	ReloadInterval time.Duration `mapstructure:"reload_interval"`
	// CredentialsMaxStale bounds how long the last good credentials stay in
	// force while the file fails to load (unreadable, or not parsing): a
	// token revoked by the edit that broke the file must not work until
	// someone notices. Past it every request is refused retryably (the
	// gateway no longer knows which tokens are valid) until the file loads
	// again. 0 keeps the last good credentials however long it fails.
	CredentialsMaxStale time.Duration `mapstructure:"credentials_max_stale"`
	// Header carries the credential ("Authorization"; gRPC metadata is matched
	// case-insensitively).
	Header string `mapstructure:"header"`
	// Scheme is the prefix before the token in the header ("Bearer").
	Scheme string `mapstructure:"scheme"`
	// DecodeLimits bound the shape of a request before it is decoded; they
	// apply where the extension is also listed in the receiver's middlewares.
	DecodeLimits DecodeLimits `mapstructure:"decode_limits"`
	// FailureLimit bounds failed authentications per source address.
	FailureLimit FailureLimit `mapstructure:"failure_limit"`
	// Admission bounds the requests decoded at once; it applies where the
	// extension is also listed in the receiver's middlewares.
	Admission Admission `mapstructure:"admission"`
}

// Admission decides before decoding whether a request is taken: room in an
// in-flight limit (wire bytes of requests being decoded and processed), and
// send queues (tenant_otlp_http) that are not full. A request refused here
// gets a retryable answer (gRPC ResourceExhausted with RetryInfo, HTTP 503
// with Retry-After) and cost a header read, not a decode.
type Admission struct {
	// RequestLimitMiB bounds the bytes (on the wire, after decompression) of
	// the requests being decoded and processed at once; 0 turns it off.
	RequestLimitMiB int64 `mapstructure:"request_limit_mib"`
	// WaitingLimitMiB bounds the bytes of requests waiting for room; past
	// it a request is refused at once.
	WaitingLimitMiB int64 `mapstructure:"waiting_limit_mib"`
	// Queues are the send queues (tenant_otlp_http exporters, by component
	// id) whose fullness refuses new requests before decoding: the
	// exporters the guarded receivers' pipelines send to. None: queues are
	// not checked.
	Queues []component.ID `mapstructure:"queues"`
}

// DecodeLimits bound one OTLP request on the wire.
type DecodeLimits struct {
	// MaxNestingDepth is the deepest attribute value nesting accepted
	// (array or map values inside each other); a plain value is depth 1.
	MaxNestingDepth int `mapstructure:"max_nesting_depth"`
	// MaxValues bounds the attributes and values of one request together.
	MaxValues int `mapstructure:"max_values"`
}

// FailureLimit refuses a source address outright, for the rest of the
// minute, once it has failed to authenticate this many times in it.
type FailureLimit struct {
	// PerMinute failures per source address; 0 turns the limit off.
	PerMinute int `mapstructure:"per_minute"`
	// TrackedSources is the size of the table that counts them (memory is
	// bounded by it, whatever the number of sources).
	TrackedSources int `mapstructure:"tracked_sources"`
}

var _ component.Config = (*Config)(nil)

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.CredentialsFile == "" {
		errs = append(errs, errors.New("credentials_file: must be set"))
	}
	if c.ReloadInterval <= 0 {
		errs = append(errs, fmt.Errorf("reload_interval: must be positive, got %s", c.ReloadInterval))
	}
	if c.CredentialsMaxStale < 0 {
		errs = append(errs, fmt.Errorf("credentials_max_stale: must not be negative (0 keeps the last good credentials however long the file fails), got %s", c.CredentialsMaxStale))
	}
	if strings.TrimSpace(c.Header) == "" {
		errs = append(errs, errors.New("header: must not be empty"))
	}
	if strings.ContainsAny(c.Scheme, " \t") {
		errs = append(errs, fmt.Errorf("scheme: %q must be a single word", c.Scheme))
	}
	if c.DecodeLimits.MaxNestingDepth < 1 {
		errs = append(errs, fmt.Errorf("decode_limits.max_nesting_depth: must be at least 1, got %d", c.DecodeLimits.MaxNestingDepth))
	}
	if c.DecodeLimits.MaxValues < 1 {
		errs = append(errs, fmt.Errorf("decode_limits.max_values: must be at least 1, got %d", c.DecodeLimits.MaxValues))
	}
	if c.FailureLimit.PerMinute < 0 {
		errs = append(errs, fmt.Errorf("failure_limit.per_minute: must not be negative, got %d", c.FailureLimit.PerMinute))
	}
	if c.Admission.RequestLimitMiB < 0 {
		errs = append(errs, fmt.Errorf("admission.request_limit_mib: must not be negative (0 turns the limit off), got %d", c.Admission.RequestLimitMiB))
	}
	if c.Admission.WaitingLimitMiB < 0 {
		errs = append(errs, fmt.Errorf("admission.waiting_limit_mib: must not be negative, got %d", c.Admission.WaitingLimitMiB))
	}
	if c.FailureLimit.PerMinute > 0 && c.FailureLimit.TrackedSources < 1 {
		errs = append(errs, fmt.Errorf("failure_limit.tracked_sources: must be at least 1, got %d", c.FailureLimit.TrackedSources))
	}
	return errors.Join(errs...)
}
