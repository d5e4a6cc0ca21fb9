package main

import (
	"bufio"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseCounts(t *testing.T) {
	got, err := parseCounts("0, 8,8,,256", 0)
	require.NoError(t, err)
	require.Equal(t, []int{0, 8, 256}, got) // in order, once each
	_, err = parseCounts("0,8", 1)
	require.ErrorContains(t, err, `"0" is not a count of at least 1`)
	_, err = parseCounts("eight", 0)
	require.ErrorContains(t, err, `"eight"`)
}

// The rows with one request per agent keep their keys of earlier runs; a
// capped row names its cap.
func TestDiskKey(t *testing.T) {
	require.Equal(t, "grpc/8", diskKey("grpc", 8, 0))
	require.Equal(t, "http/1000/in-flight-8", diskKey("http", 1000, 8))
	require.Equal(t, 256, diskAgents(8))
	require.Equal(t, 1000, diskAgents(1000))
}

func TestCoreShares(t *testing.T) {
	stat := func(s string) coreTimes {
		c, err := parseCoreTimes(bufio.NewScanner(strings.NewReader(s)), 0)
		require.NoError(t, err)
		return c
	}
	// user nice system idle iowait irq softirq steal guest guest_nice
	t0 := stat("cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 100 0 50 1000 10 5 5 20 0 0\ncpu1 1 1 1 1 1 1 1 1 0 0\n")
	t1 := stat("cpu0 160 0 70 1005 15 7 8 35 0 0\n")
	// 110 ticks: 60 user, 20 system, 10 idle and iowait, 5 irq and softirq, 15 steal
	got := t1.since(t0)
	require.InDelta(t, 100*10.0/110, got.Idle, 1e-9)
	require.InDelta(t, 100*15.0/110, got.Steal, 1e-9)
	require.InDelta(t, 100*5.0/110, got.IRQ, 1e-9)

	_, err := parseCoreTimes(bufio.NewScanner(strings.NewReader("cpu0 1 2 3\n")), 0)
	require.ErrorContains(t, err, "cpu0 has 3 fields")
	_, err = parseCoreTimes(bufio.NewScanner(strings.NewReader("cpu1 1 2 3 4 5 6 7 8\n")), 0)
	require.ErrorContains(t, err, "no cpu0 line")
	real, err := readCoreTimes(0)
	require.NoError(t, err)
	require.Positive(t, real.total())
}
