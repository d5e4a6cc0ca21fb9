package tenantprocessor

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configopaque"

	"github.com/otelcol-gpu/otelcol-gpu/internal/telemetry"
	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
)

// Modes.
const (
	ModeAgent   = "agent"
	ModeGateway = "gateway"
)

// Source types (agent mode).
const (
	SourceStatic = "static"
	SourceEnv    = "env"
	SourceFile   = "file"
	SourceHTTP   = "http"
)

// Mismatch policies (gateway mode).
const (
	OnMismatchOverride = "override"
	OnMismatchReject   = "reject"
)

// Config configures the tenant processor.
type Config struct {
	// Mode is agent (stamp the VM's own tenant) or gateway (enforce the
	// authenticated tenant). Required: the two trust the payload differently.
	Mode string `mapstructure:"mode"`
	// Attribute is the resource attribute that carries the tenant id.
	Attribute string `mapstructure:"attribute"`

	// Source says where an agent learns its tenant (agent mode only).
	Source SourceConfig `mapstructure:"source"`
	// Attributes maps further resource attributes to JSON pointers into the
	// source's JSON document (agent mode, json_pointer sources), for example
	// cloud.instance.id: /instance/id.
	Attributes map[string]string `mapstructure:"attributes"`
	// CacheFile keeps the last good identity, so a restart without the
	// source (metadata service down) still tags. Empty: no cache.
	CacheFile string `mapstructure:"cache_file"`
	// Required makes start fail while no tenant is known, instead of
	// forwarding untagged data for the gateway to tag.
	Required bool `mapstructure:"required"`
	// HostAttributes sets host.name (the kernel's host name, read at start)
	// and os.type on every resource (agent mode): what the VM calls itself,
	// as the resourcedetection processor's system detector with
	// hostname_sources [os] sets it, without that processor's cloud SDKs
	// and Kubernetes client in the binary every VM runs. The gateway sets
	// the VM's identity the customer cannot change (vm_attribute) apart.
	HostAttributes bool `mapstructure:"host_attributes"`

	// OnMismatch is what the gateway does with a payload that claimed a
	// tenant other than the authenticated one: override or reject.
	OnMismatch string `mapstructure:"on_mismatch"`
	// SetMetadata also puts the tenant into the request's client metadata
	// under the attribute name, for batch metadata_keys or queue partitioning.
	SetMetadata bool `mapstructure:"set_metadata"`

	// VMAttribute is the resource attribute the gateway sets to the VM's
	// identity from the credential (auth data instance_id), whatever the
	// payload said; the usage meters count VMs and bill GPUs by it. Empty:
	// off.
	VMAttribute string `mapstructure:"vm_attribute"`
	// VMMinutesMetric is the metric the gateway adds to every metrics
	// request it accepts: one point per VM, stamped with the minute the
	// gateway received it and valued at the VM's provisioned GPUs (label
	// gpus_from: provisioning; agent where the credential does not say).
	// The usage job bills GPU-minutes from it: the minutes the gateway saw
	// the VM deliver data, whatever the data's own timestamps say. It must
	// be under a reserved prefix (a customer cannot write it); empty: none.
	VMMinutesMetric string `mapstructure:"vm_minutes_metric"`
	// ReservedPrefixes are metric name prefixes only the provider writes
	// (the usage series). A customer metric named so is renamed.
	ReservedPrefixes []string `mapstructure:"reserved_prefixes"`
	// ReservedRenamePrefix is put in front of such a metric's name.
	ReservedRenamePrefix string `mapstructure:"reserved_rename_prefix"`
	// Timestamps bounds the data points' timestamps (metrics).
	Timestamps TimestampsConfig `mapstructure:"timestamps"`
	// Telemetry says whether the processor's own metrics carry the tenant
	// (gateway mode: the authenticated tenant).
	Telemetry telemetry.Tenancy `mapstructure:"telemetry"`
}

// TimestampsConfig is the window of data point timestamps the gateway
// accepts, around its own clock. Zero turns a side off.
type TimestampsConfig struct {
	// MaxAge refuses points older than now - max_age. It must stay below
	// the usage job's last recheck plus its grace period, so that every
	// stored sample is billed.
	MaxAge time.Duration `mapstructure:"max_age"`
	// MaxFuture refuses points newer than now + max_future.
	MaxFuture time.Duration `mapstructure:"max_future"`
}

// SourceConfig is the agent's tenant source.
type SourceConfig struct {
	// Type is static, env, file or http.
	Type string `mapstructure:"type"`
	// Value is the tenant id (static).
	Value string `mapstructure:"value"`
	// Env is the environment variable holding the tenant id (env).
	Env string `mapstructure:"env"`
	// Path is the file holding the tenant id, or a JSON document (file).
	Path string `mapstructure:"path"`
	// URL is the instance metadata URL (http).
	URL string `mapstructure:"url"`
	// Headers are sent with the metadata request (http), e.g. Metadata: "true".
	Headers map[string]configopaque.String `mapstructure:"headers"`
	// JSONPointer (RFC 6901) locates the tenant id in a JSON document (file,
	// http). Empty: the whole content, trimmed, is the tenant id.
	JSONPointer string `mapstructure:"json_pointer"`
	// Timeout bounds one metadata request (http).
	Timeout time.Duration `mapstructure:"timeout"`
	// RefreshInterval is how often a file or http source is read again.
	RefreshInterval time.Duration `mapstructure:"refresh_interval"`
}

var _ component.Config = (*Config)(nil)

// Validate checks the configuration; every error names its field.
func (c *Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.Attribute) == "" {
		errs = append(errs, errors.New("attribute: must not be empty"))
	}
	switch c.Mode {
	case ModeAgent:
		errs = append(errs, c.validateAgent()...)
	case ModeGateway:
		errs = append(errs, c.validateGateway()...)
	default:
		errs = append(errs, fmt.Errorf("mode: must be %q or %q, got %q", ModeAgent, ModeGateway, c.Mode))
	}
	return errors.Join(errs...)
}

func (c *Config) validateGateway() []error {
	var errs []error
	if c.OnMismatch != OnMismatchOverride && c.OnMismatch != OnMismatchReject {
		errs = append(errs, fmt.Errorf("on_mismatch: must be %q or %q, got %q", OnMismatchOverride, OnMismatchReject, c.OnMismatch))
	}
	if c.Source.Type != "" {
		errs = append(errs, errors.New("source: only agent mode has a source; the gateway takes the tenant from the authenticated credential"))
	}
	if len(c.Attributes) > 0 {
		errs = append(errs, errors.New("attributes: only used in agent mode"))
	}
	if c.Required || c.CacheFile != "" || c.HostAttributes {
		errs = append(errs, errors.New("required, cache_file, host_attributes: only used in agent mode"))
	}
	if c.VMAttribute != "" && newLikeName(c.VMAttribute) == newLikeName(c.Attribute) {
		errs = append(errs, fmt.Errorf("vm_attribute: %q is named like attribute %q (the same label in the store)", c.VMAttribute, c.Attribute))
	}
	errs = append(errs, c.validateReserved()...)
	if c.VMMinutesMetric != "" {
		if c.VMAttribute == "" {
			errs = append(errs, errors.New("vm_minutes_metric: needs vm_attribute (the VM it counts)"))
		}
		if !c.reservedName(c.VMMinutesMetric) {
			errs = append(errs, fmt.Errorf("vm_minutes_metric: %q is under no reserved prefix, so a customer could write it too", c.VMMinutesMetric))
		}
	}
	if c.Timestamps.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("timestamps.max_age: must not be negative (0 turns it off), got %s", c.Timestamps.MaxAge))
	}
	if c.Timestamps.MaxFuture < 0 {
		errs = append(errs, fmt.Errorf("timestamps.max_future: must not be negative (0 turns it off), got %s", c.Timestamps.MaxFuture))
	}
	return errs
}

// reservedName tells whether name is under one of the reserved prefixes.
func (c *Config) reservedName(name string) bool {
	for _, prefix := range c.ReservedPrefixes {
		p := newLikeName(prefix)
		if prefix != "" && len(name) >= len(p) && p.matches(name[:len(p)]) {
			return true
		}
	}
	return false
}

// validateReserved makes sure a renamed metric can never be reserved
// itself: the rename prefix and each reserved prefix must not begin with
// one another, compared the way names are matched (newReservedNames).
func (c *Config) validateReserved() []error {
	var errs []error
	rename := newLikeName(c.ReservedRenamePrefix)
	if len(c.ReservedPrefixes) > 0 && c.ReservedRenamePrefix == "" {
		errs = append(errs, errors.New("reserved_rename_prefix: must not be empty while reserved_prefixes are set"))
	}
	for i, prefix := range c.ReservedPrefixes {
		if prefix == "" {
			errs = append(errs, fmt.Errorf("reserved_prefixes[%d]: must not be empty", i))
			continue
		}
		reserved := newLikeName(prefix)
		if rename != "" && (strings.HasPrefix(string(rename), string(reserved)) || strings.HasPrefix(string(reserved), string(rename))) {
			errs = append(errs, fmt.Errorf("reserved_rename_prefix: %q and reserved_prefixes[%d] %q must not begin with one another, or a renamed metric could still be reserved",
				c.ReservedRenamePrefix, i, prefix))
		}
	}
	return errs
}

func (c *Config) validateAgent() []error {
	var errs []error
	if c.SetMetadata {
		errs = append(errs, errors.New("set_metadata: only used in gateway mode"))
	}
	s := c.Source
	switch s.Type {
	case SourceStatic:
		if err := tenantid.Validate(s.Value); err != nil {
			errs = append(errs, fmt.Errorf("source.value: %w", err))
		}
	case SourceEnv:
		if s.Env == "" {
			errs = append(errs, errors.New("source.env: must name an environment variable"))
		}
	case SourceFile:
		if s.Path == "" {
			errs = append(errs, errors.New("source.path: must be set for a file source"))
		}
	case SourceHTTP:
		if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("source.url: must be an http(s) URL, got %q", s.URL))
		}
		if s.Timeout <= 0 {
			errs = append(errs, fmt.Errorf("source.timeout: must be positive, got %s", s.Timeout))
		}
	default:
		errs = append(errs, fmt.Errorf("source.type: must be one of static, env, file, http; got %q", s.Type))
	}
	if (s.Type == SourceFile || s.Type == SourceHTTP) && s.RefreshInterval <= 0 {
		errs = append(errs, fmt.Errorf("source.refresh_interval: must be positive, got %s", s.RefreshInterval))
	}
	if s.JSONPointer != "" {
		if s.Type != SourceFile && s.Type != SourceHTTP {
			errs = append(errs, errors.New("source.json_pointer: only file and http sources hold JSON"))
		} else if err := validPointer(s.JSONPointer); err != nil {
			errs = append(errs, fmt.Errorf("source.json_pointer: %w", err))
		}
	}
	for name, ptr := range c.Attributes {
		switch {
		case name == "" || name == c.Attribute:
			errs = append(errs, fmt.Errorf("attributes: %q cannot be set from the source", name))
		case s.JSONPointer == "":
			errs = append(errs, fmt.Errorf("attributes.%s: needs a JSON source (set source.json_pointer)", name))
		default:
			if err := validPointer(ptr); err != nil {
				errs = append(errs, fmt.Errorf("attributes.%s: %w", name, err))
			}
		}
	}
	return errs
}
