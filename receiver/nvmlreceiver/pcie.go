package nvmlreceiver

import (
	"math"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

func (d *device) collectPCIe(now pcommon.Timestamp, f *fieldRead) {
	h := d.handle()
	if d.drv.enabled[mPCIeThroughput] {
		d.collectPCIeThroughput(h, f)
	}
	if d.drv.enabled[mPCIeReplays] {
		n, have := uint64(0), false
		if v, ok := f.field(nvml.FI_DEV_PCIE_REPLAY_COUNTER); ok {
			n, have = uint64(v), true
		} else if c, ok := read(d, "nvmlDeviceGetPcieReplayCounter", "", h.GetPcieReplayCounter); ok {
			n, have = uint64(c), true
		}
		if have {
			start := d.cumulative("nvmlDeviceGetPcieReplayCounter", "", n, now)
			d.emitInt(mPCIeReplays, d.ent, int64(n), start)
		}
	}
	if d.drv.enabled[mPCIeErrors] {
		for _, e := range pcieErrorFields {
			d.emitFieldCounter(mPCIeErrors, now, f, e.id, e.name)
		}
	}
	if d.drv.enabled[mC2CErrors] {
		for _, e := range c2cErrorFields {
			d.emitFieldCounter(mC2CErrors, now, f, e.id, e.name)
		}
	}
}

// pcieCounters is the PCIe byte counters at the last scrape, for a rate.
type pcieCounters struct {
	tx, rx uint64
	at     time.Time
	have   bool
}

// counterDelta is how far a PCIe byte counter moved between two reads.
// nvml.h says of PCIE_COUNT_TX/RX_BYTES "Value can be wrapped": drivers keep
// them in 32 bits (a wrap every 4 GiB, seconds at PCIe rates), so a counter
// that goes down while both reads fit in 32 bits wrapped once (one wrap per
// interval is all the two reads can tell; a faster link wraps more often
// and is under-counted, never negative). A counter above 32 bits that goes
// down was reset (a GPU reset, a driver reload): no rate this time.
func counterDelta(prev, cur uint64) (uint64, bool) {
	if cur >= prev {
		return cur - prev, true
	}
	if prev <= math.MaxUint32 {
		return cur + (1 << 32) - prev, true
	}
	return 0, false
}

// collectPCIeThroughput reports PCIe traffic in bytes/s: the rate of the
// PCIe byte counters between two scrapes where the driver has them (no
// cost), else GetPcieThroughput, which samples for about 20 ms a call.
func (d *device) collectPCIeThroughput(h nvml.Device, f *fieldRead) {
	tx, okTx := f.field(nvml.FI_DEV_PCIE_COUNT_TX_BYTES)
	rx, okRx := f.field(nvml.FI_DEV_PCIE_COUNT_RX_BYTES)
	if okTx && okRx {
		// Over the driver's timestamp of the read where it gives one.
		at := f.stamp(nvml.FI_DEV_PCIE_COUNT_TX_BYTES)
		if at.IsZero() {
			at = f.at
		}
		prev := d.pcie
		d.pcie = pcieCounters{tx: uint64(tx), rx: uint64(rx), at: at, have: true}
		dt := at.Sub(prev.at).Seconds()
		// The first read has nothing to compare with; a counter that went
		// back gives no rate this time unless it wrapped (counterDelta).
		if !prev.have || dt <= 0 {
			return
		}
		dTx, okTx := counterDelta(prev.tx, uint64(tx))
		dRx, okRx := counterDelta(prev.rx, uint64(rx))
		if !okTx || !okRx {
			return
		}
		d.emit(mPCIeThroughput, d.ent, float64(dTx)/dt, 0, str("network.io.direction", "transmit"))
		d.emit(mPCIeThroughput, d.ent, float64(dRx)/dt, 0, str("network.io.direction", "receive"))
		return
	}
	d.pcie = pcieCounters{}
	for _, dir := range []struct {
		c    nvml.PcieUtilCounter
		name string
	}{{nvml.PCIE_UTIL_TX_BYTES, "transmit"}, {nvml.PCIE_UTIL_RX_BYTES, "receive"}} {
		if kbs, ok := read(d, "nvmlDeviceGetPcieThroughput", dir.name, func() (uint32, nvml.Return) {
			return h.GetPcieThroughput(dir.c)
		}); ok {
			d.emit(mPCIeThroughput, d.ent, float64(kbs)*kib, 0, str("network.io.direction", dir.name))
		}
	}
}
