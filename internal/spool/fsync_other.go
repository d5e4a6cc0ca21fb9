//go:build !linux

package spool

import "os"

// syncer is the plain fsync where Linux AIO does not exist.
type syncer struct{}

func newSyncer() *syncer              { return &syncer{} }
func (*syncer) async() bool           { return false }
func (*syncer) sync(f *os.File) error { return f.Sync() }
func (*syncer) close()                {}
