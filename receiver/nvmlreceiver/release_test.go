package nvmlreceiver

import (
	"os"
	"path/filepath"
	"testing"

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
