//go:build system

package smoke

import (
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
)

func gpuCheckBinary(t *testing.T) string {
	path := os.Getenv("GPU_CHECK_BIN")
	if path == "" {
		path = filepath.Join(proc.RepoRoot(t), "bin", "gpu-check")
	}
	_, err := os.Stat(path)
	require.NoError(t, err, "build it with 'make gpu-check'")
	return path
}

// go-nvml resolves NVML symbols lazily; a binary linked with BIND_NOW dies
// at start on any driver that lacks one of the ~400 functions go-nvml
// declares. And NVML itself must be dlopened, never linked.
func TestBinariesBindLazilyAndDoNotLinkNVML(t *testing.T) {
	for _, bin := range []string{proc.Binary(t), gpuCheckBinary(t)} {
		t.Run(filepath.Base(bin), func(t *testing.T) {
			f, err := elf.Open(bin)
			require.NoError(t, err)
			defer func() { _ = f.Close() }()
			flags, err := f.DynValue(elf.DT_FLAGS)
			require.NoError(t, err)
			for _, v := range flags {
				require.Zero(t, v&uint64(elf.DF_BIND_NOW), "DT_FLAGS has BIND_NOW")
			}
			flags1, err := f.DynValue(elf.DT_FLAGS_1)
			require.NoError(t, err)
			for _, v := range flags1 {
				require.Zero(t, v&uint64(elf.DF_1_NOW), "DT_FLAGS_1 has NOW")
			}
			libs, err := f.ImportedLibraries()
			require.NoError(t, err)
			for _, lib := range libs {
				require.NotContains(t, lib, "nvidia", "NVML must be dlopened at run time, not linked")
				require.True(t, strings.HasPrefix(lib, "libc.so") || strings.HasPrefix(lib, "libdl.so") ||
					strings.HasPrefix(lib, "libpthread.so") || strings.HasPrefix(lib, "libm.so") || strings.HasPrefix(lib, "libresolv.so"),
					"%s needs %s, which is not part of glibc", bin, lib)
			}
		})
	}
}

func TestGPUCheckIsSmallAndCleanWithoutAGPU(t *testing.T) {
	bin := gpuCheckBinary(t)
	st, err := os.Stat(bin)
	require.NoError(t, err)
	require.Less(t, st.Size(), int64(64<<20), "the check program must travel to a GPU machine (64 MiB limit)")
	t.Logf("gpu-check is %.1f MiB", float64(st.Size())/(1<<20))

	// This machine has no NVIDIA driver: the real dlopen fails, and the
	// program says so and exits 0.
	out, code := proc.Run(t, bin, []string{"-duration", "1500ms", "-interval", "500ms"}, "LD_LIBRARY_PATH=")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "no NVIDIA GPU is visible through NVML here")
	require.Contains(t, out, "NVML library not found")
}

// The one binary every customer VM downloads, maps and pages stays under
// 60 MB (the modules it links are held in packaging/modules.txt by make
// vet; BENCHMARKS.md, "Binary and modules", says what each costs).
func TestBinaryStaysLean(t *testing.T) {
	st, err := os.Stat(proc.Binary(t))
	require.NoError(t, err)
	require.Less(t, st.Size(), int64(60_000_000), "otelcol-gpu is %d bytes", st.Size())
	t.Logf("otelcol-gpu is %.1f MB", float64(st.Size())/1e6)
}
