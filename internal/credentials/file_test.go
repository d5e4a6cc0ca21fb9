package credentials

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

func TestFileReloadsAndKeepsTheLastGood(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.yaml")
	require.NoError(t, os.WriteFile(path, []byte("credentials:\n"+credLine("vm-1", "acme", "t1")), 0o600))
	var ok, failed atomic.Int64
	f := NewFile(path, 10*time.Millisecond, zap.NewNop(), func(good bool) {
		if good {
			ok.Add(1)
		} else {
			failed.Add(1)
		}
	})
	require.NoError(t, f.Start())
	defer f.Stop()
	_, found := f.Set().Lookup("t1")
	require.True(t, found)

	// A revocation is seen without a restart.
	require.NoError(t, os.WriteFile(path, []byte("credentials:\n"+credLine("vm-2", "acme", "t2")), 0o600))
	require.Eventually(t, func() bool { _, found := f.Set().Lookup("t1"); return !found }, 5*time.Second, 5*time.Millisecond)

	// A broken file keeps the last good set.
	require.NoError(t, os.WriteFile(path, []byte("credentials: [\n"), 0o600))
	require.Eventually(t, func() bool { return failed.Load() > 0 }, 5*time.Second, 5*time.Millisecond)
	_, found = f.Set().Lookup("t2")
	require.True(t, found)
	require.Equal(t, int64(2), ok.Load())
}

func TestFileMustLoadAtStart(t *testing.T) {
	f := NewFile(filepath.Join(t.TempDir(), "missing.yaml"), time.Second, zap.NewNop(), func(bool) {})
	require.ErrorContains(t, f.Start(), "read credentials_file")
	f.Stop()
	require.Nil(t, f.Set())
}
