//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otelcol-gpu/otelcol-gpu/exporter/usagecloudeventsexporter"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/devcerts"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/loadgen"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/metricwalk"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

// 11. A hostile VM bends its bill: one of two tenants sends the same volume
// as the other, but names every GPU metric under the usage prefix (so it
// drops hw.status too), sets hw.parent on every GPU point, shares the other
// tenant's host name, sends samples days old and an hour ahead, and writes
// log records shaped like the read path's query records. Its bill equals
// the honest tenant's, the odd timestamps are refused, and nothing it wrote
// is usage in its own view.
func TestScenario11HostileVMBillsAsHonest(t *testing.T) {
	e := newEnv(t, "acme", "evil")
	e.startLogStore()
	e.addVM("vm-0", "acme", vmToken(0), vmRecord{instanceID: "i-acme-0", gpus: 8})
	e.addVM("vm-1", "evil", vmToken(1), vmRecord{instanceID: "i-evil-1", gpus: 8})
	e.startGateway()
	client := e.tlsClient()

	first := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	hostile := func(a loadgen.Agent, md pmetric.Metrics) {
		if a.Tenant != "evil" {
			return
		}
		res := md.ResourceMetrics().At(0).Resource().Attributes()
		res.PutStr("host.name", "loadgen-vm-0") // acme's
		res.PutStr("host.id", "i-acme-0")       // acme's VM identity
		metricwalk.NumberPoints(md, func(m pmetric.Metric, dp pmetric.NumberDataPoint) {
			if _, gpu := dp.Attributes().Get("hw.id"); !gpu {
				return
			}
			if !strings.HasPrefix(m.Name(), usage.MetricPrefix) {
				m.SetName(usage.MetricPrefix + m.Name()) // hw.status among them: dropped
			}
			dp.Attributes().PutStr("hw.parent", "nothing")
		})
	}
	// Both fleets send within one minute (the load takes a few seconds):
	// the gateway's minute of each VM is the same.
	if s := time.Now().Second(); s > 45 {
		time.Sleep(time.Duration(61-s) * time.Second)
	}
	sentIn := time.Now().UTC()
	rep := e.load(context.Background(), loadgen.Config{
		Agents: 2, Tenants: 2, Requests: 60, Since: first, Step: time.Minute, Retry: true, Rate: 60,
		AgentToken: vmToken, Mutate: hostile,
	})
	require.Equal(t, sentIn.Truncate(time.Minute), time.Now().UTC().Truncate(time.Minute), "the load took one minute")
	require.Zero(t, rep.Failed, rep.LastError)
	points := int64(60 * loadgen.DefaultShape.Points())
	for _, tn := range []string{"acme", "evil"} {
		require.Equal(t, points, rep.PerTenant[tn].Points, tn)
		e.waitHourStored(tn, first, points)
	}

	// Samples three days old and an hour ahead: refused at the gateway,
	// with an answer that names the window; nothing of them is stored.
	for _, ts := range []time.Time{time.Now().Add(-72 * time.Hour), time.Now().Add(time.Hour)} {
		status, body := e.postMetrics(client, vmToken(1), timewarp(ts))
		assert.Equal(t, http.StatusBadRequest, status, "a sample at %s: %s", ts, body)
		assert.Contains(t, body, "window", "the refusal says why")
	}

	// A log record shaped like the read path's query record, in the
	// billed hour: the event store takes it (a customer may log what it
	// likes), in the customers' project.
	status, body := e.postLogs(client, vmToken(1), forgedReadEvent(first.Add(30*time.Minute)))
	require.Equal(t, http.StatusOK, status, body)
	require.Eventually(t, func() bool { return e.logHits(`query_id:forged`, "0") > 0 }, settle, time.Second,
		"the forged record is in the customers' project")

	// Before the usage job ran: nothing under the usage prefix in evil's
	// view but the gateway's own minute of its VM; its metrics are stored
	// under the customer prefix instead.
	require.NoError(t, e.store.Flush(context.Background()))
	forged, err := e.store.Series(context.Background(), `{__name__=~"usage\\..*"}`, "tenant_id=evil")
	require.NoError(t, err)
	require.Len(t, forged, 1, "the gateway reserves the usage prefix: %v", forged)
	assert.Equal(t, usage.VMMinutesMetric, forged[0]["__name__"])
	assert.Equal(t, "i-evil-1", forged[0]["host.id"])
	assert.Equal(t, usage.GPUsFromProvisioning, forged[0][usage.GPUsFromAttribute])
	renamed, err := e.store.Series(context.Background(), `{__name__=~"customer\\.usage\\..*"}`, "tenant_id=evil")
	require.NoError(t, err)
	assert.NotEmpty(t, renamed, "renamed, stored and billed like any other metric")
	warped, err := e.store.Series(context.Background(), `{__name__="evil.timewarp"}`, "tenant_id=evil")
	require.NoError(t, err)
	assert.Empty(t, warped)
	ids, err := e.store.Series(context.Background(), `{host.id!=""}`, "tenant_id=evil")
	require.NoError(t, err)
	for _, s := range ids {
		require.Equal(t, "i-evil-1", s["host.id"], "the credential's VM identity, whatever the payload said: %v", s)
	}

	// The usage job bills the hour.
	sink := newBillingSink()
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close)
	u := e.startUsage(srv.URL+"/api/v1/events", filepath.Join(e.dir, "usage-state"), proc.Port(t), proc.Port(t))
	t.Cleanup(func() { _ = u.Stop(10 * time.Second) })
	hour := first.Format(usage.HourLayout)
	bill := func(tn string) map[usage.Meter]int64 {
		events, _ := sink.snapshot()
		out := map[usage.Meter]int64{}
		for _, ev := range events {
			if ev.Data.Tenant == tn && ev.Data.Hour == hour {
				v, err := strconv.ParseInt(string(ev.Data.Value), 10, 64)
				require.NoError(t, err)
				out[ev.Data.Meter] += v
			}
		}
		return out
	}
	require.Eventually(t, func() bool {
		return len(bill("acme")) == len(usage.AllMeters) && len(bill("evil")) == len(usage.AllMeters)
	},
		3*time.Minute, 500*time.Millisecond, "both tenants' records of the hour reach the billing system")
	honest, bent := bill("acme"), bill("evil")
	assert.Equal(t, map[usage.Meter]int64{
		usage.DataPoints: points, usage.ActiveSeries: int64(loadgen.DefaultShape.Points()),
		usage.GPUMinutes: 0, usage.VMs: 1, // the gateway received this hour's data later
		usage.ReadQueries: 0, usage.ReadSeries: 0, usage.ReadSeriesFetched: 0, usage.ReadExecMs: 0,
	}, honest, "the honest tenant's bill")
	assert.Equal(t, honest, bent, "the hostile VM's bill is the honest bill for the same volume")

	// In evil's view the usage prefix holds the job's records and nothing else.
	require.Eventually(t, func() bool {
		require.NoError(t, e.store.Flush(context.Background()))
		v, err := e.store.QueryAt(context.Background(), `usage.data_points`, "tenant_id=evil", first.Add(time.Hour))
		return err == nil && len(v) == 1 && v[0].Value == float64(points)
	}, time.Minute, time.Second, "the job's own usage.data_points in evil's view")
	series, err := e.store.Series(context.Background(), `{__name__=~"usage\\..*"}`, "tenant_id=evil")
	require.NoError(t, err)
	names := map[string]bool{usage.VMMinutesMetric: true}
	for _, m := range usage.AllMeters {
		names[m.MetricName()] = true
	}
	for _, s := range series {
		assert.True(t, names[s["__name__"]], "only the job's meters under the usage prefix: %v", s)
	}

	// The GPU-minutes of the minute the gateway received both fleets in:
	// the provisioned 8 GPUs each, though evil's data has no hw.status and
	// claims another VM (the report computes the open hour as it stands).
	now := sentIn.Truncate(time.Hour)
	gpuMinutes := map[string]int64{}
	for _, l := range strings.Split(strings.TrimSpace(string(e.report(now, now.Add(time.Hour)))), "\n")[1:] {
		f := strings.Split(l, ",")
		if len(f) == 5 && f[1] == string(usage.GPUMinutes) {
			v, err := strconv.ParseInt(f[3], 10, 64)
			require.NoError(t, err)
			gpuMinutes[f[0]] = v
		}
	}
	assert.Equal(t, map[string]int64{"acme": 8, "evil": 8}, gpuMinutes, "one minute of 8 provisioned GPUs each")
	fmt.Printf("e2e: %-34s data_points=%d vms=%d read_queries=%d gpu_minutes_now=%d (honest: %d %d %d %d)\n",
		"11 hostile VM billed as honest", bent[usage.DataPoints], bent[usage.VMs], bent[usage.ReadQueries], gpuMinutes["evil"],
		honest[usage.DataPoints], honest[usage.VMs], honest[usage.ReadQueries], gpuMinutes["acme"])
}

// waitHourStored waits until the store holds a tenant's points of the
// hour starting at hour (the usage job computes the hour once it starts).
func (e *env) waitHourStored(tenant string, hour time.Time, points int64) {
	e.t.Helper()
	require.Eventually(e.t, func() bool {
		require.NoError(e.t, e.store.Flush(context.Background()))
		res, err := e.store.QueryAt(context.Background(), `sum(count_over_time({host.name=~"loadgen-vm-.*"}[1h]))`,
			"tenant_id="+tenant, hour.Add(time.Hour-time.Millisecond))
		require.NoError(e.t, err)
		return len(res) == 1 && res[0].Value == float64(points)
	}, settle, time.Second, "%s: every point stored", tenant)
}

// tlsClient trusts the env's development CA.
func (e *env) tlsClient() *http.Client {
	e.t.Helper()
	ca, err := os.ReadFile(filepath.Join(e.certs, devcerts.CAFile))
	require.NoError(e.t, err)
	pool := x509.NewCertPool()
	require.True(e.t, pool.AppendCertsFromPEM(ca))
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

func (e *env) postOTLP(client *http.Client, token, path string, body []byte) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("https://localhost:%d%s", e.gwHTTP, path), bytes.NewReader(body))
	require.NoError(e.t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	require.NoError(e.t, err)
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

func (e *env) postMetrics(client *http.Client, token string, md pmetric.Metrics) (int, string) {
	b, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	require.NoError(e.t, err)
	return e.postOTLP(client, token, "/v1/metrics", b)
}

func (e *env) postLogs(client *http.Client, token string, ld plog.Logs) (int, string) {
	b, err := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	require.NoError(e.t, err)
	return e.postOTLP(client, token, "/v1/logs", b)
}

// logHits counts the event store's records matching a LogsQL filter over
// the last week, in the project given (AccountID 0).
func (e *env) logHits(filter, project string) int {
	e.t.Helper()
	q := url.Values{"query": {"_time:7d " + filter + " | stats count() n"}}
	req, err := http.NewRequest(http.MethodPost, e.logs.URL+"/select/logsql/query", strings.NewReader(q.Encode()))
	require.NoError(e.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("AccountID", "0")
	req.Header.Set("ProjectID", project)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	_, after, ok := strings.Cut(string(b), `"n":"`)
	if !ok {
		return 0
	}
	n, _ := strconv.Atoi(strings.SplitN(after, `"`, 2)[0])
	return n
}

// timewarp is one gauge sample at ts.
func timewarp(ts time.Time) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("host.name", "loadgen-vm-1")
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("evil.timewarp")
	dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(pcommon.NewTimestampFromTime(ts))
	dp.SetDoubleValue(1)
	return md
}

// forgedReadEvent is a log record with the read path's query record's
// fields and a huge series count.
func forgedReadEvent(ts time.Time) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("source", usage.ReadEventsSource)
	lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.SetTimestamp(pcommon.NewTimestampFromTime(ts))
	lr.Body().SetStr("query")
	for k, v := range map[string]string{"source": usage.ReadEventsSource, "tenant_id": "evil", "query_id": "forged", "endpoint": "query"} {
		lr.Attributes().PutStr(k, v)
	}
	lr.Attributes().PutInt("series", 1_000_000)
	lr.Attributes().PutInt("series_fetched", 1_000_000)
	return ld
}

// 12. Billing under failures: the store refuses every query that covers
// one tenant (a limit its data exceeds), and the billing system refuses
// one event of the hour with 400. The other tenant is billed on time and
// in full but for that one event, which is in the dead-letter file; the
// failing tenant is billed once its queries succeed again.
func TestScenario12BillingUnderFailures(t *testing.T) {
	e := newEnv(t, "acme", "globex")
	e.startLogStore()
	e.addVM("vm-0", "acme", vmToken(0), vmRecord{instanceID: "i-acme-0", gpus: 8})
	e.addVM("vm-1", "globex", vmToken(1), vmRecord{instanceID: "i-globex-1", gpus: 4})
	e.startGateway()
	first := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	rep := e.load(context.Background(), loadgen.Config{
		Agents: 2, Tenants: 2, Requests: 60, Since: first, Step: time.Minute, Retry: true, Rate: 60, AgentToken: vmToken,
	})
	require.Zero(t, rep.Failed, rep.LastError)
	for _, tn := range []string{"acme", "globex"} {
		e.waitHourStored(tn, first, rep.PerTenant[tn].Points)
	}

	// The store, as the usage job sees it: globex's queries fail.
	var failing atomic.Bool
	failing.Store(true)
	target, err := url.Parse(e.store.URL)
	require.NoError(t, err)
	rp := httputil.NewSingleHostReverseProxy(target)
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/v1/query") && failing.Load() {
			body, _ := io.ReadAll(r.Body)
			q, _ := url.ParseQuery(string(body))
			if query := q.Get("query") + r.URL.Query().Get("query"); strings.Contains(query, `tenant_id!=""`) || strings.Contains(query, `tenant_id="globex"`) {
				http.Error(w, "cannot select more than -search.maxUniqueTimeseries=100 series", http.StatusUnprocessableEntity)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(store.Close)

	hour := first.Format(usage.HourLayout)
	refused := usage.RecordID("acme", usage.VMs, first, 0)
	sink := newBillingSink()
	sink.refuseID = refused
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close)
	state := filepath.Join(e.dir, "usage-state")
	health, metrics := proc.Port(t), proc.Port(t)
	u := proc.StartTest(t, "usage", proc.Binary(t), []string{"--config", filepath.Join(e.root, "config", "usage.yaml")},
		"OTELCOL_GPU_STORE_URL="+store.URL,
		"OTELCOL_GPU_LOGS_STORE_URL="+e.logStoreURL(),
		"OTELCOL_GPU_BILLING_URL="+srv.URL+"/api/v1/events",
		"OTELCOL_GPU_STATE_DIR="+state,
		"OTELCOL_GPU_HEALTH_ENDPOINT="+proc.Addr(health),
		"OTELCOL_GPU_METRICS_PORT="+strconv.Itoa(metrics),
	)
	t.Cleanup(func() { _ = u.Stop(10 * time.Second) })
	require.NoError(t, u.WaitHTTPOK(context.Background(), fmt.Sprintf("http://%s/", proc.Addr(health)), 30*time.Second))

	ofHour := func(tn string) map[string]usagecloudeventsexporter.Event {
		events, _ := sink.snapshot()
		out := map[string]usagecloudeventsexporter.Event{}
		for id, ev := range events {
			if ev.Data.Tenant == tn && ev.Data.Hour == hour {
				out[id] = ev
			}
		}
		return out
	}
	// acme: every record of the hour but the refused one, on time.
	require.Eventually(t, func() bool { return len(ofHour("acme")) == len(usage.AllMeters)-1 }, 2*time.Minute, 500*time.Millisecond,
		"acme is billed while globex's queries fail")
	acme := ofHour("acme")
	assert.NotContains(t, acme, refused)
	assert.Equal(t, strconv.FormatInt(rep.PerTenant["acme"].Points, 10), string(acme[usage.RecordID("acme", usage.DataPoints, first, 0)].Data.Value))
	assert.Empty(t, ofHour("globex"), "globex is deferred, not billed as zero")
	assert.Positive(t, sink.refusedBatches)

	// The refused event is in the dead-letter file, with the answer.
	var dead []byte
	require.Eventually(t, func() bool {
		dead, _ = os.ReadFile(filepath.Join(state, "usage", "dead-letter.jsonl"))
		return bytes.Contains(dead, []byte(refused))
	}, 30*time.Second, 200*time.Millisecond, "the refused event is kept")
	assert.Equal(t, 1, bytes.Count(dead, []byte("\n")), "one line: %s", dead)
	assert.Contains(t, string(dead), "400")
	assert.Contains(t, string(dead), "value out of range")

	// The deferred tenant is billed once its queries succeed (the job
	// tries again every minute).
	failing.Store(false)
	require.Eventually(t, func() bool { return len(ofHour("globex")) == len(usage.AllMeters) }, 3*time.Minute, time.Second,
		"globex is billed once it can be computed")
	globex := ofHour("globex")
	assert.Equal(t, strconv.FormatInt(rep.PerTenant["globex"].Points, 10), string(globex[usage.RecordID("globex", usage.DataPoints, first, 0)].Data.Value), "revision 0")
	_, delivered := sink.snapshot()
	for id, n := range delivered {
		assert.Equal(t, 1, n, "record %s delivered %d times", id, n)
	}
	fmt.Printf("e2e: %-34s acme_on_time=%d dead_letters=1 globex_after_recovery=%d\n", "12 billing under failures", len(acme), len(globex))
}
