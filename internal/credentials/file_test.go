package credentials

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
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

// clock is a test's time, moved by hand.
type clock struct{ t atomic.Pointer[time.Time] }

func (c *clock) Now() time.Time          { return *c.t.Load() }
func (c *clock) set(t time.Time)         { c.t.Store(&t) }
func (c *clock) advance(d time.Duration) { c.set(c.Now().Add(d)) }

// heldFile is a File whose loop the test drives: its clock is moved and
// its polls are made by hand (the ticker's hour never comes).
type heldFile struct {
	*File
	clock  *clock
	logs   *observer.ObservedLogs
	health []error
}

func holdFile(t *testing.T, path string, maxStale time.Duration) *heldFile {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	h := &heldFile{clock: &clock{}, logs: logs}
	h.clock.set(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	h.File = NewFile(path, time.Hour, zap.New(core), func(bool) {}).WithMaxStale(maxStale).
		WithHealth(func(err error) { h.health = append(h.health, err) })
	h.now = h.clock.Now
	require.NoError(t, h.Start())
	t.Cleanup(h.Stop)
	return h
}

// pollFor polls every 5 s of the clock for d, as the reload loop would.
func (h *heldFile) pollFor(d time.Duration) {
	for end := h.clock.Now().Add(d); h.clock.Now().Before(end); {
		h.clock.advance(5 * time.Second)
		h.poll()
	}
}

func (h *heldFile) errorLines() []observer.LoggedEntry {
	return h.logs.FilterLevelExact(zap.ErrorLevel).All()
}

func TestFileMaxStaleBoundsTheLastGoodSet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.yaml")
	good := "credentials:\n" + credLine("vm-1", "acme", "t1") + credLine("vm-2", "acme", "t2")
	require.NoError(t, os.WriteFile(path, []byte(good), 0o600))
	f := holdFile(t, path, 10*time.Minute)
	c, found := f.Set().Lookup("t1")
	require.True(t, found)
	require.NoError(t, f.Err())
	require.Zero(t, f.FailingFor())

	// The edit that revoked vm-2 broke the file: the last good set holds,
	// loudly, within the bound.
	require.NoError(t, os.WriteFile(path, []byte("credentials:\n"+credLine("vm-1", "Acme", "t1")), 0o600))
	f.clock.advance(5 * time.Second)
	f.poll()
	require.ErrorContains(t, f.Err(), `tenant id "Acme"`)
	require.Len(t, f.health, 1, "health is told when the failure starts")
	require.ErrorContains(t, f.health[0], `tenant id "Acme"`)
	lines := f.errorLines()
	require.Len(t, lines, 1, "a failure is logged at Error level at once")
	require.Equal(t, path, lines[0].ContextMap()["file"])
	require.Contains(t, lines[0].ContextMap()["error"], `tenant id "Acme"`)
	require.Contains(t, lines[0].Message, "keeping the last good credentials")

	f.pollFor(10 * time.Minute)
	require.Equal(t, 10*time.Minute, f.FailingFor(), "counted from the first failed read")
	for _, token := range []string{"t1", "t2"} {
		_, found = f.Set().Lookup(token)
		require.True(t, found, "up to max stale the last good set holds")
	}
	require.NoError(t, f.Set().Unavailable())
	require.True(t, f.Set().Current(c))
	require.Len(t, f.health, 1, "health is told once a failure")
	lines = f.errorLines()
	require.Len(t, lines, 11, "then logged once a minute")
	for i := 1; i < len(lines); i++ {
		require.Equal(t, time.Minute, lines[i].ContextMap()["failing_for"].(time.Duration)-lines[i-1].ContextMap()["failing_for"].(time.Duration))
	}

	// Past it nothing is found, and the set says why.
	f.pollFor(5 * time.Second)
	for _, token := range []string{"t1", "t2"} {
		_, found = f.Set().Lookup(token)
		require.False(t, found, "past max stale no credential is taken, the revoked one included")
	}
	require.False(t, f.Set().Current(c), "sessions end too")
	require.Zero(t, f.Set().Len())
	err := f.Set().Unavailable()
	require.ErrorContains(t, err, path)
	require.ErrorContains(t, err, `tenant id "Acme"`)
	require.ErrorContains(t, err, "longer than the 10m0s allowed")
	lines = f.errorLines()
	require.Len(t, lines, 12, "the change is logged at once")
	require.Contains(t, lines[11].Message, "refusing every credential")
	f.pollFor(time.Hour)
	_, found = f.Set().Lookup("t1")
	require.False(t, found)
	require.Len(t, f.errorLines(), 12+60, "still once a minute")
	require.Len(t, f.health, 1)

	// A vanished file is failing too: the error follows the latest read.
	require.NoError(t, os.Remove(path))
	f.pollFor(5 * time.Second)
	require.ErrorContains(t, f.Err(), "no such file")
	require.ErrorContains(t, f.Set().Unavailable(), "no such file")

	// Repaired, with the content it had: the good set is back, at once.
	require.NoError(t, os.WriteFile(path, []byte(good), 0o600))
	f.pollFor(5 * time.Second)
	require.NoError(t, f.Err())
	require.Zero(t, f.FailingFor())
	require.NoError(t, f.Set().Unavailable())
	_, found = f.Set().Lookup("t2")
	require.True(t, found)
	require.True(t, f.Set().Current(c))
	require.Len(t, f.health, 2)
	require.NoError(t, f.health[1], "health is told when the file loads again")
	back := f.logs.FilterMessage("the credentials file loads again").All()
	require.Len(t, back, 1)
	require.Equal(t, zap.InfoLevel, back[0].Level)
	require.Equal(t, time.Hour+10*time.Minute+15*time.Second, back[0].ContextMap()["failed_for"])

	// The next failure is counted from its own start.
	require.NoError(t, os.WriteFile(path, []byte("credentials: [\n"), 0o600))
	f.pollFor(9 * time.Minute)
	_, found = f.Set().Lookup("t1")
	require.True(t, found)
	require.Len(t, f.health, 3)

	// Repaired with new content: that is the set.
	require.NoError(t, os.WriteFile(path, []byte("credentials:\n"+credLine("vm-1", "acme", "t1")), 0o600))
	f.pollFor(5 * time.Second)
	_, found = f.Set().Lookup("t2")
	require.False(t, found)
	_, found = f.Set().Lookup("t1")
	require.True(t, found)
}

func TestFileWithoutMaxStaleKeepsTheLastGoodSet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.yaml")
	require.NoError(t, os.WriteFile(path, []byte("credentials:\n"+credLine("vm-1", "acme", "t1")), 0o600))
	f := holdFile(t, path, 0)
	require.NoError(t, os.Remove(path))
	f.pollFor(24 * time.Hour)
	_, found := f.Set().Lookup("t1")
	require.True(t, found)
	require.NoError(t, f.Set().Unavailable())
	require.Equal(t, 24*time.Hour-5*time.Second, f.FailingFor(), "since the first failed poll")
	require.Len(t, f.errorLines(), 24*60, "logged once a minute, however long")
	require.Len(t, f.health, 1)
}

func TestFileExpiryFollowsItsClock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.yaml")
	require.NoError(t, os.WriteFile(path, []byte("credentials:\n"+credLine("vm-1", "acme", "t1")+"    expires: 2026-03-01T12:01:00Z\n"), 0o600))
	f := holdFile(t, path, 10*time.Minute)
	_, found := f.Set().Lookup("t1")
	require.True(t, found)
	f.clock.advance(time.Minute)
	_, found = f.Set().Lookup("t1")
	require.False(t, found, "expired while the file stayed the same")
	require.NoError(t, f.Set().Unavailable(), "an expired credential is no failure of the file")
	require.Empty(t, f.errorLines())
}
