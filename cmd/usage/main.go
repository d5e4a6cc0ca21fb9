// Command usage prints the usage records of an hour range as CSV
// (tenant,meter,hour,value,record_id), computed from the store after
// deduplication the way the tenant_usage receiver computes them: the same
// values and ids for the same data. For people who want a file.
//
//	usage report -store http://localhost:8428 -events http://localhost:9428 \
//	    -from 2026-12-01T00Z -to 2026-12-02T00Z [-tenant acme] > usage.csv
//
// -to is exclusive; an hour still open is reported as it stands.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "usage:", err)
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "report" {
		fmt.Fprintln(stderr, "usage: usage report -from HOUR -to HOUR [-store URL] [-events URL] [-tenant-label L] [-tenant T]")
		return errors.New("the only command is report")
	}
	fs := flag.NewFlagSet("usage report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	store := fs.String("store", "http://localhost:8428", "the metrics store's base URL (VictoriaMetrics)")
	events := fs.String("events", "http://localhost:9428", "the event store's base URL (VictoriaLogs: read meters); empty: none")
	label := fs.String("tenant-label", "tenant_id", "the store's tenant label")
	from := fs.String("from", "", "first hour (2026-12-01T10Z)")
	to := fs.String("to", "", "hour after the last (exclusive); default: -from plus one hour")
	tenant := fs.String("tenant", "", "only this tenant")
	eventsAccount := fs.String("events-account", "0", "the event-store account (AccountID) the read path writes its records to")
	eventsProject := fs.String("events-project", "1", "... and its project (ProjectID)")
	timeout := fs.Duration("timeout", 2*time.Minute, "per store request")
	concurrency := fs.Int("concurrency", 2, "queries in flight at the stores")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *from == "" {
		return errors.New("-from is required")
	}
	start, err := usage.ParseHour(*from)
	if err != nil {
		return fmt.Errorf("-from: %w", err)
	}
	end := start.Add(time.Hour)
	if *to != "" {
		if end, err = usage.ParseHour(*to); err != nil {
			return fmt.Errorf("-to: %w", err)
		}
	}
	if !end.After(start) {
		return fmt.Errorf("-to %s is not after -from %s", end.Format(usage.HourLayout), start.Format(usage.HourLayout))
	}
	if *tenant != "" {
		if err := tenantid.Validate(*tenant); err != nil {
			return fmt.Errorf("-tenant: %w", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	src := &usage.Source{
		StoreURL: strings.TrimRight(*store, "/"), EventsURL: strings.TrimRight(*events, "/"),
		TenantLabel: *label, Client: &http.Client{Timeout: *timeout}, Concurrency: *concurrency,
		EventsHeaders: map[string]string{"AccountID": *eventsAccount, "ProjectID": *eventsProject},
	}
	w := bufio.NewWriter(stdout)
	fmt.Fprintln(w, usage.CSVHeader)
	for h := start; h.Before(end); h = h.Add(time.Hour) {
		hr, err := src.Compute(ctx, h)
		if err != nil {
			return err
		}
		// A report with a tenant missing would read as a bill of zero.
		for t, err := range hr.Deferred {
			if *tenant == "" || t == *tenant {
				return fmt.Errorf("tenant %s: %w", t, err)
			}
		}
		for _, r := range hr.Records {
			if *tenant == "" || r.Tenant == *tenant {
				fmt.Fprintln(w, r.CSVLine())
			}
		}
	}
	return w.Flush()
}
