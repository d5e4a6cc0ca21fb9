package usagecloudeventsexporter

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.opentelemetry.io/collector/component"

	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
)

// Config is the usage_cloudevents exporter's configuration.
type Config struct {
	// ClientConfig's endpoint is the full URL events are POSTed to
	// (OpenMeter: https://openmeter.example/api/v1/events); headers carry
	// the billing system's API key.
	// Named, not embedded: an embedded ClientConfig's Unmarshal would be
	// promoted and decode nothing else.
	ClientConfig confighttp.ClientConfig                                  `mapstructure:",squash"`
	QueueConfig  configoptional.Optional[exporterhelper.QueueBatchConfig] `mapstructure:"sending_queue"`
	RetryConfig  configretry.BackOffConfig                                `mapstructure:"retry_on_failure"`
	// Source is every event's CloudEvents source (which system metered it).
	Source string `mapstructure:"source"`
	// TypePrefix starts every event's type; the meter completes it
	// (gpu_hours, data_points, ...): what a billing meter selects on.
	TypePrefix string `mapstructure:"type_prefix"`
	// Delivered keeps the ids of the records the billing system took, in a
	// storage extension, so a record queued twice (the receiver restarted
	// between handing records over and saving its cursor) is sent once.
	Delivered DeliveredConfig `mapstructure:"delivered"`
}

// DeliveredConfig is the memory of delivered record ids.
type DeliveredConfig struct {
	// Storage is a storage extension (file_storage); unset: no memory, a
	// record queued twice is sent twice (the billing system must then
	// deduplicate by id, as OpenMeter does).
	Storage *component.ID `mapstructure:"storage"`
	// Keep is how long an id is remembered.
	Keep time.Duration `mapstructure:"keep"`
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.ClientConfig.Endpoint == "" {
		errs = append(errs, errors.New("endpoint is required: the billing system's event URL (OpenMeter: https://<host>/api/v1/events)"))
	} else if u, err := url.Parse(c.ClientConfig.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("endpoint %q is not an http(s) URL", c.ClientConfig.Endpoint))
	}
	if c.Delivered.Storage != nil && c.Delivered.Keep < time.Hour {
		errs = append(errs, fmt.Errorf("delivered.keep %s: must be at least 1h", c.Delivered.Keep))
	}
	if c.Source == "" {
		errs = append(errs, errors.New("source must not be empty (CloudEvents requires it)"))
	}
	return errors.Join(errs...)
}
