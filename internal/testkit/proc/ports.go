package proc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Ports for child processes come from a range the kernel never hands out
// for outgoing connections (below its ephemeral range), and each is held by
// an exclusive lock on a file named after it for as long as the reservation
// lasts. Every process of this project (test binaries of parallel packages,
// the demo, the bench harness) takes its ports through here, so none of them
// can be given a port another holds, and no outgoing connection on the
// machine can take one between the reservation and the child's bind. The
// one remaining way to lose a port is a program outside this project
// binding it in that window: RetryBind covers that.

// lockDir holds one lock file per reserved port, shared by every process of
// the project on this machine.
var lockDir = filepath.Join(os.TempDir(), "otelcol-gpu-ports")

// Reservation is a port held by this process until Release (or exit).
type Reservation struct {
	Port int
	lock *os.File
}

// Addr is the port on loopback, host:port.
func (r *Reservation) Addr() string { return Addr(r.Port) }

// Release gives the port back. Reservations left unreleased end with the
// process (the kernel drops its file locks).
func (r *Reservation) Release() {
	if r.lock != nil {
		_ = r.lock.Close()
		r.lock = nil
	}
}

// Reserve finds a loopback TCP port outside the kernel's ephemeral range
// that no other user of this package holds and nothing listens on, and
// holds it.
func Reserve() (*Reservation, error) {
	lo, hi := reservableRange()
	if err := os.MkdirAll(lockDir, 0o777); err != nil {
		return nil, fmt.Errorf("proc: port lock directory: %w", err)
	}
	n := hi - lo + 1
	start := rand.IntN(n)
	for i := range n {
		port := lo + (start+i)%n
		r, err := tryReserve(port)
		if err != nil {
			return nil, err
		}
		if r != nil {
			return r, nil
		}
	}
	return nil, fmt.Errorf("proc: no free port in %d-%d", lo, hi)
}

// tryReserve returns nil, nil when the port is held elsewhere or in use.
func tryReserve(port int) (*Reservation, error) {
	f, err := os.OpenFile(filepath.Join(lockDir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("proc: port lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("proc: port lock: %w", err)
	}
	// Held by nobody of ours; is anything else listening there?
	l, err := net.Listen("tcp", Addr(port))
	if err != nil {
		_ = f.Close()
		return nil, nil //nolint:nilerr // in use: try the next one
	}
	_ = l.Close()
	return &Reservation{Port: port, lock: f}, nil
}

// reservableRange is the widest span of ports below the kernel's ephemeral
// range (above 10000, clear of well-known services), or above it where the
// range starts too low to leave room below.
func reservableRange() (lo, hi int) {
	ephLo, ephHi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			l, err1 := strconv.Atoi(f[0])
			h, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && l <= h {
				ephLo, ephHi = l, h
			}
		}
	}
	if ephLo-1-10000 >= 1000 {
		return 10000, ephLo - 1
	}
	return ephHi + 1, 65535
}

// Port reserves a port for the rest of the test.
func Port(t testing.TB) int {
	t.Helper()
	r, err := Reserve()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Release)
	return r.Port
}

// MustReserve reserves a port for the rest of the process (the demo and the
// bench harness, whose children live as long as they do).
func MustReserve() int {
	r, err := Reserve()
	if err != nil {
		panic(err) // loopback without a free port: nothing here can run
	}
	return r.Port
}

// Addr formats a loopback host:port.
func Addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// bindFailure is what a Go program (the collector, the store) prints when
// its listener's port is taken.
const bindFailure = "address already in use"

// RetryBind starts a process through start up to attempts times, for as long
// as it fails because one of its ports was taken by a program outside this
// project. start must reserve new ports on each call and return what it
// started (a *Proc, or a wrapper such as the store's) with the error of its
// readiness wait; logf says when a retry happens.
func RetryBind[P interface{ BindFailed() bool }](attempts int, logf func(format string, args ...any), start func() (P, error)) (P, error) {
	for i := 1; ; i++ {
		p, err := start()
		if err == nil || i == attempts || !p.BindFailed() {
			return p, err
		}
		logf("a port was taken (attempt %d of %d), retrying with new ports: %v", i, attempts, err)
	}
}

// BindFailed reports whether the process exited because a port it was given
// was in use.
func (p *Proc) BindFailed() bool {
	return p != nil && p.Exited() && strings.Contains(p.Output(), bindFailure)
}
