package nvmlreceiver

import (
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.uber.org/zap"
)

// driver is what every GPU of a session shares and only reads: the library,
// the functions the installed driver has, its versions, which metrics are
// on, and where to log and count. The session embeds it; devices hold a
// pointer to it and nothing else of the session.
type driver struct {
	lib     nvml.Interface
	logger  *zap.Logger
	tel     *receiverTelemetry
	enabled [numMetrics]bool
	// refusedRetry is how long a call a GPU refused is not asked again.
	refusedRetry time.Duration
	// relistEvery is how often what a GPU has (its active NVLinks) is
	// listed again: rediscover_interval.
	relistEvery time.Duration

	// Written by init (under the session's scrapeMu) before any worker or
	// the watcher starts; read-only afterwards.
	symbols       map[string]bool
	driverVersion string
	cudaVersion   string
}

// has reports whether the installed driver exports every one of symbols.
func (d *driver) has(symbols ...string) bool {
	for _, sym := range symbols {
		if !d.symbols[sym] {
			return false
		}
	}
	return true
}
