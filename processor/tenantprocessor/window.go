package tenantprocessor

import (
	"fmt"
	"math"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// The usage job bills each hour from the store, rechecking it up to a last
// recheck (24 h by default) after it closed. A point timestamped before
// what the job still looks at would be stored and never billed; one
// timestamped far ahead would be billed in an hour that has not happened.
// So the gateway accepts data point timestamps only within
// [now - max_age, now + max_future] of its own clock, both ends included.
//
// A point without a timestamp (0, the Unix epoch) is treated like any
// other: far too old. VictoriaMetrics does not stamp it with its receive
// time: its OTLP parser (lib/protoparser/opentelemetry) turns
// time_unix_nano into milliseconds as is, and the storage drops a row
// older than its retention (vm_rows_ignored_total{reason="small_timestamp"}), so
// such a point would be counted by the gateway and never stored.

// window is the accepted range of one request, from the clock at its start.
type window struct {
	lo, hi pcommon.Timestamp
}

// windowAt is the window around now; a zero max_age or max_future leaves
// that side open.
func windowAt(cfg TimestampsConfig, now time.Time) window {
	w := window{lo: 0, hi: math.MaxUint64}
	if cfg.MaxAge > 0 {
		if lo := now.Add(-cfg.MaxAge).UnixNano(); lo > 0 {
			w.lo = pcommon.Timestamp(lo)
		}
	}
	if cfg.MaxFuture > 0 {
		w.hi = pcommon.NewTimestampFromTime(now.Add(cfg.MaxFuture))
	}
	return w
}

// Where a timestamp falls: before the window, in it (both ends
// included), or after it.
const (
	tooOld = iota - 1
	inWindow
	tooNew
)

func (w window) place(ts pcommon.Timestamp) int {
	switch {
	case ts < w.lo:
		return tooOld
	case ts > w.hi:
		return tooNew
	}
	return inWindow
}

// windowTally is what one request's points were against the window.
type windowTally struct {
	points         int
	tooOld, tooNew int
	// oldest and newest of the refused points.
	oldest, newest pcommon.Timestamp
}

func (t *windowTally) refused() int { return t.tooOld + t.tooNew }

// refuse counts a point outside w (the walk tests the bounds inline: it
// runs for every point).
func (t *windowTally) refuse(ts pcommon.Timestamp, w window) {
	switch w.place(ts) {
	case tooOld:
		t.tooOld++
	case tooNew:
		t.tooNew++
	default:
		return
	}
	if t.refused() == 1 || ts < t.oldest {
		t.oldest = ts
	}
	if ts > t.newest {
		t.newest = ts
	}
}

type timed interface{ Timestamp() pcommon.Timestamp }

// dropOutside removes from rm the points outside w, the metrics that had
// points and have none left, and the scopes those leave empty. It reports
// whether rm itself is left empty by that. Only requests with a refused
// point come here.
func dropOutside(rm pmetric.ResourceMetrics, w window) bool {
	sms := rm.ScopeMetrics()
	if sms.Len() == 0 {
		return false
	}
	sms.RemoveIf(func(sm pmetric.ScopeMetrics) bool {
		ms := sm.Metrics()
		if ms.Len() == 0 {
			return false
		}
		ms.RemoveIf(func(m pmetric.Metric) bool { return dropPoints(m, w) })
		return ms.Len() == 0
	})
	return sms.Len() == 0
}

// dropPoints removes m's points outside w and reports whether that left m
// without any.
func dropPoints(m pmetric.Metric, w window) bool {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		return dropEach(m.Gauge().DataPoints(), w)
	case pmetric.MetricTypeSum:
		return dropEach(m.Sum().DataPoints(), w)
	case pmetric.MetricTypeHistogram:
		return dropEach(m.Histogram().DataPoints(), w)
	case pmetric.MetricTypeExponentialHistogram:
		return dropEach(m.ExponentialHistogram().DataPoints(), w)
	case pmetric.MetricTypeSummary:
		return dropEach(m.Summary().DataPoints(), w)
	}
	return false
}

func dropEach[E timed, S interface {
	Len() int
	RemoveIf(func(E) bool)
}](s S, w window) bool {
	if s.Len() == 0 {
		return false
	}
	s.RemoveIf(func(dp E) bool { return w.place(dp.Timestamp()) != inWindow })
	return s.Len() == 0
}

// describeWindow says in words what the window accepts.
func describeWindow(cfg TimestampsConfig) string {
	older, ahead := "no limit", "no limit"
	if cfg.MaxAge > 0 {
		older = cfg.MaxAge.String()
	}
	if cfg.MaxFuture > 0 {
		ahead = cfg.MaxFuture.String()
	}
	return fmt.Sprintf("at most %s old and %s ahead of the gateway's clock", older, ahead)
}
