package loadgen

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"
)

// Config is one load run.
type Config struct {
	Transport TransportConfig
	Shape     Shape

	Agents int // simulated VMs
	// FirstAgent numbers the agents from here (host.name loadgen-vm-<n>), so
	// runs against one store can keep their series apart.
	FirstAgent int
	Tenants    int // agent i belongs to tenant i % Tenants
	// TenantName names tenant i (default: DefaultTenantName).
	TenantName func(i int) string
	// Token is the bearer token of tenant i's agents (default: DefaultToken);
	// return "" to send none.
	Token func(tenant string) string
	// AgentToken, when set, is agent i's own token (one credential per VM,
	// as the usage meters count VMs by it); it overrides Token.
	AgentToken func(agent int) string
	// Claim is the tenant.id the payload of an agent of tenant says (default:
	// the tenant itself); a spoofing test claims another one.
	Claim func(tenant string) string
	// Mutate, when set, changes an agent's request once, when it is built
	// (a hostile VM's payload: names, attributes). It must not add or
	// remove data points: each send rewrites the same points' values and
	// timestamps in place.
	Mutate func(a Agent, md pmetric.Metrics)

	// Concurrency is the requests each agent has in flight (default 1).
	Concurrency int
	// InFlight caps the requests in flight over all agents (0: no cap,
	// Agents x Concurrency): many VMs of many tenants, few clients' worth
	// of requests at once. Waiting agents take their turns in order.
	InFlight int
	// Rate is requests per second over all agents; 0: as fast as accepted.
	Rate float64
	// Duration ends the sending of new requests (0: until Requests are done
	// or ctx ends).
	Duration time.Duration
	// Requests is the number of distinct requests each agent sends (0: no limit).
	Requests int
	// Retry resends a request refused retryably (or not answered) until it is
	// accepted, as an agent's queue does, backing off up to one second. A
	// request started before Duration ended is retried for up to Drain more
	// (default 30 s); one still unaccepted then, or when ctx ends, is counted
	// as unacknowledged. Without Retry it is counted as failed and dropped.
	Retry bool
	Drain time.Duration

	// Since, when set, timestamps the data instead of the clock: request n
	// (from 1) of every agent is at Since + (n-1)*Step, so a run can fill
	// past hours exactly (usage tests: Requests = 60 per hour with Step 1m).
	Since time.Time
	Step  time.Duration
}

// DefaultTenantName is "tenant-<i>" with four digits.
func DefaultTenantName(i int) string { return fmt.Sprintf("tenant-%04d", i) }

// DefaultToken is the token the generator uses for a tenant, and that
// Credentials writes the hash of: "loadgen-<tenant>".
func DefaultToken(tenant string) string { return "loadgen-" + tenant }

// Credentials is a tenant_auth credentials file for the given tenants with
// DefaultToken tokens: what a gateway under load needs.
func Credentials(tenants int, name func(int) string) string {
	if name == nil {
		name = DefaultTenantName
	}
	var b strings.Builder
	b.WriteString("credentials:\n")
	for i := 0; i < tenants; i++ {
		t := name(i)
		sum := sha256.Sum256([]byte(DefaultToken(t)))
		fmt.Fprintf(&b, "  - id: loadgen-%s\n    tenant: %s\n    sha256: %s\n", t, t, hex.EncodeToString(sum[:]))
	}
	return b.String()
}

// TenantReport is one tenant's share of a run.
type TenantReport struct {
	Requests int64 `json:"requests_accepted"`
	Points   int64 `json:"points_accepted"`
}

// Report is what a run did. Points counts data points the gateway
// acknowledged (less any it reported rejected).
type Report struct {
	Protocol        string                  `json:"protocol"`
	Agents          int                     `json:"agents"`
	Tenants         int                     `json:"tenants"`
	PointsPerReq    int                     `json:"points_per_request"`
	Seconds         float64                 `json:"seconds"`
	Requests        int64                   `json:"requests_accepted"`
	Points          int64                   `json:"points_accepted"`
	PointsPerSecond float64                 `json:"points_per_second"`
	Rejected        int64                   `json:"points_rejected"`
	Retries         int64                   `json:"retries"`
	Failed          int64                   `json:"requests_failed"`         // refused for good (or retryably, without Retry)
	Unacked         int64                   `json:"requests_unacknowledged"` // still unaccepted when the run ended (Retry)
	Codes           map[string]int64        `json:"codes"`                   // answers by code, every attempt
	LatencyMS       map[string]float64      `json:"latency_ms"`              // p50, p90, p99, max of accepted sends
	PerTenant       map[string]TenantReport `json:"per_tenant"`
	LastError       string                  `json:"last_error,omitempty"`
}

type stats struct {
	mu        sync.Mutex
	codes     map[string]int64
	lat       []time.Duration
	latSeen   int64
	perTenant map[string]*TenantReport
	lastErr   string

	requests, points, rejected, retries, failed, unacked atomic.Int64
}

const latencyKeep = 200_000

func (s *stats) record(tenant string, r Result, d time.Duration, points int) {
	s.mu.Lock()
	s.codes[r.Code]++
	if r.Err != nil {
		s.lastErr = r.Err.Error()
	}
	if r.Outcome == Accepted {
		// Keep a uniform sample once the buffer is full (reservoir).
		s.latSeen++
		if len(s.lat) < latencyKeep {
			s.lat = append(s.lat, d)
		} else if j := rand.Int64N(s.latSeen); j < latencyKeep {
			s.lat[j] = d
		}
		tr := s.perTenant[tenant]
		tr.Requests++
		tr.Points += int64(points - r.Rejected)
	}
	s.mu.Unlock()
	if r.Outcome == Accepted {
		s.requests.Add(1)
		s.points.Add(int64(points - r.Rejected))
		s.rejected.Add(int64(r.Rejected))
	}
}

// Run sends load until Duration passes, every agent has sent Requests, or
// ctx ends.
func Run(ctx context.Context, c Config) (Report, error) {
	if c.Agents <= 0 {
		return Report{}, fmt.Errorf("loadgen: agents must be > 0, got %d", c.Agents)
	}
	if c.Tenants <= 0 || c.Tenants > c.Agents {
		return Report{}, fmt.Errorf("loadgen: tenants must be between 1 and agents (%d), got %d", c.Agents, c.Tenants)
	}
	if c.InFlight < 0 {
		return Report{}, fmt.Errorf("loadgen: in-flight cap must be >= 0, got %d", c.InFlight)
	}
	if !c.Since.IsZero() && (c.Step < time.Millisecond || c.Requests <= 0) {
		return Report{}, fmt.Errorf("loadgen: Since needs a Step of at least 1ms and a Requests limit, got %s and %d", c.Step, c.Requests)
	}
	if c.Shape == (Shape{}) {
		c.Shape = DefaultShape
	}
	if c.TenantName == nil {
		c.TenantName = DefaultTenantName
	}
	if c.Token == nil {
		c.Token = DefaultToken
	}
	if c.Claim == nil {
		c.Claim = func(t string) string { return t }
	}
	c.Concurrency = max(1, c.Concurrency)
	tr, err := NewTransport(c.Transport)
	if err != nil {
		return Report{}, err
	}
	defer func() { _ = tr.Close() }()
	if c.Drain <= 0 {
		c.Drain = 30 * time.Second
	}
	sendCtx := ctx // new requests
	if c.Duration > 0 {
		var cancel context.CancelFunc
		sendCtx, cancel = context.WithTimeout(ctx, c.Duration)
		defer cancel()
		ctx, cancel = context.WithTimeout(ctx, c.Duration+c.Drain)
		defer cancel()
	}

	st := &stats{codes: map[string]int64{}, perTenant: map[string]*TenantReport{}}
	for i := 0; i < c.Tenants; i++ {
		st.perTenant[c.TenantName(i)] = &TenantReport{}
	}
	// Each worker ticks at its share of the rate.
	workers := c.Agents * c.Concurrency
	var interval time.Duration
	if c.Rate > 0 {
		interval = time.Duration(float64(workers) / c.Rate * float64(time.Second))
	}
	points := c.Shape.Points()
	var slots chan struct{}
	if c.InFlight > 0 {
		slots = make(chan struct{}, c.InFlight)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for a := 0; a < c.Agents; a++ {
		tenant := c.TenantName(a % c.Tenants)
		ag := &agentState{
			Agent: Agent{Index: c.FirstAgent + a, Tenant: c.Claim(tenant)},
			token: c.Token(tenant), tenant: tenant, limit: int64(c.Requests),
			since: c.Since, step: c.Step,
		}
		if c.AgentToken != nil {
			ag.token = c.AgentToken(c.FirstAgent + a)
		}
		for w := 0; w < c.Concurrency; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ag.work(sendCtx, ctx, c, tr, st, interval, points, slots)
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)

	rep := Report{
		Protocol: c.Transport.Protocol, Agents: c.Agents, Tenants: c.Tenants, PointsPerReq: points,
		Seconds: elapsed.Seconds(), Requests: st.requests.Load(), Points: st.points.Load(),
		Rejected: st.rejected.Load(), Retries: st.retries.Load(), Failed: st.failed.Load(), Unacked: st.unacked.Load(),
		Codes: st.codes, LastError: st.lastErr, PerTenant: map[string]TenantReport{},
	}
	rep.PointsPerSecond = float64(rep.Points) / elapsed.Seconds()
	for t, r := range st.perTenant {
		rep.PerTenant[t] = *r
	}
	rep.LatencyMS = percentiles(st.lat)
	return rep, nil
}

type agentState struct {
	Agent
	token, tenant string
	limit         int64
	seq           atomic.Int64
	mu            sync.Mutex
	lastTS        time.Time
	since         time.Time
	step          time.Duration
}

// next hands out the agent's next request number and a timestamp strictly
// after the previous one (by 1 ms at least: stores keep milliseconds).
func (a *agentState) next() (int64, time.Time, bool) {
	n := a.seq.Add(1)
	if a.limit > 0 && n > a.limit {
		return 0, time.Time{}, false
	}
	if !a.since.IsZero() {
		return n, a.since.Add(time.Duration(n-1) * a.step), true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	ts := time.Now().Truncate(time.Millisecond)
	if !ts.After(a.lastTS) {
		ts = a.lastTS.Add(time.Millisecond)
	}
	a.lastTS = ts
	return n, ts, true
}

// work sends the agent's requests while sendCtx lasts and retries each
// until it is accepted or ctx ends. With slots, each attempt holds one
// from its send to its answer.
func (a *agentState) work(sendCtx, ctx context.Context, c Config, tr Transport, st *stats, interval time.Duration, points int, slots chan struct{}) {
	start := time.Now()
	if !a.since.IsZero() {
		start = a.since
	}
	req := newRequest(a.Agent, c.Shape, start.Add(-time.Hour))
	if c.Mutate != nil {
		c.Mutate(a.Agent, req.md)
	}
	var tick *time.Ticker
	if interval > 0 {
		// Spread the workers over the interval.
		offset := time.Duration(rand.Int64N(int64(interval)))
		select {
		case <-sendCtx.Done():
			return
		case <-time.After(offset):
		}
		tick = time.NewTicker(interval)
		defer tick.Stop()
	}
	for sendCtx.Err() == nil {
		seq, ts, ok := a.next()
		if !ok {
			return
		}
		req.stamp(ts, seq)
		raw, err := marshaler.MarshalMetrics(req.md)
		if err != nil {
			st.mu.Lock()
			st.lastErr = err.Error()
			st.mu.Unlock()
			st.failed.Add(1)
			return
		}
		backoff := 50 * time.Millisecond
		for {
			if slots != nil {
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					st.unacked.Add(1)
					return
				}
			}
			t0 := time.Now()
			r := tr.Send(ctx, raw, a.token, a.tenant)
			st.record(a.tenant, r, time.Since(t0), points)
			if slots != nil {
				<-slots
			}
			if r.Outcome == Accepted {
				break
			}
			if r.Outcome == Permanent || !c.Retry {
				st.failed.Add(1)
				break
			}
			if ctx.Err() != nil {
				st.unacked.Add(1)
				return
			}
			st.retries.Add(1)
			select {
			case <-ctx.Done():
				st.unacked.Add(1)
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
		}
		if tick != nil {
			select {
			case <-sendCtx.Done():
				return
			case <-tick.C:
			}
		}
	}
}

var marshaler = &pmetric.ProtoMarshaler{}

func percentiles(lat []time.Duration) map[string]float64 {
	out := map[string]float64{}
	if len(lat) == 0 {
		return out
	}
	s := slices.Clone(lat)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) float64 {
		i := int(q * float64(len(s)-1))
		return float64(s[i].Microseconds()) / 1000
	}
	out["p50"], out["p90"], out["p99"], out["max"] = at(0.5), at(0.9), at(0.99), at(1)
	return out
}
