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
	// Header carries the credential ("Authorization"; gRPC metadata is matched
	// case-insensitively).
	Header string `mapstructure:"header"`
	// Scheme is the prefix before the token in the header ("Bearer").
	Scheme string `mapstructure:"scheme"`
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
	if strings.TrimSpace(c.Header) == "" {
		errs = append(errs, errors.New("header: must not be empty"))
	}
	if strings.ContainsAny(c.Scheme, " \t") {
		errs = append(errs, fmt.Errorf("scheme: %q must be a single word", c.Scheme))
	}
	return errors.Join(errs...)
}
