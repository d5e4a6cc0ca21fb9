package tenantprocessor

import (
	"context"
	"math"
	"time"

	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// metricChecks are the gateway's rules for metrics alone, applied on the
// walk enforce makes anyway (scrubMetrics): reserved names are renamed
// there (names only), and with a timestamp window every point's timestamp
// is placed there, so a request's points are walked once. What they found
// is settled after enforce (settleMetrics).
type metricChecks struct {
	reserved *reservedNames // nil: no reserved prefixes
	windowOn bool
	w        window
	renames  renameTally
	points   windowTally
}

// metricChecks are this request's checks, the window taken from the clock now.
func (p *tenantProcessor) metricChecks() metricChecks {
	var c metricChecks
	if len(p.reserved.prefixes) > 0 {
		c.reserved = &p.reserved
	}
	if ts := p.cfg.Timestamps; ts.MaxAge > 0 || ts.MaxFuture > 0 {
		c.windowOn, c.w = true, windowAt(ts, p.now())
	}
	return c
}

// name renames m if its name is reserved.
func (c *metricChecks) name(m pmetric.Metric) {
	if c.reserved != nil {
		c.reserved.apply(m, &c.renames)
	}
}

// settleMetrics counts and logs what the checks found, and removes the
// points outside the window (and the metrics, scopes and resources that
// leaves empty). A request whose every point is outside the window is
// refused (InvalidArgument, permanent): the agent drops it, since a retry
// cannot succeed.
func (p *tenantProcessor) settleMetrics(ctx context.Context, from sender, md pmetric.Metrics, c *metricChecks) error {
	if c.renames.n > 0 {
		p.renamed.Add(ctx, int64(c.renames.n))
		p.logRenames(from, c.renames)
	}
	points := &c.points
	if points.refused() == 0 {
		return nil
	}
	if points.tooOld > 0 {
		p.refusedPoints.Add(ctx, int64(points.tooOld), reasonTooOld)
	}
	if points.tooNew > 0 {
		p.refusedPoints.Add(ctx, int64(points.tooNew), reasonTooNew)
	}
	p.logRefusedPoints(from, points, c.w)
	if points.refused() == points.points {
		p.refused.Add(ctx, 1, reasonOutOfWindow)
		return consumererror.NewPermanent(status.Errorf(codes.InvalidArgument,
			"tenant: all %d data points have timestamps outside the accepted window (%s; oldest %s, newest %s); a retry cannot succeed",
			points.points, describeWindow(p.cfg.Timestamps), rfc3339(points.oldest), rfc3339(points.newest)))
	}
	md.ResourceMetrics().RemoveIf(func(rm pmetric.ResourceMetrics) bool { return dropOutside(rm, c.w) })
	return nil
}

func rfc3339(ts pcommon.Timestamp) string { return ts.AsTime().UTC().Format(time.RFC3339Nano) }

func (p *tenantProcessor) logRenames(from sender, t renameTally) {
	if !p.renameLog.Allow() {
		return
	}
	p.logger.Warn("metrics under a reserved prefix renamed (logged at most every 10s, every one is counted)",
		zap.String("tenant", from.tenant), zap.String("credential_id", from.credentialID()),
		zap.Int("metrics", t.n), zap.String("example", cut(t.example)), zap.String("renamed_to", cut(p.reserved.rename+t.example)))
}

func (p *tenantProcessor) logRefusedPoints(from sender, t *windowTally, w window) {
	if !p.windowLog.Allow() {
		return
	}
	fields := []zap.Field{
		zap.String("tenant", from.tenant), zap.String("credential_id", from.credentialID()),
		zap.Int("refused", t.refused()), zap.Int("too_old", t.tooOld), zap.Int("too_new", t.tooNew), zap.Int("points", t.points),
		zap.Time("oldest", t.oldest.AsTime()), zap.Time("newest", t.newest.AsTime()),
	}
	if w.lo > 0 {
		fields = append(fields, zap.Time("window_start", w.lo.AsTime()))
	}
	if w.hi != math.MaxUint64 {
		fields = append(fields, zap.Time("window_end", w.hi.AsTime()))
	}
	p.logger.Warn("data points outside the timestamp window removed (logged at most every 10s, every one is counted)", fields...)
}
