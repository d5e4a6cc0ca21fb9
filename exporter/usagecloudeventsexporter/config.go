package usagecloudeventsexporter

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
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
	ClientConfig confighttp.ClientConfig `mapstructure:",squash"`
	// QueueConfig is the collector's sending queue (persistent with a
	// storage extension): what waits while the billing system is away.
	QueueConfig configoptional.Optional[exporterhelper.QueueBatchConfig] `mapstructure:"sending_queue"`
	// RetryConfig paces the retries of a push that failed for a reason
	// that can pass (5xx, 429, 401/403, the network).
	RetryConfig configretry.BackOffConfig `mapstructure:"retry_on_failure"`
	// Source is every event's CloudEvents source (which system metered
	// it); OpenMeter deduplicates by id and source.
	Source string `mapstructure:"source"`
	// TypePrefix starts every event's type, the meter completes it: what a
	// billing meter selects on. Reverse-DNS, as CloudEvents recommends, so
	// the types cannot collide with another producer's.
	TypePrefix string `mapstructure:"type_prefix"`
	// MaxBatchEvents bounds the events of one request.
	MaxBatchEvents int `mapstructure:"max_batch_events"`
	// MaxBatchBytes bounds the JSON body of one request; an event larger
	// than this goes alone.
	MaxBatchBytes int `mapstructure:"max_batch_bytes"`
	// DeadLetter is where the events the billing system will never take
	// are kept for an operator.
	DeadLetter DeadLetterConfig `mapstructure:"dead_letter"`
	// Delivered remembers, per record id, the value the billing system
	// took, so an id goes out once and with one value.
	Delivered DeliveredConfig `mapstructure:"delivered"`
}

// DeadLetterConfig is the file of refused and conflicting events.
type DeadLetterConfig struct {
	// Path is the file, one JSON line per event (README.md, "Dead-letter
	// file"). Required: an event the billing system refuses must land
	// somewhere an operator finds it, not only in a log.
	Path string `mapstructure:"path"`
}

// DeliveredConfig is the memory of settled record ids.
type DeliveredConfig struct {
	// Storage is a storage extension (file_storage). Required: without it
	// a restart would send an id again, possibly with another value.
	Storage *component.ID `mapstructure:"storage"`
	// Keep is how long an id is remembered: longer than the usage job's
	// last recheck and any outage the queue rides out.
	Keep time.Duration `mapstructure:"keep"`
}

var _ component.Config = (*Config)(nil)

// Validate checks the configuration; every error names its field.
func (c *Config) Validate() error {
	var errs []error
	if c.ClientConfig.Endpoint == "" {
		errs = append(errs, errors.New("endpoint: required, the billing system's event URL (OpenMeter: https://<host>/api/v1/events)"))
	} else if u, err := url.Parse(c.ClientConfig.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("endpoint: %q is not an http(s) URL", c.ClientConfig.Endpoint))
	}
	if c.Source == "" {
		errs = append(errs, errors.New("source: must not be empty (CloudEvents requires it)"))
	}
	if c.TypePrefix == "" || !strings.HasSuffix(c.TypePrefix, ".") {
		errs = append(errs, fmt.Errorf("type_prefix: %q must be a non-empty namespace ending with '.' (such as %q)", c.TypePrefix, defaultTypePrefix))
	}
	if c.MaxBatchEvents < 1 {
		errs = append(errs, fmt.Errorf("max_batch_events: %d must be at least 1", c.MaxBatchEvents))
	}
	if c.MaxBatchBytes < 1 {
		errs = append(errs, fmt.Errorf("max_batch_bytes: %d must be at least 1", c.MaxBatchBytes))
	}
	if c.DeadLetter.Path == "" {
		errs = append(errs, errors.New("dead_letter.path: required, the file that keeps the events the billing system refuses"))
	}
	if c.Delivered.Storage == nil {
		errs = append(errs, errors.New("delivered.storage: required, a storage extension that remembers the ids the billing system took"))
	}
	if c.Delivered.Keep < time.Hour {
		errs = append(errs, fmt.Errorf("delivered.keep: %s must be at least 1h", c.Delivered.Keep))
	}
	return errors.Join(errs...)
}
