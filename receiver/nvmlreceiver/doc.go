// Package nvmlreceiver provides the nvml receiver: GPU telemetry from the
// NVIDIA Management Library through go-nvml, in OpenTelemetry semantic-
// convention names where they exist (hw.gpu.*, hw.power, hw.energy,
// hw.temperature, hw.errors, hw.status) and nvidia.gpu.* where they do not,
// plus XID errors as log records. It is built to survive what real drivers
// do: a missing library, missing symbols, unsupported functions, a GPU that
// falls off the bus, and calls that hang.
package nvmlreceiver // import "github.com/otelcol-gpu/otelcol-gpu/receiver/nvmlreceiver"
