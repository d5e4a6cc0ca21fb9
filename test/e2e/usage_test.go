//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otelcol-gpu/otelcol-gpu/exporter/usagecloudeventsexporter"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/devcerts"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/loadgen"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

// billingSink is the billing system: it takes CloudEvents batches, keeps
// every event by id and counts deliveries per id; while down it answers 503.
type billingSink struct {
	mu        sync.Mutex
	events    map[string]usagecloudeventsexporter.Event
	delivered map[string]int
	requests  int
	refused   atomic.Int64
	down      atomic.Bool
	badType   int
	// refuseID: a batch holding this event is answered 400, as a billing
	// system answers an event it will never take.
	refuseID       string
	refusedBatches int
}

func newBillingSink() *billingSink {
	return &billingSink{events: map[string]usagecloudeventsexporter.Event{}, delivered: map[string]int{}}
}

func (b *billingSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if b.down.Load() {
		b.refused.Add(1)
		http.Error(w, "billing is down", http.StatusServiceUnavailable)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil || r.URL.Path != "/api/v1/events" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var evs []usagecloudeventsexporter.Event
	if err := json.Unmarshal(body, &evs); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ev := range evs {
		if ev.ID == b.refuseID {
			b.refusedBatches++
			http.Error(w, "event "+ev.ID+": value out of range", http.StatusBadRequest)
			return
		}
	}
	if r.Header.Get("Content-Type") != "application/cloudevents-batch+json" {
		b.badType++
	}
	b.requests++
	for _, ev := range evs {
		b.delivered[ev.ID]++
		b.events[ev.ID] = ev
	}
	w.WriteHeader(http.StatusOK)
}

func (b *billingSink) snapshot() (map[string]usagecloudeventsexporter.Event, map[string]int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ev := make(map[string]usagecloudeventsexporter.Event, len(b.events))
	n := make(map[string]int, len(b.delivered))
	for k, v := range b.events {
		ev[k] = v
	}
	for k, v := range b.delivered {
		n[k] = v
	}
	return ev, n
}

// vmToken is VM i's own token.
func vmToken(i int) string { return fmt.Sprintf("vm-token-%d", i) }

// startUsage runs config/usage.yaml, unchanged, as the usage job.
func (e *env) startUsage(billingURL, stateDir string, health, metrics int) *proc.Proc {
	e.t.Helper()
	p := proc.StartTest(e.t, "usage", proc.Binary(e.t), []string{"--config", filepath.Join(e.root, "config", "usage.yaml")},
		"OTELCOL_GPU_STORE_URL="+e.store.URL,
		"OTELCOL_GPU_LOGS_STORE_URL="+e.logStoreURL(),
		"OTELCOL_GPU_BILLING_URL="+billingURL,
		"OTELCOL_GPU_STATE_DIR="+stateDir,
		"OTELCOL_GPU_HEALTH_ENDPOINT="+proc.Addr(health),
		"OTELCOL_GPU_METRICS_PORT="+strconv.Itoa(metrics),
	)
	require.NoError(e.t, p.WaitHTTPOK(context.Background(), fmt.Sprintf("http://%s/", proc.Addr(health)), 30*time.Second))
	return p
}

// report runs cmd/usage over [from, to) and returns its CSV.
func (e *env) report(from, to time.Time, extra ...string) []byte {
	e.t.Helper()
	args := append([]string{"run", "./cmd/usage", "report", "-store", e.store.URL, "-events", e.logStoreURL(),
		"-from", from.Format(usage.HourLayout), "-to", to.Format(usage.HourLayout)}, extra...)
	cmd := exec.Command("go", args...)
	cmd.Dir = e.root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(e.t, err, stderr.String())
	return out
}

// 10. Usage: two tenants' fleets fill two past hours (timestamps set in the
// past) through a gateway that is SIGKILLed while they send (the re-sent
// batches fold in the store); the usage job, SIGKILLed while it computes,
// then restarted, delivers to a billing system that is down at first every
// record exactly once, with the values the load generator sent, and the
// same records reach the store under each tenant's label. The read path's
// answers are metered in the hour they were served.
func TestScenario10UsageRecords(t *testing.T) {
	e := newEnv(t, "acme", "globex")
	e.startLogStore()
	e.addCredential(readKeyPrefix+"acme", "acme", "acme-read-key")
	// acme has agents 0 and 2, globex agent 1: 3 VMs of 8 GPUs, each with
	// its own credential; acme's VM 2 is not provisioned with a GPU count
	// (its reported GPUs are billed).
	for i, tn := range []string{"acme", "globex", "acme"} {
		gpus := 8
		if i == 2 {
			gpus = -1
		}
		e.addVM(fmt.Sprintf("vm-%d", i), tn, vmToken(i), vmRecord{instanceID: fmt.Sprintf("i-%s-%d", tn, i), gpus: gpus})
	}
	e.startGateway()

	// One request a minute for two whole hours.
	first := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	agents := map[string]int{"acme": 2, "globex": 1}
	wait := e.loadInBackground(loadgen.Config{
		Agents: 3, Tenants: 2, Requests: 120, Since: first, Step: time.Minute, Retry: true, Rate: 60, AgentToken: vmToken,
	})
	// Killed once the store has data from both fleets: mid-load.
	require.Eventually(t, func() bool { return e.proxy.deliveredTo("acme") > 0 && e.proxy.deliveredTo("globex") > 0 },
		time.Minute, 20*time.Millisecond, "the fleets' data reaches the store")
	require.NoError(t, e.gw.Signal(syscall.SIGKILL))
	_ = e.gw.Wait(10 * time.Second)
	e.startGateway()
	rep := wait()
	require.Zero(t, rep.Unacked)
	for tn, n := range agents {
		want := int64(n * 120 * loadgen.DefaultShape.Points())
		require.Equal(t, want, rep.PerTenant[tn].Points, "loadgen's acknowledged points of %s", tn)
		var got float64
		require.Eventually(t, func() bool {
			require.NoError(t, e.store.Flush(context.Background()))
			res, err := e.store.QueryAt(context.Background(), `sum(count_over_time({host.name=~"loadgen-vm-.*"}[2h]))`,
				"tenant_id="+tn, first.Add(2*time.Hour-time.Millisecond))
			require.NoError(t, err)
			got = 0
			if len(res) == 1 {
				got = res[0].Value
			}
			return got >= float64(want)
		}, settle, time.Second, "%s: every point stored", tn)
		require.Equal(t, float64(want), got, "%s: every point stored once", tn)
	}
	require.Positive(t, rep.Retries, "the gateway was killed while the fleets sent")

	// Reads, answered now: 7 queries by acme, none by globex.
	readStart := time.Now().UTC()
	readSeries := 0
	ca, err := os.ReadFile(filepath.Join(e.certs, devcerts.CAFile))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(ca))
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	for i := 0; i < 7; i++ {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://localhost:%d/api/v1/query?query=%s", e.gwQuery,
			"count_over_time(hw.status%5B3h%5D)"), nil)
		req.Header.Set("Authorization", "Bearer acme-read-key")
		resp, err := client.Do(req)
		require.NoError(t, err)
		var body struct {
			Data struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		_ = resp.Body.Close()
		readSeries += len(body.Data.Result)
	}
	require.Equal(t, 7*16, readSeries, "each answer: acme's 16 GPUs, one hw.status series each, and nothing of globex")

	// The billing system is down when the usage job starts.
	sink := newBillingSink()
	sink.down.Store(true)
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close)
	state := filepath.Join(e.dir, "usage-state")
	health, metrics := proc.Port(t), proc.Port(t)
	// Killed twice: while it computes the day it backfills (as soon as it
	// answers its health check), then once it has queued records and
	// tried to deliver them.
	u := e.startUsage(srv.URL+"/api/v1/events", state, health, metrics)
	require.NoError(t, u.Signal(syscall.SIGKILL))
	_ = u.Wait(10 * time.Second)
	u = e.startUsage(srv.URL+"/api/v1/events", state, health, metrics)
	require.Eventually(t, func() bool { return sink.refused.Load() > 0 }, 2*time.Minute, 50*time.Millisecond,
		"the usage job tried to deliver records")
	require.NoError(t, u.Signal(syscall.SIGKILL))
	_ = u.Wait(10 * time.Second)
	time.Sleep(3 * time.Second)
	sink.down.Store(false)
	u = e.startUsage(srv.URL+"/api/v1/events", state, health, metrics)
	t.Cleanup(func() { _ = u.Stop(10 * time.Second) })

	// The expected records: every meter of both tenants in both hours.
	want := map[string]int64{}
	for h := 0; h < 2; h++ {
		hour := first.Add(time.Duration(h) * time.Hour)
		for tn, n := range agents {
			vals := map[usage.Meter]int64{
				usage.DataPoints:   int64(n * 60 * loadgen.DefaultShape.Points()),
				usage.ActiveSeries: int64(n * loadgen.DefaultShape.Points()),
				// The gateway received the hours' data now, not in them:
				// no GPU-minutes there (scenario 11 bills the minute it
				// was received in).
				usage.GPUMinutes:        0,
				usage.VMs:               int64(n),
				usage.ReadQueries:       0,
				usage.ReadSeries:        0,
				usage.ReadSeriesFetched: 0,
				usage.ReadExecMs:        0,
			}
			for m, v := range vals {
				want[usage.RecordID(tn, m, hour, 0)] = v
			}
		}
	}
	var events map[string]usagecloudeventsexporter.Event
	var delivered map[string]int
	require.Eventually(t, func() bool {
		events, delivered = sink.snapshot()
		for id := range want {
			if _, ok := events[id]; !ok {
				return false
			}
		}
		return true
	}, 3*time.Minute, 500*time.Millisecond, "every record of the two hours reaches the billing system")
	got := map[string]int64{}
	for id, ev := range events {
		if ev.Data.Hour == first.Format(usage.HourLayout) || ev.Data.Hour == first.Add(time.Hour).Format(usage.HourLayout) {
			v, err := strconv.ParseInt(string(ev.Data.Value), 10, 64)
			require.NoError(t, err, "an integer value: %s", ev.Data.Value)
			got[id] = v
			assert.Equal(t, ev.Subject, ev.Data.Tenant)
			assert.Equal(t, "otelcol-gpu", ev.Source)
			assert.Equal(t, "com.example.gpu-observability."+string(ev.Data.Meter), ev.Type, "the shipped config's namespace")
			assert.Zero(t, ev.Data.Revision, "no late data: no adjustments")
		}
	}
	assert.Equal(t, want, got, "the records equal what the load generator sent, per tenant, meter and hour")
	// No record of any hour went twice: the kill came while the billing
	// system was down, so nothing had been delivered before it.
	for id, n := range delivered {
		assert.Equal(t, 1, n, "record %s delivered %d times", id, n)
	}
	sink.mu.Lock()
	assert.Zero(t, sink.badType, "every batch was sent as application/cloudevents-batch+json")
	sink.mu.Unlock()

	// The same records in the store, under each tenant's own label: what
	// the customer sees with their own key.
	require.Eventually(t, func() bool {
		require.NoError(t, e.store.Flush(context.Background()))
		for tn, n := range agents {
			v, err := e.store.QueryAt(context.Background(), `usage.data_points`, "tenant_id="+tn, first.Add(2*time.Hour))
			if err != nil || len(v) != 1 || v[0].Value != float64(n*60*loadgen.DefaultShape.Points()) {
				return false
			}
		}
		return true
	}, time.Minute, time.Second, "usage.data_points in the store under each tenant's label")
	series, err := e.store.Series(context.Background(), `{__name__=~"usage\\..*"}`, "")
	require.NoError(t, err)
	for _, s := range series {
		require.Contains(t, []string{"acme", "globex"}, s["tenant_id"], "%v", s)
		require.Empty(t, s["usage.record_id"], "billing attributes are not stored as labels: %v", s)
	}

	// The report: byte-identical twice, and the same values and ids as the
	// records the billing system got.
	to := first.Add(2 * time.Hour)
	csv1 := e.report(first, to)
	csv2 := e.report(first, to)
	require.Equal(t, string(csv1), string(csv2), "computing twice gives byte-identical records")
	lines := strings.Split(strings.TrimSpace(string(csv1)), "\n")
	require.Equal(t, usage.CSVHeader, lines[0])
	require.Len(t, lines[1:], len(want))
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		require.Len(t, f, 5, l)
		v, err := strconv.ParseInt(f[3], 10, 64)
		require.NoError(t, err)
		assert.Equal(t, want[f[4]], v, "report line %s", l)
	}

	// The read meters of the hour(s) they were served in (the reads may
	// straddle an hour): acme's 7 queries and the series they returned;
	// globex read nothing.
	readFrom := readStart.Truncate(time.Hour)
	readTo := time.Now().UTC().Truncate(time.Hour).Add(time.Hour)
	var rq, rs float64
	require.Eventually(t, func() bool {
		rq, rs = 0, 0
		for _, l := range strings.Split(strings.TrimSpace(string(e.report(readFrom, readTo))), "\n")[1:] {
			f := strings.Split(l, ",")
			if len(f) != 5 || !strings.HasPrefix(f[1], "read_") {
				continue
			}
			v, err := strconv.ParseFloat(f[3], 64)
			require.NoError(t, err)
			if f[0] != "acme" {
				require.Zero(t, v, "globex read nothing: %s", l)
				continue
			}
			require.Equal(t, "acme:"+f[1]+":"+f[2], f[4], "the record id is tenant, meter, hour")
			switch f[1] {
			case "read_queries":
				rq += v
			case "read_series":
				rs += v
			}
		}
		return rq == 7
	}, 30*time.Second, time.Second, "the read path's records reach the event store")
	assert.EqualValues(t, readSeries, rs, "the series the answers held")

	fmt.Printf("e2e: %-34s records=%d delivered_once=%d refused_while_down=%d read_queries=7 read_series=%d\n",
		"10 usage records", len(want), len(delivered), sink.refused.Load(), readSeries)
}
