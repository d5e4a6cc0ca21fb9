//go:build linux && !cgo

package spool

import "errors"

// fsyncThreadsFD: without cgo there are no threads outside the runtime's,
// and the syncer uses Linux AIO.
func fsyncThreadsFD() (int, error) { return -1, errors.New("built without cgo") }
