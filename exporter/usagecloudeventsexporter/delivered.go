package usagecloudeventsexporter

import (
	"bytes"
	"context"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.uber.org/zap"
)

// memory is what the exporter has settled, per record id, in the
// delivered.storage extension. Its keys:
//
//	d/<id>              "<sha256 hex> <unix seconds> <state>": the id's one
//	                    value and when it was settled; state is delivered
//	                    (the billing system took it) or refused (it went
//	                    to the dead-letter file).
//	c/<id>/<sha256 hex> "<unix seconds>": another value of the id, already
//	                    written to the dead-letter file as a conflict.
//	t/<unix hour>       the d/ and c/ keys written in that hour, one a
//	                    line: what pruning deletes once delivered.keep has
//	                    passed.
//
// A d/ value that cannot be read counts as settled with an unknown value:
// the id is never sent again, since sending it might bill it twice.
type memory struct {
	client storage.Client
	keep   time.Duration
	logger *zap.Logger
	now    func() time.Time
	pruned time.Time
}

// The states of a settled id.
const (
	stateDelivered = "delivered"
	stateRefused   = "refused"
	// stateQueued is an earlier event of the same push (only in
	// dead-letter lines, never stored).
	stateQueued = "queued"
)

// verdict is what the memory says of an event.
type verdict int

const (
	// fresh: never settled, to be sent.
	fresh verdict = iota
	// same: settled with this very value; nothing to do.
	same
	// conflict: settled with another value; never to be sent.
	conflict
	// knownConflict: this other value is in the dead-letter file already.
	knownConflict
)

// settled is an id's entry: the value it is bound to.
type settled struct {
	digest string // hex; empty when unreadable
	at     time.Time
	state  string
}

func deliveredKey(id string) string { return "d/" + id }

func conflictKey(id string, digest [32]byte) string {
	return "c/" + id + "/" + hex.EncodeToString(digest[:])
}

// classify reads the memory for each event.
func (m *memory) classify(ctx context.Context, evs []encoded) ([]verdict, []settled, error) {
	ops := make([]*storage.Operation, 0, 2*len(evs))
	for _, ev := range evs {
		ops = append(ops, storage.GetOperation(deliveredKey(ev.id)), storage.GetOperation(conflictKey(ev.id, ev.digest)))
	}
	if err := m.client.Batch(ctx, ops...); err != nil {
		return nil, nil, err
	}
	verdicts := make([]verdict, len(evs))
	prior := make([]settled, len(evs))
	for i, ev := range evs {
		d, c := ops[2*i].Value, ops[2*i+1].Value
		switch {
		case c != nil:
			verdicts[i] = knownConflict
		case d == nil:
			verdicts[i] = fresh
		default:
			prior[i] = parseSettled(d)
			if prior[i].digest == hex.EncodeToString(ev.digest[:]) || prior[i].digest == "" {
				verdicts[i] = same
			} else {
				verdicts[i] = conflict
			}
		}
	}
	return verdicts, prior, nil
}

func parseSettled(v []byte) settled {
	f := strings.Fields(string(v))
	if len(f) != 3 || len(f[0]) != 64 {
		return settled{}
	}
	s, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return settled{}
	}
	return settled{digest: f[0], at: time.Unix(s, 0).UTC(), state: f[2]}
}

// settle binds each event's id to its value, in the given state.
func (m *memory) settle(ctx context.Context, evs []encoded, state string) error {
	now := m.now()
	stamp := strconv.FormatInt(now.Unix(), 10)
	keys := make([]string, len(evs))
	vals := make([][]byte, len(evs))
	for i, ev := range evs {
		keys[i] = deliveredKey(ev.id)
		vals[i] = []byte(hex.EncodeToString(ev.digest[:]) + " " + stamp + " " + state)
	}
	return m.put(ctx, now, keys, vals)
}

// settleConflict remembers that this value of the id went to the
// dead-letter file.
func (m *memory) settleConflict(ctx context.Context, ev encoded) error {
	now := m.now()
	return m.put(ctx, now, []string{conflictKey(ev.id, ev.digest)}, [][]byte{[]byte(strconv.FormatInt(now.Unix(), 10))})
}

// put writes the keys and their hour's index in one transaction, and every
// hour forgets what is older than delivered.keep.
func (m *memory) put(ctx context.Context, now time.Time, keys []string, vals [][]byte) error {
	bucket := "t/" + strconv.FormatInt(now.Unix()/3600, 10)
	idx, err := m.client.Get(ctx, bucket)
	if err != nil {
		return err
	}
	ops := make([]*storage.Operation, 0, len(keys)+1)
	for i, k := range keys {
		ops = append(ops, storage.SetOperation(k, vals[i]))
		idx = append(append(idx, k...), '\n')
	}
	ops = append(ops, storage.SetOperation(bucket, idx))
	if err := m.client.Batch(ctx, ops...); err != nil {
		return err
	}
	if now.Sub(m.pruned) >= time.Hour {
		m.pruned = now
		m.prune(ctx, now)
	}
	return nil
}

// prune forgets the keys written in the hours past delivered.keep (it
// looks back a further week of hours; older ones were pruned before).
func (m *memory) prune(ctx context.Context, now time.Time) {
	last := now.Add(-m.keep).Unix() / 3600
	for h := last - 7*24; h < last; h++ {
		bucket := "t/" + strconv.FormatInt(h, 10)
		idx, err := m.client.Get(ctx, bucket)
		if err != nil || idx == nil {
			continue
		}
		var ops []*storage.Operation
		for _, k := range bytes.Split(idx, []byte{'\n'}) {
			if len(k) > 0 {
				ops = append(ops, storage.DeleteOperation(string(k)))
			}
		}
		ops = append(ops, storage.DeleteOperation(bucket))
		if err := m.client.Batch(ctx, ops...); err != nil {
			m.logger.Warn("forgetting old delivered ids failed", zap.Error(err))
		}
	}
}
