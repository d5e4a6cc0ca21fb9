package nvmlreceiver

const (
	stateOK       = "ok"
	stateDegraded = "degraded"
	stateFailed   = "failed"
)

var hwStates = [...]string{stateOK, stateDegraded, stateFailed}

// XID codes that mean the GPU failed (79: fallen off the bus) or is degraded
// (48: double-bit ECC; 63, 64: row remapping; 74: NVLink; 92: high
// single-bit ECC rate; 94, 95: contained/uncontained ECC; 119, 120: GSP).
var (
	xidFailed   = map[uint64]bool{79: true}
	xidDegraded = map[uint64]bool{48: true, 63: true, 64: true, 74: true, 92: true, 94: true, 95: true, 119: true, 120: true}
)

// state derives the GPU's hw.status for this interval.
func (d *device) state(x xidInterval) string {
	switch {
	case d.health.lost || x.failed:
		return stateFailed
	case x.degraded || d.health.remapBad || d.health.newUncorrected:
		return stateDegraded
	default:
		return stateOK
	}
}

// emitStatus writes hw.status the semconv way: one point per state, 1 for
// the current one and 0 for the others.
func (d *device) emitStatus(current string) {
	for _, st := range hwStates {
		v := 0.0
		if st == current {
			v = 1
		}
		d.emit(mStatus, d.ent, v, d.discovered, str("hw.type", "gpu"), str("hw.state", st))
	}
}

// healthState is what hw.status is decided from, beyond the scrape's own
// calls: whether the GPU is lost (and why), and the ECC and row-remap
// signals of the last interval.
type healthState struct {
	lost       bool
	lostReason string

	prevUncorr     uint64
	havePrevUnc    bool
	newUncorrected bool // uncorrected ECC rose during the last interval
	remapBad       bool // a row remap is pending or has failed
}
