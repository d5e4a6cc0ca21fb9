package nvmlreceiver

import (
	"context"
	"strconv"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/otelcol-gpu/otelcol-gpu/internal/telemetry"
	"github.com/otelcol-gpu/otelcol-gpu/receiver/nvmlreceiver/internal/metadata"
)

// receiverTelemetry is the receiver's own telemetry.
type receiverTelemetry struct {
	scrapeDuration metric.Float64Histogram
	nvmlErrors     metric.Int64Counter
	devices        metric.Int64Gauge
	xidDropped     metric.Int64Counter
}

// metrics is the receiver's own metrics (the README's table is rendered
// from it).
func (t *receiverTelemetry) metrics() []telemetry.Metric {
	return []telemetry.Metric{
		{Name: "otelcol_receiver_nvml_scrape_duration", Unit: "s", Histogram: &t.scrapeDuration,
			Buckets:     []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
			Description: "Wall time of one scrape of every GPU."},
		{Name: "otelcol_receiver_nvml_errors", Unit: "{call}", Attrs: []string{"function", "code"}, Counter: &t.nvmlErrors,
			Description: "NVML calls that failed, by function and return code."},
		{Name: "otelcol_receiver_nvml_devices", Unit: "{device}", Attrs: []string{"state"}, Gauge: &t.devices,
			Description: "GPUs seen, by state: reporting, lost (fell off the bus, awaiting reset) or hung (NVML call did not return)."},
		{Name: "otelcol_receiver_nvml_xid_records_dropped", Unit: "{record}", Counter: &t.xidDropped,
			Description: "XID events not sent as log records because of the per-interval bound (they are still counted in hw.errors)."},
	}
}

func newReceiverTelemetry(set component.TelemetrySettings) (*receiverTelemetry, error) {
	var t receiverTelemetry
	if _, err := telemetry.Register(set, metadata.ScopeName, t.metrics()); err != nil {
		return nil, err
	}
	return &t, nil
}

func (t *receiverTelemetry) nvmlError(function string, ret nvml.Return) {
	t.nvmlErrors.Add(context.Background(), 1, metric.WithAttributes(
		attribute.String("function", function), attribute.String("code", returnName(ret))))
}

var returnNames = map[nvml.Return]string{
	nvml.SUCCESS:                       "SUCCESS",
	nvml.ERROR_UNINITIALIZED:           "ERROR_UNINITIALIZED",
	nvml.ERROR_INVALID_ARGUMENT:        "ERROR_INVALID_ARGUMENT",
	nvml.ERROR_NOT_SUPPORTED:           "ERROR_NOT_SUPPORTED",
	nvml.ERROR_NO_PERMISSION:           "ERROR_NO_PERMISSION",
	nvml.ERROR_NOT_FOUND:               "ERROR_NOT_FOUND",
	nvml.ERROR_INSUFFICIENT_SIZE:       "ERROR_INSUFFICIENT_SIZE",
	nvml.ERROR_DRIVER_NOT_LOADED:       "ERROR_DRIVER_NOT_LOADED",
	nvml.ERROR_TIMEOUT:                 "ERROR_TIMEOUT",
	nvml.ERROR_IRQ_ISSUE:               "ERROR_IRQ_ISSUE",
	nvml.ERROR_LIBRARY_NOT_FOUND:       "ERROR_LIBRARY_NOT_FOUND",
	nvml.ERROR_FUNCTION_NOT_FOUND:      "ERROR_FUNCTION_NOT_FOUND",
	nvml.ERROR_CORRUPTED_INFOROM:       "ERROR_CORRUPTED_INFOROM",
	nvml.ERROR_GPU_IS_LOST:             "ERROR_GPU_IS_LOST",
	nvml.ERROR_RESET_REQUIRED:          "ERROR_RESET_REQUIRED",
	nvml.ERROR_OPERATING_SYSTEM:        "ERROR_OPERATING_SYSTEM",
	nvml.ERROR_LIB_RM_VERSION_MISMATCH: "ERROR_LIB_RM_VERSION_MISMATCH",
	nvml.ERROR_MEMORY:                  "ERROR_MEMORY",
	nvml.ERROR_NO_DATA:                 "ERROR_NO_DATA",
	nvml.ERROR_UNKNOWN:                 "ERROR_UNKNOWN",
}

// returnName names an NVML return code without calling into NVML
// (nvmlErrorString needs the library, which may be what is missing).
func returnName(ret nvml.Return) string {
	if n, ok := returnNames[ret]; ok {
		return n
	}
	return "ERROR_" + strconv.Itoa(int(ret))
}
