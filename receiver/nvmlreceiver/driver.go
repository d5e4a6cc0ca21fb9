package nvmlreceiver

import (
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.uber.org/zap"
)

// driver is what every GPU of one NVML initialisation shares and only
// reads: the library, the functions the installed driver has, its
// versions, which metrics are on, and where to log and count. Each
// initialisation has its own, which its devices point to; the session
// embeds a copy for its own use, under its scrapeMu.
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

	// What the initialisation found, written by it before any worker or
	// the watcher starts and never after. A worker of an earlier
	// initialisation whose call returns late (a release came while it was
	// hung) goes on reading its own while NVML is initialised again.
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
