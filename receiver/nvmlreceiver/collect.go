package nvmlreceiver

import (
	"encoding/binary"
	"math"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

const (
	mib = 1 << 20
	kib = 1 << 10
)

// sampleValue decodes an NVML sample or field value.
func sampleValue(vt nvml.ValueType, b [8]byte) float64 {
	switch vt {
	case nvml.VALUE_TYPE_DOUBLE:
		return math.Float64frombits(binary.LittleEndian.Uint64(b[:]))
	case nvml.VALUE_TYPE_UNSIGNED_INT:
		return float64(binary.LittleEndian.Uint32(b[:]))
	case nvml.VALUE_TYPE_UNSIGNED_LONG, nvml.VALUE_TYPE_UNSIGNED_LONG_LONG:
		return float64(binary.LittleEndian.Uint64(b[:]))
	case nvml.VALUE_TYPE_SIGNED_LONG_LONG:
		return float64(int64(binary.LittleEndian.Uint64(b[:])))
	case nvml.VALUE_TYPE_SIGNED_INT:
		return float64(int32(binary.LittleEndian.Uint32(b[:])))
	case nvml.VALUE_TYPE_UNSIGNED_SHORT:
		return float64(binary.LittleEndian.Uint16(b[:]))
	default:
		return math.NaN()
	}
}

// fieldValue decodes one field of a GetFieldValues answer; a field the GPU
// does not support is remembered like an unsupported function.
func (d *device) fieldValue(variant string, fv nvml.FieldValue) (float64, bool) {
	ret := nvml.Return(fv.NvmlReturn)
	if ret != nvml.SUCCESS {
		d.ok("nvmlDeviceGetFieldValues", variant, ret)
		return 0, false
	}
	v := sampleValue(nvml.ValueType(fv.ValueType), fv.Value)
	return v, !math.IsNaN(v)
}

// emitFieldCounter reports a device-wide error counter that only the
// field-values request has (no per-call fallback), as error.type.
func (d *device) emitFieldCounter(m int, now pcommon.Timestamp, f *fieldRead, id uint32, errType string) {
	v, ok := f.field(id)
	if !ok {
		return
	}
	n := uint64(v)
	start := d.cumulative(fieldsFn, fieldVariant(id), n, now)
	d.emitInt(m, d.ent, int64(n), start, str("error.type", errType))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
