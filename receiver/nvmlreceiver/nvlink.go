package nvmlreceiver

import (
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

// activeLinks finds the NVLinks that are up, listed again every
// rediscover_interval: a link that goes down (or is trained again) is seen
// without a restart. One field-values call reads every link's state (the
// link count and NVLINK_GET_STATE per link); drivers without those fields
// get one state call per link.
func (d *device) activeLinks(h nvml.Device) []int {
	if time.Since(d.nvlink.listedAt) < d.drv.relistEvery {
		return d.nvlink.links
	}
	if d.linksFromFields(h) {
		d.nvlink.listedAt = time.Now()
		return d.nvlink.links
	}
	if !d.can("nvmlDeviceGetNvLinkState", "") {
		return d.nvlink.links
	}
	d.nvlink.listedAt = time.Now()
	d.nvlink.links = d.nvlink.links[:0]
	d.nvlink.all = d.nvlink.all[:0]
	for link := 0; link < nvml.NVLINK_MAX_LINKS; link++ {
		state, ret := h.GetNvLinkState(link)
		if ret == nvml.ERROR_INVALID_ARGUMENT || ret == nvml.ERROR_NOT_SUPPORTED {
			break // past the GPU's last link, or no NVLink at all
		}
		if ret != nvml.SUCCESS {
			d.ok("nvmlDeviceGetNvLinkState", "", ret)
			continue
		}
		d.nvlink.all = append(d.nvlink.all, linkState{link: link, active: state == nvml.FEATURE_ENABLED})
		if state == nvml.FEATURE_ENABLED {
			d.nvlink.links = append(d.nvlink.links, link)
		}
	}
	return d.nvlink.links
}

// linksFromFields lists the links through field values; false when the
// driver cannot (the caller asks link by link).
func (d *device) linksFromFields(h nvml.Device) bool {
	variant := fieldVariant(nvml.FI_DEV_NVLINK_GET_STATE)
	if !d.can(fieldsFn, "") || !d.can(fieldsFn, variant) || !d.can(fieldsFn, fieldVariant(nvml.FI_DEV_NVLINK_LINK_COUNT)) {
		return false
	}
	fvs := make([]nvml.FieldValue, 0, 1+nvml.NVLINK_MAX_LINKS)
	fvs = append(fvs, nvml.FieldValue{FieldId: nvml.FI_DEV_NVLINK_LINK_COUNT})
	for link := 0; link < nvml.NVLINK_MAX_LINKS; link++ {
		fvs = append(fvs, nvml.FieldValue{FieldId: nvml.FI_DEV_NVLINK_GET_STATE, ScopeId: uint32(link)})
	}
	if ret := h.GetFieldValues(fvs); !d.ok(fieldsFn, "", ret) {
		return false
	}
	// A driver without the link count, or a GPU without NVLink, answers
	// it NOT_SUPPORTED (remembered): the per-link call tells them apart.
	count, ok := d.fieldValue(fieldVariant(nvml.FI_DEV_NVLINK_LINK_COUNT), fvs[0])
	if !ok {
		return false
	}
	n := min(int(count), nvml.NVLINK_MAX_LINKS)
	links, all := d.nvlink.links[:0], d.nvlink.all[:0]
	for link := 0; link < n; link++ {
		state, ok := d.fieldValue(variant, fvs[1+link])
		if !ok {
			return false
		}
		active := state == nvml.NVLINK_STATE_ACTIVE
		all = append(all, linkState{link: link, active: active})
		if active {
			links = append(links, link)
		}
	}
	d.nvlink.links, d.nvlink.all = links, all
	return true
}

var nvlinkErrorTypes = []struct {
	c    nvml.NvLinkErrorCounter
	name string
}{
	{nvml.NVLINK_ERROR_DL_CRC_FLIT, "crc_flit"}, {nvml.NVLINK_ERROR_DL_CRC_DATA, "crc_data"},
	{nvml.NVLINK_ERROR_DL_REPLAY, "replay"}, {nvml.NVLINK_ERROR_DL_RECOVERY, "recovery"},
}

func (d *device) nvlinkOn() bool {
	return d.drv.enabled[mNVLinkIO] || d.drv.enabled[mNVLinkErrors] || d.drv.enabled[mNVLinkActive] || d.drv.enabled[mNVLinkBER]
}

func (d *device) collectNVLink(now pcommon.Timestamp, links []int, f *fieldRead) {
	if !d.nvlinkOn() {
		return
	}
	h := d.handle()
	for _, l := range d.nvlink.all {
		d.emit(mNVLinkActive, d.ent, b2f(l.active), 0, num("nvidia.gpu.nvlink.link", int64(l.link)))
	}
	if len(links) == 0 {
		return
	}
	if d.drv.enabled[mNVLinkIO] {
		d.collectNVLinkIO(now, links, f)
	}
	if d.drv.enabled[mNVLinkErrors] {
		for i, t := range nvlinkErrorTypes {
			total, okAll := uint64(0), false
			if v, ok := f.field(nvlinkErrorFields[i]); ok {
				// Every lane of every link, in one field.
				total, okAll = uint64(v), true
			} else if d.can("nvmlDeviceGetNvLinkErrorCounter", t.name) {
				okAll = true
				for _, l := range links {
					n, ret := h.GetNvLinkErrorCounter(l, t.c)
					if !d.ok("nvmlDeviceGetNvLinkErrorCounter", t.name, ret) {
						okAll = false
						break
					}
					total += n
				}
			}
			if okAll {
				start := d.cumulative("nvmlDeviceGetNvLinkErrorCounter", t.name, total, now)
				d.emitInt(mNVLinkErrors, d.ent, int64(total), start, str("error.type", t.name))
			}
		}
		if v, ok := f.field(nvlinkECCField); ok {
			n := uint64(v)
			start := d.cumulative(fieldsFn, fieldVariant(nvlinkECCField), n, now)
			d.emitInt(mNVLinkErrors, d.ent, int64(n), start, str("error.type", "ecc_data"))
		}
		// NVLink5's per-link counters, summed over every link the GPU has
		// (a link that goes down keeps its count, so the sum does not go
		// back); a scrape where a link did not answer reports none.
		for _, e := range nvlink5ErrorFields {
			total, okAll := uint64(0), len(d.nvlink.all) > 0
			for _, l := range d.nvlink.all {
				v, ok := f.scoped(e.id, uint32(l.link))
				if !ok {
					okAll = false
					break
				}
				total += uint64(v)
			}
			if okAll {
				start := d.cumulative(fieldsFn, fieldVariant(e.id), total, now)
				d.emitInt(mNVLinkErrors, d.ent, int64(total), start, str("error.type", e.name))
			}
		}
	}
	if d.drv.enabled[mNVLinkBER] {
		for _, e := range nvlinkBERFields {
			for _, l := range d.nvlink.all {
				if v, ok := f.scoped(e.id, uint32(l.link)); ok {
					d.emit(mNVLinkBER, d.ent, berValue(uint64(v)), 0,
						num("nvidia.gpu.nvlink.link", int64(l.link)), str("error.type", e.name))
				}
			}
		}
	}
}

// collectNVLinkIO reports NVLink data traffic (hw.gpu.io). The driver's
// aggregate over every link (scope UINT_MAX) is one counter: a link that
// goes down or comes back does not move it, and it is reported as any
// driver counter (cumulative). Drivers without it answer per link; the
// receiver then adds up each active link's increase between two scrapes
// where it was active both times: a link that comes back (or is first
// seen) sets its baseline and counts from the next scrape, so its lifetime
// counter is never taken for one interval's traffic, and a link that goes
// down does not make the sum go back.
func (d *device) collectNVLinkIO(now pcommon.Timestamp, links []int, f *fieldRead) {
	dirs := [2]string{"transmit", "receive"}
	tx, ok1 := f.scoped(nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX, nvlinkAllLinks)
	rx, ok2 := f.scoped(nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX, nvlinkAllLinks)
	if ok1 && ok2 {
		d.nvlink.aggregate = true
		for i, v := range [2]float64{tx, rx} {
			b := uint64(v) * kib
			start := d.cumulative("nvlink_throughput", dirs[i], b, now)
			d.emitInt(mNVLinkIO, d.ent, int64(b), start, str("network.io.direction", dirs[i]))
		}
		return
	}
	if d.nvlink.aggregate && d.can(fieldsFn, nvlinkAllVariant[0]) && d.can(fieldsFn, nvlinkAllVariant[1]) {
		return // the aggregate failed this once: per-link values were not asked
	}
	d.nvlink.aggregate = false
	t := &d.nvlink.tally
	var seen [nvml.NVLINK_MAX_LINKS]bool
	answered := false
	for _, l := range links {
		if l < 0 || l >= nvml.NVLINK_MAX_LINKS {
			continue
		}
		tx, ok1 := f.scoped(nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX, uint32(l))
		rx, ok2 := f.scoped(nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX, uint32(l))
		if !ok1 || !ok2 {
			continue
		}
		answered = true
		cur := [2]uint64{uint64(tx), uint64(rx)}
		switch {
		case !t.have:
			// The first read: the driver's totals, a true reset point
			// like any driver counter's first point.
			t.total[0] += cur[0]
			t.total[1] += cur[1]
		case t.seen[l]:
			for i := range cur {
				if cur[i] >= t.last[l][i] {
					t.total[i] += cur[i] - t.last[l][i]
				} else {
					t.total[i] += cur[i] // the link's counter restarted
				}
			}
		}
		t.last[l], seen[l] = cur, true
	}
	if !answered {
		return
	}
	t.seen = seen
	if !t.have {
		t.have, t.start = true, now
	}
	for i := range dirs {
		d.emitInt(mNVLinkIO, d.ent, int64(t.total[i]*kib), t.start, str("network.io.direction", dirs[i]))
	}
}

// linkState is one NVLink and whether it is active.
type linkState struct {
	link   int
	active bool
}

// nvlinkState is the GPU's active NVLink links, read once per discovery.
type nvlinkState struct {
	links    []int       // the active ones
	all      []linkState // every link the GPU has
	listedAt time.Time   // zero: not listed yet
	// aggregate: the driver answered the all-links traffic fields.
	aggregate bool
	tally     nvlinkTally // traffic summed per link where it did not
}

// nvlinkTally is hw.gpu.io summed by the receiver from per-link counters.
type nvlinkTally struct {
	last  [nvml.NVLINK_MAX_LINKS][2]uint64 // KiB at the previous scrape, TX and RX
	seen  [nvml.NVLINK_MAX_LINKS]bool      // the link answered at the previous scrape
	total [2]uint64                        // KiB, TX and RX
	start pcommon.Timestamp
	have  bool
}
