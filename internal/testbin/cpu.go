package testbin

import (
	"syscall"
	"time"
)

// ProcessCPU is the CPU time (user and system, all threads) this process has
// used: what benchmarks report beside wall time, since work spread over
// goroutines on two cores hides its cost in ns/op.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
