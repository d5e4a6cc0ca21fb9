package nvmlreceiver

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/scraper/scraperhelper"
)

// Config configures the nvml receiver.
type Config struct {
	scraperhelper.ControllerConfig `mapstructure:",squash"`

	// LibraryPath is the NVML library to load. Empty: libnvidia-ml.so.1
	// through the dynamic linker's search (LD_LIBRARY_PATH, ld.so.cache).
	LibraryPath string `mapstructure:"library_path"`
	// Devices limits the receiver to these GPUs, by index ("0") or UUID
	// ("GPU-..."); a MIG instance's UUID ("MIG-...") selects its parent GPU
	// and, of its MIG instances, the ones listed. Empty: every GPU NVML
	// reports.
	Devices []string `mapstructure:"devices"`
	// InitRetryInterval is how often NVML initialisation is retried while the
	// library or driver is missing (a VM whose driver is installed later).
	InitRetryInterval time.Duration `mapstructure:"init_retry_interval"`
	// RediscoverInterval is how often the GPUs are enumerated again: GPUs
	// added to the VM, and GPUs that could not be opened (reported failed
	// meanwhile), are picked up.
	RediscoverInterval time.Duration `mapstructure:"rediscover_interval"`
	// RefusedRetryInterval is how long a reading a GPU refused
	// (NOT_SUPPORTED, NO_PERMISSION) is not asked again; a recovery or a MIG
	// mode change asks again at once.
	RefusedRetryInterval time.Duration `mapstructure:"refused_retry_interval"`
	// ReleaseFile, while it exists, makes the receiver release NVML: its
	// workers, event set and GPM samples, then nvmlShutdown, so that an
	// operator's GPU reset (nvidia-smi -r), which waits for every NVML
	// client to let go, can proceed. When the file is removed NVML is
	// initialised again and the GPUs found anew. Empty: never released.
	ReleaseFile string `mapstructure:"release_file"`
	// CallTimeout bounds how long a scrape waits for one GPU's NVML calls; a
	// GPU whose calls hang is left out until they return. Zero: half the
	// collection interval, at most 2s.
	CallTimeout time.Duration `mapstructure:"call_timeout"`
	// Metrics switches metrics on or off by name.
	Metrics map[string]MetricConfig `mapstructure:"metrics"`
}

// MetricConfig switches one metric.
type MetricConfig struct {
	Enabled bool `mapstructure:"enabled"`
}

var _ component.Config = (*Config)(nil)

var uuidPattern = regexp.MustCompile(`^(GPU|MIG)-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Validate checks the configuration; every error names its field.
func (c *Config) Validate() error {
	var errs []error
	if c.CollectionInterval <= 0 {
		errs = append(errs, fmt.Errorf("collection_interval: must be positive, got %s", c.CollectionInterval))
	}
	if c.InitRetryInterval <= 0 {
		errs = append(errs, fmt.Errorf("init_retry_interval: must be positive, got %s", c.InitRetryInterval))
	}
	if c.RediscoverInterval <= 0 {
		errs = append(errs, fmt.Errorf("rediscover_interval: must be positive, got %s", c.RediscoverInterval))
	}
	if c.RefusedRetryInterval <= 0 {
		errs = append(errs, fmt.Errorf("refused_retry_interval: must be positive, got %s", c.RefusedRetryInterval))
	}
	if c.CallTimeout < 0 {
		errs = append(errs, fmt.Errorf("call_timeout: must not be negative, got %s", c.CallTimeout))
	} else if c.CallTimeout > 0 && c.CollectionInterval > 0 && c.CallTimeout >= c.CollectionInterval {
		errs = append(errs, fmt.Errorf("call_timeout: %s must be shorter than collection_interval %s", c.CallTimeout, c.CollectionInterval))
	}
	seen := map[string]bool{}
	for _, d := range c.Devices {
		if seen[d] {
			errs = append(errs, fmt.Errorf("devices: %q listed twice", d))
		}
		seen[d] = true
		if n, err := strconv.Atoi(d); err == nil {
			if n < 0 {
				errs = append(errs, fmt.Errorf("devices: %q is not a GPU index (0 or more)", d))
			}
			continue
		}
		if !uuidPattern.MatchString(d) {
			errs = append(errs, fmt.Errorf("devices: %q is neither a GPU index nor a UUID like GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", d))
		}
	}
	var unknown []string
	for name := range c.Metrics {
		if _, ok := metricIndex(name); !ok {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	for _, name := range unknown {
		errs = append(errs, fmt.Errorf("metrics: unknown metric %q (see the receiver's README for the list)", name))
	}
	return errors.Join(errs...)
}

// enabledMetrics resolves the table defaults and the config's switches.
func (c *Config) enabledMetrics() [numMetrics]bool {
	var on [numMetrics]bool
	for i := range metricDefs {
		on[i] = metricDefs[i].enabled
		if mc, ok := c.Metrics[metricDefs[i].name]; ok {
			on[i] = mc.Enabled
		}
	}
	return on
}

// maxDefaultCallTimeout caps the derived call_timeout.
const maxDefaultCallTimeout = 2 * time.Second

// callTimeout is call_timeout, or its default derived from the interval.
func (c *Config) callTimeout() time.Duration {
	if c.CallTimeout > 0 {
		return c.CallTimeout
	}
	return min(maxDefaultCallTimeout, c.CollectionInterval/2)
}
