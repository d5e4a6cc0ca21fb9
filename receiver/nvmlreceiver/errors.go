package nvmlreceiver

import (
	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

func (d *device) collectErrors(now pcommon.Timestamp, xids xidInterval, f *fieldRead) {
	h := d.handle()
	gpu := str("hw.type", "gpu")
	d.health.newUncorrected = false
	// ECC is read for hw.status too: a rise of uncorrected errors degrades
	// the GPU whether or not hw.errors is reported.
	if d.drv.enabled[mErrors] || d.drv.enabled[mStatus] {
		for i, e := range []struct {
			typ  nvml.MemoryErrorType
			name string
		}{{nvml.MEMORY_ERROR_TYPE_CORRECTED, "corrected"}, {nvml.MEMORY_ERROR_TYPE_UNCORRECTED, "uncorrected"}} {
			var n uint64
			if v, ok := f.field(eccFields[i]); ok {
				n = uint64(v)
			} else {
				var ok bool
				if n, ok = read(d, "nvmlDeviceGetTotalEccErrors", e.name, func() (uint64, nvml.Return) {
					return h.GetTotalEccErrors(e.typ, nvml.VOLATILE_ECC)
				}); !ok {
					continue
				}
			}
			start := d.cumulative("nvmlDeviceGetTotalEccErrors", e.name, n, now)
			d.emitInt(mErrors, d.ent, int64(n), start, gpu, str("error.type", e.name))
			if e.typ == nvml.MEMORY_ERROR_TYPE_UNCORRECTED {
				if d.health.havePrevUnc && n > d.health.prevUncorr {
					d.health.newUncorrected = true
				}
				if d.health.havePrevUnc && n < d.health.prevUncorr {
					d.health.eccWentBack = true
				}
				d.health.prevUncorr, d.health.havePrevUnc = n, true
			}
		}
		for _, c := range xids.counts {
			d.emitInt(mErrors, d.ent, int64(c.count), xids.start, gpu, str("error.type", "xid"), num("nvidia.xid.code", int64(c.code)))
		}
	}
}

// collectECC reports ECC errors per memory location, since the driver
// loaded (volatile) and over the board's life (aggregate), from the scrape's
// field values: an RMA decision reads the aggregate device-memory count.
func (d *device) collectECC(now pcommon.Timestamp, f *fieldRead) {
	if !d.drv.enabled[mECC] {
		return
	}
	for _, l := range eccLocations {
		for _, e := range []struct {
			id   uint32
			name string
		}{{l.sbe, "corrected"}, {l.dbe, "uncorrected"}} {
			v, ok := f.field(e.id)
			if !ok {
				continue
			}
			start := d.cumulative("ecc:"+l.counter+":"+l.location, e.name, uint64(v), now)
			d.emitInt(mECC, d.ent, int64(v), start, str("error.type", e.name),
				str("nvidia.gpu.ecc.location", l.location), str("nvidia.gpu.ecc.counter", l.counter))
		}
	}
}
