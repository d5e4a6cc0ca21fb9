package nvmlreceiver

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otelcol-gpu/otelcol-gpu/receiver/nvmlreceiver/internal/metadata"
)

// entity is what a data point is about: a GPU or a MIG instance.
type entity struct {
	hwID, hwName string
	parent       string // MIG: the parent GPU's UUID
	mig          []kv   // MIG: nvidia.mig.* ids and profile
	info         []kv   // GPU: identity for nvidia.gpu.info
}

// kv is one attribute: a string, or an int where semconv types it so.
type kv struct {
	k     string
	v     string
	i     int64
	isInt bool
}

func str(k, v string) kv       { return kv{k: k, v: v} }
func num(k string, i int64) kv { return kv{k: k, i: i, isInt: true} }

// point is one data point a worker produced, kept until the scrape
// assembles the pdata.
type point struct {
	ent   *entity
	dbl   float64
	i     int64
	start pcommon.Timestamp
	attrs [3]kv
	n     int
	// more holds the attributes past the third: only per-process points
	// have them (a process's container, pod and job).
	more []kv
}

// emit adds a point for metric m if it is enabled. value is stored as the
// metric's type says (int or double).
func (d *device) emit(m int, ent *entity, value float64, start pcommon.Timestamp, attrs ...kv) {
	if !d.drv.enabled[m] {
		return
	}
	p := point{ent: ent, start: start}
	if metricDefs[m].isInt {
		p.i = int64(value)
	} else {
		p.dbl = value
	}
	p.setAttrs(attrs)
	d.buf[m] = append(d.buf[m], p)
}

// setAttrs keeps the point's attributes: up to three in place, the rest
// in more.
func (p *point) setAttrs(attrs []kv) {
	p.n = copy(p.attrs[:], attrs)
	if len(attrs) > len(p.attrs) {
		p.more = attrs[len(p.attrs):]
	}
}

// emitInt is emit for integer values too large for a float64 to hold exactly.
func (d *device) emitInt(m int, ent *entity, value int64, start pcommon.Timestamp, attrs ...kv) {
	if !d.drv.enabled[m] {
		return
	}
	p := point{ent: ent, i: value, start: start}
	p.setAttrs(attrs)
	d.buf[m] = append(d.buf[m], p)
}

func putKV(attrs pcommon.Map, a kv) {
	if a.isInt {
		attrs.PutInt(a.k, a.i)
	} else {
		attrs.PutStr(a.k, a.v)
	}
}

// assemble turns the points of every GPU that answered into one pdata
// batch, one metric per enabled metric that has points.
func (s *session) assemble(md pmetric.Metrics, devices []*device, now pcommon.Timestamp) {
	if len(devices) == 0 {
		return
	}
	s.sendHealthEvents(devices)
	sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(metadata.ScopeName)
	ms := sm.Metrics()
	ms.EnsureCapacity(int(numMetrics))
	for m := range metricDefs {
		total := 0
		for _, d := range devices {
			total += len(d.buf[m])
		}
		if total == 0 {
			continue
		}
		def := &metricDefs[m]
		metric := ms.AppendEmpty()
		metric.SetName(def.name)
		metric.SetUnit(def.unit)
		metric.SetDescription(def.description)
		var dps pmetric.NumberDataPointSlice
		switch def.kind {
		case kindGauge:
			dps = metric.SetEmptyGauge().DataPoints()
		default:
			sum := metric.SetEmptySum()
			sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			sum.SetIsMonotonic(def.kind == kindSum)
			dps = sum.DataPoints()
		}
		dps.EnsureCapacity(total)
		for _, d := range devices {
			for i := range d.buf[m] {
				p := &d.buf[m][i]
				dp := dps.AppendEmpty()
				dp.SetTimestamp(now)
				if def.kind != kindGauge {
					dp.SetStartTimestamp(p.start)
				}
				if def.isInt {
					dp.SetIntValue(p.i)
				} else {
					dp.SetDoubleValue(p.dbl)
				}
				attrs := dp.Attributes()
				attrs.EnsureCapacity(2 + len(p.ent.mig) + p.n + len(p.more) + len(p.ent.info))
				attrs.PutStr("hw.id", p.ent.hwID)
				attrs.PutStr("hw.name", p.ent.hwName)
				if p.ent.parent != "" {
					attrs.PutStr("hw.parent", p.ent.parent)
					for _, a := range p.ent.mig {
						putKV(attrs, a)
					}
				}
				for _, a := range p.attrs[:p.n] {
					putKV(attrs, a)
				}
				for _, a := range p.more {
					putKV(attrs, a)
				}
				if m == mInfo {
					for _, a := range p.ent.info {
						putKV(attrs, a)
					}
				}
			}
		}
	}
}
