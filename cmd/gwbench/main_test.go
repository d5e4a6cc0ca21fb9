package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDiskAgentCounts(t *testing.T) {
	for _, c := range []struct {
		list    []int
		tenants int
		want    []int
	}{
		{[]int{256, 8}, 8, []int{256, 8}},    // both: every tenant has an agent
		{[]int{256, 8}, 200, []int{256}},     // 8 agents cannot carry 200 tenants
		{[]int{256, 8}, 1000, []int{1000}},   // one agent per tenant
		{[]int{8, 256, 8}, 8, []int{8, 256}}, // the list's order, once each
		{nil, 10, []int{10}},
	} {
		require.Equal(t, c.want, diskAgentCounts(c.list, c.tenants), "%v at %d tenants", c.list, c.tenants)
	}
}
