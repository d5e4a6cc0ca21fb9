// Package proc runs the real processes of the tests, the demo and the bench
// harness: each child in its own process group, its output kept (in a log
// file, a writer of the caller's, and the last part in memory), stopped with
// SIGTERM and a deadline, measured from /proc (CPU time, peak RSS); and
// loopback ports reserved so that no two of them, and no outgoing
// connection, are ever given the same one (ports.go).
//
// It is test and demo equipment: nothing in the distribution imports it.
package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a started child process.
type Proc struct {
	Name string
	Log  string // where its output goes: a file, or "its output"
	cmd  *exec.Cmd
	tail *tailBuffer
	done chan struct{}
	err  error // the exit error, once done is closed
}

// Start runs bin with args and the current environment plus env, its output
// in the file log.
func Start(name, bin string, args, env []string, log string) (*Proc, error) {
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	p, err := StartWriter(name, bin, args, env, f)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	p.Log = log
	go func() { <-p.done; _ = f.Close() }()
	return p, nil
}

// StartWriter is Start with the output going to out (nil: kept in memory only).
func StartWriter(name, bin string, args, env []string, out io.Writer) (*Proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	tail := &tailBuffer{max: tailSize}
	var w io.Writer = tail
	if out != nil {
		w = io.MultiWriter(out, tail)
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: "its output", cmd: cmd, tail: tail, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// Output is what the process has written, its last tailSize bytes.
func (p *Proc) Output() string { return p.tail.String() }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill ends the process group at once and waits for the process.
func (p *Proc) Kill() {
	if !p.Exited() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Wait waits up to timeout for the process to end and returns its exit
// error (nil for a clean exit).
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s still running after %s", p.Name, timeout)
	}
}

// Stop sends SIGTERM and waits for the exit, whose error it returns. Past
// the deadline it kills the process group and says it had to; a process
// that had already ended is an error too (it was meant to be running).
func (p *Proc) Stop(deadline time.Duration) error {
	if p.Exited() {
		return fmt.Errorf("%s had already exited: %w", p.Name, p.err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(deadline):
		p.Kill()
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.Name, deadline)
	}
}

// WaitHTTPOK polls url until it answers 200, the process exits, ctx ends or
// timeout passes.
func (p *Proc) WaitHTTPOK(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %s", url, resp.Status)
		}
		last = err
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before %s answered (%w); see %s", p.Name, url, p.err, p.Log)
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("%s: %s did not answer 200 within %s; see %s", p.Name, url, timeout, p.Log), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// CPU is the user+system CPU time the process has used (/proc/<pid>/stat).
func (p *Proc) CPU() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
	if err != nil {
		return 0
	}
	// The fields after the command name (which may hold spaces) start after ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const userHZ = 100
	return time.Duration(ut+st) * time.Second / userHZ
}

// PeakRSSMiB is the process's high-water resident set (VmHWM).
func (p *Proc) PeakRSSMiB() float64 {
	return PeakRSSMiB(p.Pid())
}

// PeakRSSMiB is a process's high-water resident set (VmHWM), 0 if unknown.
func PeakRSSMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// SelfCPU is the CPU time (user and system, all threads) this process has
// used: what benchmarks report beside wall time, since work spread over
// goroutines on two cores hides its cost in ns/op.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tailSize is how much of a child's output is kept in memory: enough for
// the start-up errors and the last minutes of a collector's log.
const tailSize = 4 << 20

// tailBuffer keeps the last max bytes written to it (trimmed when it holds
// twice that, so a chatty child costs one copy per max bytes, not per write).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 2*b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf[max(0, len(b.buf)-b.max):])
}

// Memory is a process's resident memory now, in MiB: RSS split into its
// anonymous (the process's own: heap, stacks) and file-backed (pages of the
// executable and of mapped files) parts, and PSS (each shared page divided
// among the processes mapping it), with the same split.
type Memory struct {
	RSS, RSSAnon, RSSFile float64
	PSS, PSSAnon, PSSFile float64
}

// Memory reads /proc/<pid>/status and smaps_rollup; fields it cannot read
// stay 0.
func (p *Proc) Memory() Memory { return MemoryOf(p.Pid()) }

// MemoryOf is Memory for any pid.
func MemoryOf(pid int) Memory {
	var m Memory
	read := func(file string, fields map[string]*float64) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
		if err != nil {
			return
		}
		for _, l := range strings.Split(string(b), "\n") {
			name, rest, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			if dst, ok := fields[name]; ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
				*dst = kb / 1024
			}
		}
	}
	read("status", map[string]*float64{"VmRSS": &m.RSS, "RssAnon": &m.RSSAnon, "RssFile": &m.RSSFile})
	read("smaps_rollup", map[string]*float64{"Pss": &m.PSS, "Pss_Anon": &m.PSSAnon, "Pss_File": &m.PSSFile})
	return m
}
