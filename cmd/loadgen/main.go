// Command loadgen sends agent-shaped OTLP metrics to a gateway (or any OTLP
// receiver) and reports what was accepted; `loadgen sink` is an OTLP/HTTP
// endpoint that counts what it is delivered; `loadgen credentials` writes the
// tenant_auth credentials file matching loadgen's tokens. See
// internal/testkit/loadgen and BENCHMARKS.md.
//
//	loadgen credentials -tenants 100 > creds.yaml
//	loadgen sink -listen 127.0.0.1:9411
//	loadgen -protocol grpc -endpoint 127.0.0.1:4317 -agents 50 -tenants 10 -duration 30s
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/loadgen"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "credentials":
			return credentials(args[1:])
		case "sink":
			return sink(args[1:])
		}
	}
	return send(args)
}

func credentials(args []string) error {
	fs := flag.NewFlagSet("loadgen credentials", flag.ContinueOnError)
	tenants := fs.Int("tenants", 1, "number of tenants (tenant-0000 ...)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tenants < 1 {
		return fmt.Errorf("-tenants must be >= 1, got %d", *tenants)
	}
	_, err := fmt.Print(loadgen.Credentials(*tenants, nil))
	return err
}

func sink(args []string) error {
	fs := flag.NewFlagSet("loadgen sink", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9411", "address to serve OTLP/HTTP on")
	every := fs.Duration("report-every", 0, "print the counts as a JSON line this often (0: only on exit)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	s := loadgen.NewSink()
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	fmt.Fprintf(os.Stderr, "loadgen sink: OTLP/HTTP on http://%s/v1/metrics\n", l.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	enc := json.NewEncoder(os.Stdout)
	if *every > 0 {
		t := time.NewTicker(*every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				_ = srv.Close()
				return enc.Encode(s.Counts())
			case <-t.C:
				if err := enc.Encode(s.Counts()); err != nil {
					return err
				}
			}
		}
	}
	<-ctx.Done()
	_ = srv.Close()
	return enc.Encode(s.Counts())
}

func send(args []string) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	var c loadgen.Config
	fs.StringVar(&c.Transport.Protocol, "protocol", "grpc", "grpc or http")
	fs.StringVar(&c.Transport.Endpoint, "endpoint", "127.0.0.1:4317", "grpc: host:port; http: base URL, /v1/metrics is appended")
	fs.StringVar(&c.Transport.CAFile, "ca-file", "", "TLS: the CA of the gateway's certificate (empty: plaintext)")
	fs.StringVar(&c.Transport.ServerName, "server-name", "", "TLS server name to verify (default: the endpoint's host)")
	fs.BoolVar(&c.Transport.Gzip, "gzip", false, "compress requests with gzip")
	fs.IntVar(&c.Transport.Conns, "conns", 4, "gRPC connections (HTTP: idle connections kept = 4x)")
	fs.StringVar(&c.Transport.TenantHeader, "tenant-header", "", "also send the agent's tenant in this header (for upstream tenant pipelines)")
	fs.DurationVar(&c.Transport.Timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.IntVar(&c.Agents, "agents", 10, "simulated agents (VMs)")
	fs.IntVar(&c.FirstAgent, "first-agent", 0, "number the agents from here (host.name loadgen-vm-<n>)")
	fs.IntVar(&c.Tenants, "tenants", 2, "tenants; agent i belongs to tenant-(i % tenants)")
	fs.IntVar(&c.Shape.GPUs, "gpus", loadgen.DefaultShape.GPUs, fmt.Sprintf("GPUs per agent (%d series each)", len(loadgen.GPUMetrics)))
	fs.IntVar(&c.Shape.CPUs, "cpus", loadgen.DefaultShape.CPUs, "vCPUs per agent (8 cpu-time series each)")
	fs.IntVar(&c.Concurrency, "concurrency", 1, "requests in flight per agent")
	fs.IntVar(&c.InFlight, "in-flight", 0, "requests in flight over all agents at most; the agents take turns (0: no cap)")
	fs.Float64Var(&c.Rate, "rate", 0, "requests per second over all agents (0: as fast as accepted)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to send (0: until -requests are done)")
	fs.IntVar(&c.Requests, "requests", 0, "requests per agent (0: no limit)")
	fs.BoolVar(&c.Retry, "retry", false, "resend retryably refused requests until accepted, as an agent's queue does")
	fs.DurationVar(&c.Drain, "drain", 30*time.Second, "with -retry: how long after -duration to keep retrying requests already started")
	token := fs.String("token", "", "send this token for every tenant instead of loadgen's own (\"-\": no token)")
	claim := fs.String("claim", "", "payload tenant.id to claim instead of the agent's own tenant")
	out := fs.String("out", "", "also write the JSON report to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.Duration == 0 && c.Requests == 0 {
		return errors.New("set -duration or -requests: the run would never end")
	}
	switch *token {
	case "":
	case "-":
		c.Token = func(string) string { return "" }
	default:
		c.Token = func(string) string { return *token }
	}
	if *claim != "" {
		c.Claim = func(string) string { return *claim }
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := loadgen.Run(ctx, c)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	if *out != "" {
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "loadgen: %d points accepted in %.1fs (%.0f/s), p99 %.1f ms, %d failed, %d retries\n",
		rep.Points, rep.Seconds, rep.PointsPerSecond, rep.LatencyMS["p99"], rep.Failed, rep.Retries)
	if rep.Points == 0 && (rep.Failed > 0 || rep.Unacked > 0) {
		return fmt.Errorf("nothing was accepted (last error: %s)", rep.LastError)
	}
	return nil
}
