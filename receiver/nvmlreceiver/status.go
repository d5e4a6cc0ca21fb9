package nvmlreceiver

import (
	"fmt"
	"strings"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.uber.org/zap"
)

const (
	stateOK       = "ok"
	stateDegraded = "degraded"
	stateFailed   = "failed"
)

var hwStates = [...]string{stateOK, stateDegraded, stateFailed}

// failAfterScrapes is how many consecutive scrapes a GPU must answer
// nothing (every call ERROR_UNKNOWN or ERROR_TIMEOUT, or no return within
// call_timeout) before it is failed: one slow scrape (a GSP stall) is not a
// failure, two in a row are.
const failAfterScrapes = 2

// verdict is a GPU's health: its hw.status state and why.
type verdict struct {
	state, reason string
}

var verdictOK = verdict{stateOK, reasonNone}

func (v verdict) rank() int {
	switch v.state {
	case stateFailed:
		return 2
	case stateDegraded:
		return 1
	default:
		return 0
	}
}

// Reasons of nvidia.gpu.health. XID reasons are "xid_<code>".
const (
	reasonNone           = "none"
	reasonLost           = "gpu_lost"
	reasonResetRequired  = "reset_required"
	reasonUnknownErrors  = "unknown_errors"
	reasonUnanswered     = "unanswered"
	reasonRemapPending   = "remap_pending"
	reasonRemapFailed    = "remap_failed"
	reasonUncorrectedECC = "uncorrected_ecc"
	reasonActionReset    = "recovery_action_reset"
	reasonActionReboot   = "recovery_action_reboot"
	reasonActionDrain    = "recovery_action_drain"
	reasonUnopened       = "unopened"
)

// What the customer should do, per reason (the log record on a verdict
// change carries it; the README has the same table).
var reasonActions = map[string]string{
	reasonNone:           "nothing",
	reasonLost:           "reset the GPU (release file, then nvidia-smi -r, or through the hypervisor); reboot the VM if it does not come back; ask for a replacement if it recurs",
	reasonResetRequired:  "reset the GPU (release file, then nvidia-smi -r)",
	reasonUnknownErrors:  "the GPU answers only errors (often after XID 119, a GSP timeout): drain it and reset it; reboot the VM if the reset fails",
	reasonUnanswered:     "NVML calls on the GPU do not return (GSP or driver stuck): drain it and reset it; reboot the VM if the reset hangs",
	reasonRemapPending:   "a memory row remap is pending: drain the GPU and reset it at the next chance to apply it",
	reasonRemapFailed:    "a memory row remap failed: drain the GPU and ask for a replacement",
	reasonUncorrectedECC: "uncorrected memory errors: the affected job may have been killed; drain the GPU and reset it",
	reasonActionReset:    "the driver asks for a GPU reset: drain the GPU and reset it",
	reasonActionReboot:   "the driver asks for a reboot: drain the VM and reboot it",
	reasonActionDrain:    "the driver asks to drain the GPU (P2P traffic, or work, then a reset): move work off it and reset it",
	reasonUnopened:       "the driver cannot open the GPU: reset it (release file, then nvidia-smi -r); reboot the VM if it does not come back",
}

// xidVerdicts are the XIDs that change a GPU's verdict, after the
// resolution buckets of NVIDIA's XID catalogue: 79 (fallen off the bus)
// fails it; the ones whose immediate action is a GPU reset (46 GPU stopped
// processing, 48 double-bit ECC, 62 micro-controller halt, 64 row remap
// failure, 74 NVLink, 95 uncontained ECC, 119 GSP RPC timeout, 120 GSP
// error) and the memory ones that need a reset to take effect or a look
// (63 row remap pending, 92 high single-bit rate, 94 contained ECC)
// degrade it. 154 (recovery action changed) is the recovery action field's
// event: the field decides where the driver answers it, the XID where it
// does not. Each holds until the GPU is reset (see decide).
var xidVerdicts = func() map[uint64]verdict {
	m := map[uint64]verdict{79: {stateFailed, "xid_79"}}
	for _, c := range []uint64{46, 48, 62, 63, 64, 74, 92, 94, 95, 119, 120, 154} {
		m[c] = verdict{stateDegraded, fmt.Sprintf("xid_%d", c)}
	}
	return m
}()

var xidActions = map[uint64]string{
	79:  "the GPU fell off the bus: reset it (release file, then nvidia-smi -r, or through the hypervisor); reboot the VM if it does not come back",
	46:  "the GPU stopped processing: drain it and reset it",
	48:  "double-bit ECC error: drain the GPU and reset it",
	62:  "GPU micro-controller halted: drain the GPU and reset it",
	63:  "a row remap is pending: reset the GPU at the next chance to apply it",
	64:  "row remapping failed: drain the GPU and ask for a replacement",
	74:  "NVLink error: drain the GPU and reset it; ask for service if it recurs",
	92:  "high single-bit ECC rate: watch it; ask for service if it persists",
	94:  "contained ECC error: restart the affected job; reset the GPU at the next chance",
	95:  "uncontained ECC error: drain the GPU and reset it",
	119: "GSP RPC timeout: drain the GPU and reset it; reboot the VM if the reset fails",
	120: "GSP error: drain the GPU and reset it",
	154: "the driver changed its recovery action: follow it (reset or reboot)",
}

// action is what the customer should do about v.
func (v verdict) action() string {
	var code uint64
	if _, err := fmt.Sscanf(v.reason, "xid_%d", &code); err == nil {
		if a, ok := xidActions[code]; ok {
			return a
		}
	}
	if a, ok := reasonActions[v.reason]; ok {
		return a
	}
	return reasonActions[reasonNone]
}

// actionVerdict is the verdict of the driver's GPU recovery action field
// (NVML_FI_DEV_GET_GPU_RECOVERY_ACTION).
func actionVerdict(a uint64) verdict {
	switch nvml.DeviceGpuRecoveryAction(a) {
	case nvml.GPU_RECOVERY_ACTION_NONE:
		return verdictOK
	case nvml.GPU_RECOVERY_ACTION_GPU_RESET, nvml.GPU_RECOVERY_ACTION_BUS_RESET:
		return verdict{stateFailed, reasonActionReset}
	case nvml.GPU_RECOVERY_ACTION_NODE_REBOOT, nvml.GPU_RECOVERY_ACTION_SYSTEM_REBOOT:
		return verdict{stateFailed, reasonActionReboot}
	default: // DRAIN_P2P, DRAIN_AND_RESET, RECOVER_IMEX_DOMAIN, and later ones
		return verdict{stateDegraded, reasonActionDrain}
	}
}

// healthState is what a GPU's verdict is decided from, beyond the scrape's
// own calls. Owned by the worker.
type healthState struct {
	lost       bool
	lostReason string

	prevUncorr     uint64
	havePrevUnc    bool
	newUncorrected bool // uncorrected ECC rose during the last interval
	eccWentBack    bool // the volatile uncorrected count went backwards: the GPU was reset
	remapPending   bool
	remapFailed    bool

	// action is the recovery action field this scrape (haveAction: the
	// driver answered it).
	action     uint64
	haveAction bool

	// held is the verdict of an event (an XID, a rise of uncorrected ECC)
	// that holds until the GPU's state says it was cleared; actionSeen:
	// the recovery action field was not NONE since it was set.
	held       verdict
	actionSeen bool

	// This scrape's answers: calls that succeeded, and calls answered
	// ERROR_UNKNOWN or ERROR_TIMEOUT.
	answered, unanswered int
}

// countReturn tallies a call's return for the "answers nothing" test.
func (h *healthState) countReturn(ret nvml.Return) {
	switch ret {
	case nvml.SUCCESS:
		h.answered++
	case nvml.ERROR_UNKNOWN, nvml.ERROR_TIMEOUT:
		h.unanswered++
	}
}

// decide derives the GPU's verdict at the end of its scrape. Live causes
// (lost, answering nothing, the recovery action field, a row remap pending
// or failed) last as long as the GPU shows them; an XID or a rise of
// uncorrected ECC is held until the GPU is reset, which the receiver sees
// as the GPU coming back with a new handle (recovery, or NVML initialised
// anew after the release file), the recovery action field going back to
// NONE after it asked for an action, or the volatile uncorrected ECC count
// starting over. The worst cause wins; among equals, the first below.
func (d *device) decide(x xidInterval) verdict {
	h := &d.health
	if h.lost {
		r := reasonLost
		if h.lostReason == returnName(nvml.ERROR_RESET_REQUIRED) {
			r = reasonResetRequired
		}
		return verdict{stateFailed, r}
	}
	silent := h.answered == 0 && h.unanswered > 0
	h.answered, h.unanswered = 0, 0
	runs := int32(0)
	if silent {
		runs = d.silentRuns.Add(1)
	} else {
		d.silentRuns.Store(0)
	}
	if h.eccWentBack {
		h.held, h.actionSeen, h.eccWentBack = verdict{}, false, false
	}
	if h.haveAction {
		if h.action != uint64(nvml.GPU_RECOVERY_ACTION_NONE) {
			h.actionSeen = true
		} else if h.actionSeen {
			h.held, h.actionSeen = verdict{}, false
		}
	}
	if v, ok := xidVerdicts[x.code]; ok && (x.code != 154 || !h.haveAction) && v.rank() > h.held.rank() {
		h.held, h.actionSeen = v, false
	}
	if h.newUncorrected && h.held.rank() < 1 {
		h.held, h.actionSeen = verdict{stateDegraded, reasonUncorrectedECC}, false
	}
	best := verdictOK
	consider := func(v verdict) {
		if v.rank() > best.rank() {
			best = v
		}
	}
	if runs >= failAfterScrapes {
		consider(verdict{stateFailed, reasonUnknownErrors})
	}
	if h.haveAction {
		consider(actionVerdict(h.action))
	}
	consider(h.held)
	if h.remapFailed {
		consider(verdict{stateDegraded, reasonRemapFailed})
	}
	if h.remapPending {
		consider(verdict{stateDegraded, reasonRemapPending})
	}
	if silent && best.rank() < 2 {
		// Not failed yet: the verdict before the silence stands.
		if last := d.verdict.Load(); last != nil {
			best = *last
		}
	}
	return best
}

// report makes v the verdict the GPU's worker decided: hw.status into its
// buffer, and v kept for the scrape (settle) and published for the scrape
// to use while the GPU is silent.
func (d *device) report(v verdict) {
	d.emitVerdict(v)
	d.decided, d.hasVerdict = v, true
	if last := d.verdict.Load(); last == nil || *last != v {
		d.verdict.Store(&v)
	}
}

// reportUnanswered is the verdict of a GPU whose worker did not answer this
// scrape, written by the scrape into stand, the GPU's stand-in: failed
// (unanswered) from the failAfterScrapes-th scrape in a row, its verdict
// before the silence until then. Runs on the scrape's goroutine: it reads
// only what the worker publishes atomically.
func (d *device) reportUnanswered(stand *device) {
	v := verdictOK
	if last := d.verdict.Load(); last != nil {
		v = *last
	}
	if d.silentRuns.Add(1) >= failAfterScrapes {
		v = verdict{stateFailed, reasonUnanswered}
	}
	stand.emitVerdict(v)
	stand.decided, stand.hasVerdict, stand.standFor = v, true, d
}

// settle runs on the scrape's goroutine for every GPU it reports (out: the
// GPU, or its stand-in), and compares the verdict with the one the scrapes
// last delivered for its UUID (reported: kept by the session, so a GPU
// found anew after a release is compared with what was delivered before
// it): on a change, the previous reason's series gets a 0 (a
// series that stops would keep its last 1 for a store's lookback, and a
// store would hold two current reasons), and a health event is queued. The
// comparison is with what was delivered, not what a worker decided, so a
// verdict a late worker decided after its scrape gave up is not lost.
func (d *device) settle(out *device, reported map[string]verdict) {
	v := out.decided
	prev, ok := reported[d.ent.hwID]
	if !ok {
		prev = verdictOK
	}
	if prev == v {
		return
	}
	reported[d.ent.hwID] = v
	if prev.reason != reasonNone {
		out.emit(mStatus, d.ent, 0, out.discovered, str("hw.type", "gpu"), str("hw.state", prev.state), str("nvidia.gpu.health.reason", prev.reason))
	}
	out.changes = append(out.changes, healthChange{ent: d.ent, from: prev, to: v, at: time.Now()})
	lvl := zap.InfoLevel
	if v.rank() > prev.rank() {
		lvl = zap.WarnLevel
	}
	d.drv.logger.Log(lvl, "GPU health changed", zap.String("hw.id", d.ent.hwID), zap.String("hw.name", d.ent.hwName),
		zap.String("from", prev.state+" ("+prev.reason+")"), zap.String("to", v.state+" ("+v.reason+")"),
		zap.String("action", v.action()))
}

// emitVerdict writes hw.status for v: one point per state, 1 for the
// current one, which says why unless it is ok, and 0 for the others.
func (d *device) emitVerdict(v verdict) {
	for _, st := range hwStates {
		switch {
		case st != v.state:
			d.emit(mStatus, d.ent, 0, d.discovered, str("hw.type", "gpu"), str("hw.state", st))
		case v.reason == reasonNone:
			d.emit(mStatus, d.ent, 1, d.discovered, str("hw.type", "gpu"), str("hw.state", st))
		default:
			d.emit(mStatus, d.ent, 1, d.discovered, str("hw.type", "gpu"), str("hw.state", st), str("nvidia.gpu.health.reason", v.reason))
		}
	}
}

// healthChange is one verdict change, sent as a log record by the scrape
// that reports it.
type healthChange struct {
	ent      *entity
	from, to verdict
	at       time.Time
}

// sendHealthEvents settles this scrape's verdicts and sends their changes
// to the logs pipeline, when there is one, as one batch: event name
// nvidia.gpu.health, severity WARN for a worse verdict (ERROR for failed),
// INFO for a better one. Bounded by call_timeout.
func (s *session) sendHealthEvents(devices []*device) {
	var changes []healthChange
	if s.reported == nil {
		s.reported = map[string]verdict{}
	}
	for _, d := range devices {
		if d.hasVerdict {
			if d.standFor != nil {
				d.standFor.settle(d, s.reported)
			} else {
				d.settle(d, s.reported)
			}
		}
		changes = append(changes, d.changes...)
		d.changes = d.changes[:0]
	}
	next := s.logs.Load()
	if next == nil || len(changes) == 0 {
		return
	}
	ld, records := newLogBatch()
	for _, c := range changes {
		lr := records.AppendEmpty()
		ts := pcommon.NewTimestampFromTime(c.at)
		lr.SetTimestamp(ts)
		lr.SetObservedTimestamp(ts)
		lr.SetEventName("nvidia.gpu.health")
		switch {
		case c.to.state == stateFailed:
			lr.SetSeverityNumber(plog.SeverityNumberError)
			lr.SetSeverityText("ERROR")
		case c.to.rank() > c.from.rank() || c.to.state == stateDegraded:
			lr.SetSeverityNumber(plog.SeverityNumberWarn)
			lr.SetSeverityText("WARN")
		default:
			lr.SetSeverityNumber(plog.SeverityNumberInfo)
			lr.SetSeverityText("INFO")
		}
		lr.Body().SetStr(fmt.Sprintf("%s (%s) %s -> %s (%s): %s", c.ent.hwName, c.ent.hwID, c.from.state,
			c.to.state, strings.ReplaceAll(c.to.reason, "_", " "), c.to.action()))
		a := lr.Attributes()
		a.PutStr("hw.id", c.ent.hwID)
		a.PutStr("hw.name", c.ent.hwName)
		a.PutStr("hw.state", c.to.state)
		a.PutStr("nvidia.gpu.health.reason", c.to.reason)
		a.PutStr("nvidia.gpu.health.previous_state", c.from.state)
		a.PutStr("nvidia.gpu.health.previous_reason", c.from.reason)
		a.PutStr("nvidia.gpu.health.action", c.to.action())
	}
	s.sendLogs(*next, ld, s.cfg.callTimeout(), "GPU health records")
}
