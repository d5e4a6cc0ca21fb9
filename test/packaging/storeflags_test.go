//go:build system

package packaging

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/vlstore"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/vmstore"
)

// storeFlags reads a deploy/store/*.flags file: one -name=value a line,
// comments and blank lines aside.
func storeFlags(t *testing.T, name string) (args []string, flags map[string]string) {
	t.Helper()
	f, err := os.Open(filepath.Join(proc.RepoRoot(t), "deploy", "store", name))
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	flags = map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.True(t, ok && strings.HasPrefix(k, "-") && !strings.ContainsAny(line, " \t"), "%s: %q is not one -name=value", name, line)
		require.NotContains(t, flags, k[1:], "%s: %s twice", name, k)
		flags[k[1:]] = v
		args = append(args, line)
	}
	require.NoError(t, sc.Err())
	return args, flags
}

// readTier is what the shipped read configs ask of the stores: the largest
// number of queries one tenant can have at the store at once over the whole
// read tier (each replica enforces max_concurrent / replicas rounded down,
// but at least one, so with more replicas than max_concurrent the rounding
// adds to it), and the longest a query may run.
func readTier(t *testing.T) (perTenant int, queryTimeout time.Duration) {
	t.Helper()
	root := proc.RepoRoot(t)
	// The read tier on Kubernetes runs this many replicas; systemd hosts
	// and the gateway default to one.
	counts := []int{1}
	for _, d := range decodeAll(t, filepath.Join(root, "deploy", "kubernetes", "query.yaml")) {
		if d["kind"] == "StatefulSet" {
			counts = append(counts, dig(d, "spec", "replicas").(int))
		}
	}
	for _, cfg := range []string{"gateway.yaml", "query.yaml"} {
		doc := decodeAll(t, filepath.Join(root, "config", cfg))[0]
		limits := dig(doc, "extensions", "tenant_query", "limits")
		mc, ok := dig(limits, "max_concurrent").(int)
		require.True(t, ok, "%s: limits.max_concurrent", cfg)
		qt, err := time.ParseDuration(dig(limits, "query_timeout").(string))
		require.NoError(t, err, "%s: limits.query_timeout", cfg)
		queryTimeout = max(queryTimeout, qt)
		for _, n := range counts {
			perTenant = max(perTenant, n*max(mc/n, 1))
		}
	}
	return perTenant, queryTimeout
}

func duration(t *testing.T, flags map[string]string, name string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(flags[name])
	require.NoError(t, err, "-%s", name)
	return d
}

// The stores' shipped read-side flags hold the rules of docs/gateway-tier.md
// ("The store's own protection") for the shipped read configs, and the
// pinned stores start with every one of them and report it set.
func TestStoreFlags(t *testing.T) {
	perTenant, queryTimeout := readTier(t)
	root := proc.RepoRoot(t)
	for _, store := range []struct {
		file, bin string
		find      func(string) (string, error)
		want      []string
	}{
		{"victoria-metrics.flags", "victoria-metrics", vmstore.FindBinary, []string{
			"search.maxConcurrentRequests", "search.maxQueueDuration", "search.maxMemoryPerQuery",
			"search.maxUniqueTimeseries", "search.maxSamplesPerQuery", "search.maxQueryDuration",
			"search.maxPointsPerTimeseries", "dedup.minScrapeInterval",
		}},
		{"victoria-logs.flags", "victoria-logs", vlstore.FindBinary, []string{
			"search.maxConcurrentRequests", "search.maxQueueDuration", "search.maxQueryDuration",
		}},
	} {
		t.Run(store.bin, func(t *testing.T) {
			args, flags := storeFlags(t, store.file)
			for _, name := range store.want {
				require.Contains(t, flags, name)
			}
			require.NotContains(t, flags, "search.ignoreExtraFiltersAtLabelsAPI",
				"the labels APIs would drop the extra_label that holds a customer to their tenant")

			slots, err := strconv.Atoi(flags["search.maxConcurrentRequests"])
			require.NoError(t, err)
			require.GreaterOrEqual(t, slots, 2*perTenant,
				"one tenant at its limits over the whole read tier fills at most half the store's query slots")
			require.Less(t, duration(t, flags, "search.maxQueueDuration"), queryTimeout,
				"a query the store cannot take is refused by it before the read path's timeout")
			if store.bin == "victoria-metrics" {
				require.GreaterOrEqual(t, duration(t, flags, "search.maxQueryDuration"), queryTimeout,
					"the store accepts the timeout the read path passes (limits.query_timeout at most)")
			} else {
				require.LessOrEqual(t, duration(t, flags, "search.maxQueryDuration"), queryTimeout,
					"events queries carry no timeout: the store ends them before the read path gives up")
			}

			// The pinned release knows every flag (an unknown one stops it)
			// and reports each as set.
			bin, err := store.find(root)
			require.NoError(t, err)
			addr := proc.Addr(proc.Port(t))
			p := proc.StartTest(t, store.bin, bin, append([]string{
				"-storageDataPath=" + t.TempDir(), "-httpListenAddr=" + addr, "-loggerLevel=WARN",
			}, args...))
			require.NoError(t, p.WaitHTTPOK(context.Background(), "http://"+addr+"/health", 30*time.Second), "%s", p.Output())
			resp, err := http.Get("http://" + addr + "/flags")
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			require.NoError(t, err)
			for name, v := range flags {
				require.Contains(t, string(body), "-"+name+"="+strconv.Quote(v)+"\n", "the store reports -%s as set", name)
			}
			require.NoError(t, p.Stop(30*time.Second))
		})
	}
}
