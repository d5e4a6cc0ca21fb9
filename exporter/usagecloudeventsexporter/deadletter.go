package usagecloudeventsexporter

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Reasons an event is dead-lettered (the reason attribute of
// otelcol_exporter_usage_dead_letter_records).
const (
	// reasonRefused: the billing system answered 400, 413, 415 or 422 to
	// the event alone.
	reasonRefused = "refused"
	// reasonConflict: the event's id is bound to another value.
	reasonConflict = "conflict"
)

// deadLetterLine is one line of the dead-letter file (README.md,
// "Dead-letter file").
type deadLetterLine struct {
	// Time is when the line was written (RFC 3339, UTC).
	Time   string `json:"time"`
	Reason string `json:"reason"`
	// Status and Answer are the billing system's status code and the
	// first KiB of its answer (refused only).
	Status int    `json:"status,omitempty"`
	Answer string `json:"answer,omitempty"`
	// Settled is the value the id is bound to (conflict only).
	Settled *settledLine `json:"settled,omitempty"`
	// Event is the event exactly as it was (or would have been) sent.
	Event json.RawMessage `json:"event"`
}

// settledLine is the value an id is bound to, as a dead-letter line
// shows it.
type settledLine struct {
	SHA256 string `json:"sha256"`
	State  string `json:"state"`
	Time   string `json:"time,omitempty"`
}

// deadLetter is the append-only file of the events the billing system
// will never take. A line is on disk (fsync) before the event counts as
// settled; a crash between the two writes the line again on the retry.
type deadLetter struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

func openDeadLetter(path string) (*deadLetter, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// 0600: the lines carry tenants' usage.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &deadLetter{path: path, f: f}, nil
}

func (d *deadLetter) append(line deadLetterLine, now time.Time) error {
	line.Time = now.UTC().Format(time.RFC3339Nano)
	b, err := json.Marshal(line)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.f.Write(append(b, '\n')); err != nil {
		return err
	}
	return d.f.Sync()
}

func (d *deadLetter) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.f.Close()
}
