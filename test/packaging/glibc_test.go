//go:build system

package packaging

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/metricwalk"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/otlpsink"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
)

// baseline is the newest glibc symbol version a shipped binary may need:
// arm64's first glibc, older than every distribution in docs/packaging.md's list.
var baseline = [2]int{2, 17}

// glibcVersion parses "GLIBC_2.34" (false for other version names).
func glibcVersion(v string) ([2]int, bool) {
	rest, ok := strings.CutPrefix(v, "GLIBC_")
	if !ok {
		return [2]int{}, false
	}
	parts := strings.Split(rest, ".")
	if len(parts) < 2 {
		return [2]int{}, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	return [2]int{major, minor}, err1 == nil && err2 == nil
}

func newer(a, b [2]int) bool { return a[0] > b[0] || (a[0] == b[0] && a[1] > b[1]) }

// tooNew lists the imported symbols of the ELF file at path whose glibc
// version is newer than the baseline, as "symbol@GLIBC_x.y (library)".
func tooNew(t *testing.T, path string) []string {
	t.Helper()
	f, err := elf.Open(path)
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	syms, err := f.DynamicSymbols()
	require.NoError(t, err)
	var bad []string
	seen := 0
	for _, s := range syms {
		v, ok := glibcVersion(s.Version)
		if !ok || s.Section != elf.SHN_UNDEF {
			continue
		}
		seen++
		if newer(v, baseline) {
			bad = append(bad, fmt.Sprintf("%s@%s (%s)", s.Name, s.Version, s.Library))
		}
	}
	require.Positive(t, seen, "%s imports no versioned glibc symbol: not the binary meant", path)
	return bad
}

func TestGlibcVersionParsing(t *testing.T) {
	v, ok := glibcVersion("GLIBC_2.34")
	require.True(t, ok)
	require.True(t, newer(v, baseline))
	v, ok = glibcVersion("GLIBC_2.2.5")
	require.True(t, ok)
	require.False(t, newer(v, baseline))
	v, ok = glibcVersion("GLIBC_2.17")
	require.True(t, ok)
	require.False(t, newer(v, baseline))
	_, ok = glibcVersion("GCC_3.0")
	require.False(t, ok)
}

// Every binary the packages ship starts on glibc 2.17 and later: RHEL and
// its rebuilds 7 and 8, Ubuntu 18.04+, Debian 10+, Amazon Linux 2.
func TestShippedBinariesNeedNoGlibcNewerThanTheBaseline(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			root := t.TempDir()
			run(t, "dpkg-deb", "-x", pkg(t, "otelcol-gpu_*_"+arch+".deb"), root)
			bin := filepath.Join(root, "usr", "bin", "otelcol-gpu")
			require.Empty(t, tooNew(t, bin), "symbols above GLIBC_%d.%d in the %s package's otelcol-gpu", baseline[0], baseline[1], arch)

			f, err := elf.Open(bin)
			require.NoError(t, err)
			defer func() { _ = f.Close() }()
			libs, err := f.ImportedLibraries()
			require.NoError(t, err)
			// The thread and dl functions are bound where glibc before 2.34
			// kept them; newer glibc still ships both libraries.
			require.Subset(t, libs, []string{"libc.so.6", "libpthread.so.0", "libdl.so.2"})
		})
	}
}

// The arm64 binary runs, under qemu with Debian's cross sysroot: --version,
// then an agent-shaped config (host metrics only, no GPU) that must deliver.
func TestArm64BinaryRunsUnderQemu(t *testing.T) {
	qemu, err := exec.LookPath("qemu-aarch64")
	require.NoError(t, err, "qemu-user is installed by 'make packaging-test'")
	sysroot := "/usr/aarch64-linux-gnu"
	_, err = os.Stat(filepath.Join(sysroot, "lib", "libc.so.6"))
	require.NoError(t, err, "the arm64 sysroot comes with gcc-aarch64-linux-gnu ('make package' installs it)")
	root := t.TempDir()
	run(t, "dpkg-deb", "-x", pkg(t, "otelcol-gpu_*_arm64.deb"), root)
	bin := filepath.Join(root, "usr", "bin", "otelcol-gpu")

	out := run(t, qemu, "-L", sysroot, bin, "--version")
	require.Contains(t, out, "otelcol-gpu version")

	sink := otlpsink.Start(t)
	health := proc.Port(t)
	cfg := filepath.Join(root, "agent.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`extensions:
  health_check: {endpoint: %s}
receivers:
  host_metrics:
    collection_interval: 1s
    scrapers: {cpu: {}, memory: {}, load: {}}
exporters:
  otlp_http: {endpoint: %s, compression: none}
service:
  extensions: [health_check]
  telemetry: {metrics: {level: none}}
  pipelines:
    metrics: {receivers: [host_metrics], exporters: [otlp_http]}
`, proc.Addr(health), sink.URL)), 0o600))
	p := proc.StartTest(t, "arm64 agent", qemu, []string{"-L", sysroot, bin, "--config", cfg})
	require.NoError(t, p.WaitHTTPOK(context.Background(), "http://"+proc.Addr(health)+"/", 2*time.Minute))
	require.Eventually(t, func() bool {
		for _, md := range sink.Metrics() {
			if len(metricwalk.Find(md, "system.memory.usage", nil)) > 0 {
				return true
			}
		}
		return false
	}, 2*time.Minute, 250*time.Millisecond, "host metrics from the arm64 binary")
	require.NoError(t, p.Stop(time.Minute))
}
