// Package bufpool is the gateway's pool of large byte buffers, shared by
// the components that copy whole requests: tenant_auth's gRPC codec (a
// request's contiguous copy) and tenant_otlp_http (the body of a request to
// the store).
//
// It has a tier at every power of two from 16 KiB to 8 MiB, so a buffer is
// at most twice what it holds. gRPC's own default pool jumps from 32 KiB to
// 1 MiB (a 40 KB agent request held 1 MiB: 620 MiB at 1,000 tenants), and a
// fresh buffer per request costs the zeroing, the page faults and the
// garbage collections that its allocation brings closer.
package bufpool

import "google.golang.org/grpc/mem"

// Large is the pool. Get returns a buffer of the asked length (its
// capacity may be larger); Put gives it back once nothing reads it.
var Large = mem.NewTieredBufferPool(16<<10, 32<<10, 64<<10, 128<<10, 256<<10, 512<<10, 1<<20, 2<<20, 4<<20, 8<<20)
