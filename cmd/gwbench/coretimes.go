package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// coreTimes is one CPU's line of /proc/stat: the time it spent in each
// state since boot, in clock ticks.
type coreTimes struct {
	user, nice, system, idle, iowait, irq, softirq, steal uint64
}

// CoreShares is how a core spent a window, in percent of it: idle
// (nothing to run, or waiting for I/O), stolen by the hypervisor (the
// host ran something else on it), and handling interrupts. On a shared
// host, a round whose gateway core lost time to steal ran slower than its
// CPU column says.
type CoreShares struct {
	Idle  float64 `json:"idle_percent"`
	Steal float64 `json:"steal_percent"`
	IRQ   float64 `json:"irq_percent"`
}

func (t coreTimes) total() uint64 {
	return t.user + t.nice + t.system + t.idle + t.iowait + t.irq + t.softirq + t.steal
}

// since is the window from t0 to t as shares of it.
func (t coreTimes) since(t0 coreTimes) CoreShares {
	d := float64(t.total() - t0.total())
	if d <= 0 {
		return CoreShares{}
	}
	pct := func(a, b uint64) float64 { return 100 * float64(a-b) / d }
	return CoreShares{
		Idle:  pct(t.idle+t.iowait, t0.idle+t0.iowait),
		Steal: pct(t.steal, t0.steal),
		IRQ:   pct(t.irq+t.softirq, t0.irq+t0.softirq),
	}
}

// readCoreTimes reads cpu's line of /proc/stat.
func readCoreTimes(cpu int) (coreTimes, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return coreTimes{}, err
	}
	defer func() { _ = f.Close() }()
	return parseCoreTimes(bufio.NewScanner(f), cpu)
}

func parseCoreTimes(sc *bufio.Scanner, cpu int) (coreTimes, error) {
	name := "cpu" + strconv.Itoa(cpu)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != name {
			continue
		}
		if len(fields) < 9 {
			return coreTimes{}, fmt.Errorf("/proc/stat: %s has %d fields, want at least 8 times", name, len(fields)-1)
		}
		var v [8]uint64
		for i := range v {
			n, err := strconv.ParseUint(fields[i+1], 10, 64)
			if err != nil {
				return coreTimes{}, fmt.Errorf("/proc/stat: %s: %w", name, err)
			}
			v[i] = n
		}
		return coreTimes{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]}, nil
	}
	if err := sc.Err(); err != nil {
		return coreTimes{}, err
	}
	return coreTimes{}, fmt.Errorf("/proc/stat: no %s line", name)
}
