package tenantusagereceiver

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"

	owntel "github.com/otelcol-gpu/otelcol-gpu/internal/telemetry"
)

// Config is the tenant_usage receiver's configuration.
type Config struct {
	// Store is the metrics store the meters are read from (its query API).
	Store StoreConfig `mapstructure:"store"`
	// Events is the event store (VictoriaLogs) where the read path records
	// each query it answers (tenant_query's usage_events); no endpoint: the
	// read meters are not computed.
	Events confighttp.ClientConfig `mapstructure:"events"`
	// Interval is how often the receiver looks for hours to close and
	// hours to recheck.
	Interval time.Duration `mapstructure:"interval"`
	// GracePeriod is how long after its end an hour is closed: data
	// timestamped in the hour that arrives within it is in the hour's first
	// record.
	GracePeriod time.Duration `mapstructure:"grace_period"`
	// Rechecks are the times after an hour closed at which it is computed
	// again; a meter that changed (late data) gets an adjustment record.
	Rechecks []time.Duration `mapstructure:"rechecks"`
	// Backfill is how far back the first start (no cursor yet) begins.
	Backfill time.Duration `mapstructure:"backfill"`
	// Storage is the storage extension (file_storage) that keeps the cursor.
	Storage *component.ID `mapstructure:"storage"`
	// Concurrency is the number of queries in flight at the stores.
	Concurrency int `mapstructure:"concurrency"`
	// Crosscheck compares each closed hour with the gateways' own counters.
	Crosscheck CrosscheckConfig `mapstructure:"crosscheck"`
	// Telemetry says whether the receiver's own metrics carry the tenant.
	Telemetry owntel.Tenancy `mapstructure:"telemetry"`
	// Decreases is what a recheck that finds less than was billed does:
	// hold (log it, count it, keep it in the ledger for review; the bill
	// stands) or credit (send a negative adjustment).
	Decreases string `mapstructure:"decreases"`
}

// Decrease policies.
const (
	DecreasesHold   = "hold"
	DecreasesCredit = "credit"
)

// CrosscheckConfig names the gateways whose counters check the store.
type CrosscheckConfig struct {
	// Gateways are the gateways' own metrics endpoints
	// (http://gateway:8888/metrics); none: no cross-check.
	Gateways []string `mapstructure:"gateways"`
	// Tolerance is the relative difference that is reported (0.01: 1 %).
	Tolerance float64 `mapstructure:"tolerance"`
}

// StoreConfig is the metrics store.
type StoreConfig struct {
	// Named, not embedded: an embedded ClientConfig's Unmarshal would be
	// promoted and decode nothing else.
	ClientConfig confighttp.ClientConfig `mapstructure:",squash"`
	// TenantLabel is the label the gateway's exporter has the store put on
	// every series.
	TenantLabel string `mapstructure:"tenant_label"`
	// VMLabel is the label of the VM identity the gateway's tenant
	// processor stamps from the credential (its vm_attribute).
	VMLabel string `mapstructure:"vm_label"`
	// Verify checks at start that the store deduplicates, keeps data for
	// as long as an hour may be computed, and has this clock (VictoriaMetrics'
	// /flags and Date header); the receiver refuses to start otherwise.
	Verify bool `mapstructure:"verify"`
}

var (
	labelName   = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	vmLabelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_.]*$`)
)

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Store.ClientConfig.Endpoint == "" {
		errs = append(errs, errors.New("store.endpoint is required (the metrics store's base URL, e.g. http://localhost:8428)"))
	} else if err := checkURL(c.Store.ClientConfig.Endpoint); err != nil {
		errs = append(errs, fmt.Errorf("store.endpoint: %w", err))
	}
	if !labelName.MatchString(c.Store.TenantLabel) {
		errs = append(errs, fmt.Errorf("store.tenant_label %q is not a label name", c.Store.TenantLabel))
	}
	if !vmLabelName.MatchString(c.Store.VMLabel) {
		errs = append(errs, fmt.Errorf("store.vm_label %q is not a label name (letters, digits, '_' and '.')", c.Store.VMLabel))
	}
	if c.Decreases != DecreasesHold && c.Decreases != DecreasesCredit {
		errs = append(errs, fmt.Errorf("decreases %q: must be %q or %q", c.Decreases, DecreasesHold, DecreasesCredit))
	}
	if c.Events.Endpoint != "" {
		if err := checkURL(c.Events.Endpoint); err != nil {
			errs = append(errs, fmt.Errorf("events.endpoint: %w", err))
		}
	}
	if c.Interval < time.Second {
		errs = append(errs, fmt.Errorf("interval %s: must be at least 1s", c.Interval))
	}
	if c.GracePeriod < 0 {
		errs = append(errs, fmt.Errorf("grace_period %s: must not be negative", c.GracePeriod))
	}
	var prev time.Duration
	for i, d := range c.Rechecks {
		if d <= prev {
			errs = append(errs, fmt.Errorf("rechecks[%d] %s: must be positive and later than the one before", i, d))
		}
		prev = d
	}
	if c.Backfill < 0 {
		errs = append(errs, fmt.Errorf("backfill %s: must not be negative", c.Backfill))
	}
	if c.Storage == nil {
		errs = append(errs, errors.New("storage is required (a file_storage extension): without a persisted cursor a restart would skip or repeat hours"))
	}
	for i, g := range c.Crosscheck.Gateways {
		if u, err := url.Parse(g); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("crosscheck.gateways[%d] %q is not an http(s) URL", i, g))
		}
	}
	if c.Crosscheck.Tolerance < 0 || c.Crosscheck.Tolerance >= 1 {
		errs = append(errs, fmt.Errorf("crosscheck.tolerance %g: must be in [0, 1)", c.Crosscheck.Tolerance))
	}
	if c.Concurrency < 1 || c.Concurrency > 64 {
		errs = append(errs, fmt.Errorf("concurrency %d: must be 1 to 64", c.Concurrency))
	}
	return errors.Join(errs...)
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: a base URL has no query or fragment", s)
	}
	return nil
}
