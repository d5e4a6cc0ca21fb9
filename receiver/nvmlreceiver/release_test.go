package nvmlreceiver

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/stretchr/testify/require"
)

// While the release file exists NVML is let go (workers, event set, GPM
// samples, nvmlShutdown) and nothing is reported; when it is removed NVML
// is initialised again and every GPU is back.
func TestReleaseFileLetsNVMLGo(t *testing.T) {
	f := newH100Fleet()
	cfg := testConfig()
	cfg.ReleaseFile = filepath.Join(t.TempDir(), "release-nvml")
	h := startHarness(t, f, cfg)
	h.scrape(t)
	md := h.scrape(t)
	require.Len(t, points(md, "nvidia.gpu.info", nil), 8)
	require.EqualValues(t, 1, f.inits.Load())
	shutdowns := len(f.ShutdownCalls())

	require.NoError(t, os.WriteFile(cfg.ReleaseFile, nil, 0o600))
	md = h.scrape(t)
	require.Zero(t, md.DataPointCount(), "nothing from NVML while released")
	require.Equal(t, shutdowns+1, len(f.ShutdownCalls()), "nvmlShutdown called once")
	require.Equal(t, 1, h.logs.FilterMessageSnippet("NVML released for a GPU reset").Len())
	md = h.scrape(t)
	require.Zero(t, md.DataPointCount())
	require.EqualValues(t, 1, f.inits.Load(), "not initialised while the file exists")

	require.NoError(t, os.Remove(cfg.ReleaseFile))
	h.scrape(t) // starts the initialisation
	require.Eventually(t, func() bool {
		return len(points(h.scrape(t), "nvidia.gpu.info", nil)) == 8
	}, 10e9, 20e6, "every GPU back after the file is removed")
	require.EqualValues(t, 2, f.inits.Load())
}

// hangOn makes GPU 0's field-value read block while hanging is set, until
// unhang is closed; entered receives once per call that blocks.
func hangOn(f *fleet) (hanging *atomic.Bool, entered chan struct{}, unhang chan struct{}) {
	hanging, entered, unhang = &atomic.Bool{}, make(chan struct{}, 16), make(chan struct{})
	orig := f.device(0).GetFieldValuesFunc
	f.device(0).GetFieldValuesFunc = func(fvs []nvml.FieldValue) nvml.Return {
		if hanging.Load() {
			entered <- struct{}{}
			<-unhang
		}
		return orig(fvs)
	}
	return hanging, entered, unhang
}

// releaseWhileHung starts a session, hangs a call on GPU 0 and creates the
// release file: NVML cannot be shut down under the call.
func releaseWhileHung(t *testing.T) (*harness, *Config, chan struct{}) {
	t.Helper()
	f := newH100Fleet()
	hanging, entered, unhang := hangOn(f)
	cfg := boundedConfig()
	cfg.ReleaseFile = filepath.Join(t.TempDir(), "release-nvml")
	h := startHarness(t, f, cfg)
	t.Cleanup(func() {
		select {
		case <-unhang:
		default:
			close(unhang)
		}
	})
	require.Eventually(t, func() bool {
		return len(points(h.scrape(t), "nvidia.gpu.info", nil)) == 8
	}, 10*time.Second, 10*time.Millisecond)
	hanging.Store(true)
	h.scrape(t)
	<-entered
	hanging.Store(false)
	require.NoError(t, os.WriteFile(cfg.ReleaseFile, nil, 0o600))
	require.Zero(t, h.scrape(t).DataPointCount())
	require.Empty(t, f.ShutdownCalls(), "not under a call still inside NVML")
	require.Equal(t, 1, h.logs.FilterMessageSnippet("NVML stays open").Len())
	return h, cfg, unhang
}

// reinit removes the release file and scrapes until every GPU is back.
func reinit(t *testing.T, h *harness, cfg *Config) {
	t.Helper()
	require.NoError(t, os.Remove(cfg.ReleaseFile))
	require.Eventually(t, func() bool {
		return len(points(h.scrape(t), "nvidia.gpu.info", nil)) == 8
	}, 10*time.Second, 10*time.Millisecond)
}

// NVML's initialisations and shutdowns balance when the release file comes
// while a call hangs: the reference kept for the call is given back when
// it returns, whether NVML was initialised again before or after, so a
// later clean release lets a GPU reset proceed.
func TestReleaseWhileACallHangsBalancesInitAndShutdown(t *testing.T) {
	for name, returnsBeforeReinit := range map[string]bool{"call returns, then reinit": true, "reinit, then call returns": false} {
		t.Run(name, func(t *testing.T) {
			h, cfg, unhang := releaseWhileHung(t)
			f := h.f
			if returnsBeforeReinit {
				close(unhang)
				require.Eventually(t, func() bool { return len(f.ShutdownCalls()) == 1 }, 5*time.Second, time.Millisecond,
					"NVML let go once the call returned")
				reinit(t, h, cfg)
			} else {
				reinit(t, h, cfg)
				close(unhang)
				require.Eventually(t, func() bool { return len(f.ShutdownCalls()) == 1 }, 5*time.Second, time.Millisecond,
					"the earlier initialisation's reference given back once the call returned")
			}
			require.EqualValues(t, 2, f.inits.Load())
			require.Len(t, points(h.scrape(t), "nvidia.gpu.info", nil), 8, "the new session is not disturbed")

			require.NoError(t, os.WriteFile(cfg.ReleaseFile, nil, 0o600))
			require.Zero(t, h.scrape(t).DataPointCount())
			require.Len(t, f.ShutdownCalls(), 2, "every nvmlInit has its nvmlShutdown")
			require.EqualValues(t, 2, f.inits.Load())
			require.Len(t, f.ShutdownCalls(), int(f.inits.Load()))
		})
	}
}

// A worker whose call returns after its session was released reads the
// driver's symbol table while NVML is initialised again: each
// initialisation has its own table, never written after its workers start
// (-race catches a shared one).
func TestCallReturningDuringReinitDoesNotRace(t *testing.T) {
	h, cfg, unhang := releaseWhileHung(t)
	require.NoError(t, os.Remove(cfg.ReleaseFile))
	close(unhang) // the worker goes on with its collection while NVML initialises again
	require.Eventually(t, func() bool {
		return len(points(h.scrape(t), "nvidia.gpu.info", nil)) == 8
	}, 10*time.Second, 10*time.Millisecond)
}

// A release while an initialisation is still in flight gives its reference
// back when it returns: NVML is not held while the file exists.
func TestReleaseDuringInitialisationBalances(t *testing.T) {
	f := newH100Fleet()
	unhang := make(chan struct{})
	var hanging atomic.Bool
	init := f.InitFunc
	f.InitFunc = func() nvml.Return {
		if hanging.Load() {
			<-unhang
		}
		return init()
	}
	hanging.Store(true)
	cfg := boundedConfig()
	cfg.ReleaseFile = filepath.Join(t.TempDir(), "release-nvml")
	h := startHarness(t, f, cfg)
	defer func() {
		select {
		case <-unhang:
		default:
			close(unhang)
		}
	}()
	require.Zero(t, h.scrape(t).DataPointCount(), "nvmlInit has not returned")
	require.NoError(t, os.WriteFile(cfg.ReleaseFile, nil, 0o600))
	require.Zero(t, h.scrape(t).DataPointCount())
	hanging.Store(false)
	close(unhang)
	require.Eventually(t, func() bool { return len(f.ShutdownCalls()) == 1 }, 5*time.Second, time.Millisecond,
		"the initialisation that returned while released is closed")
	for range 3 {
		require.Zero(t, h.scrape(t).DataPointCount())
	}
	require.EqualValues(t, 1, f.inits.Load(), "not initialised while the file exists")
	reinit(t, h, cfg)
	require.EqualValues(t, 2, f.inits.Load())
	require.NoError(t, os.WriteFile(cfg.ReleaseFile, nil, 0o600))
	h.scrape(t)
	require.Len(t, f.ShutdownCalls(), 2)
}

// A release file present when the collector starts keeps NVML closed from
// the start.
func TestReleaseFilePresentAtStart(t *testing.T) {
	f := newH100Fleet()
	cfg := testConfig()
	cfg.ReleaseFile = filepath.Join(t.TempDir(), "release-nvml")
	require.NoError(t, os.WriteFile(cfg.ReleaseFile, nil, 0o600))
	h := startHarness(t, f, cfg)
	for range 3 {
		require.Zero(t, h.scrape(t).DataPointCount())
	}
	require.Zero(t, f.inits.Load(), "not initialised while the file exists")
	reinit(t, h, cfg)
	require.EqualValues(t, 1, f.inits.Load())
}
