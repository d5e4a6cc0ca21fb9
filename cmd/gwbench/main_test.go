package main

import (
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
