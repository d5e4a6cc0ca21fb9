// Package proc runs child processes for the demo and the bench harness:
// each in its own process group with its output in a log file, stopped with
// SIGTERM and a deadline, and measured from /proc (CPU time, peak RSS).
package proc

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a started child process.
type Proc struct {
	Name string
	Log  string // where its stdout and stderr go (a file, or "its log")
	cmd  *exec.Cmd
	done chan struct{}
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

// StartWriter is Start with the output going to out.
func StartWriter(name, bin string, args, env []string, out io.Writer) (*Proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: "its log", cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

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

// Stop sends SIGTERM and waits; past the deadline it kills the process
// group and reports that it had to.
func (p *Proc) Stop(deadline time.Duration) error {
	if p.Exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(deadline):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.Name, deadline)
	}
}

// WaitHTTPOK polls url until it answers 200, the process exits, ctx ends or
// timeout passes.
func (p *Proc) WaitHTTPOK(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited at start; see %s", p.Name, p.Log)
		case <-ctx.Done():
			return fmt.Errorf("%s: %s did not answer 200 within %s; see %s", p.Name, url, timeout, p.Log)
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

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
