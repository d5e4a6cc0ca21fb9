package usage

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxClockSkew is how far the job's clock may be from the store's: hours
// are cut by the job's clock and samples filed by theirs.
const MaxClockSkew = 30 * time.Second

// Verify checks what billing depends on in the store before the job runs:
// deduplication on (a re-sent batch must not be billed twice), retention
// covering every hour that may still be computed (horizon: the backfill,
// or the grace and last recheck), and the job's clock within MaxClockSkew
// of the store's. It reads VictoriaMetrics' /flags page at the store's
// host; a store without one (another vendor) fails with an error that
// says so, and the caller's configuration names the switch that skips it.
func (s *Source) Verify(ctx context.Context, horizon time.Duration, now func() time.Time) error {
	u, err := url.Parse(s.StoreURL)
	if err != nil {
		return err
	}
	flagsURL := u.Scheme + "://" + u.Host + "/flags"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, flagsURL, http.NoBody)
	if err != nil {
		return err
	}
	sent := now()
	resp, err := s.client().Do(req)
	if err != nil {
		return fmt.Errorf("reading the store's flags (%s): %w", flagsURL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	got := now()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reading the store's flags (%s): it answered %s; it is not a VictoriaMetrics node", flagsURL, resp.Status)
	}
	flags, err := parseFlags(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading the store's flags (%s): %w", flagsURL, err)
	}
	// /flags lists the flags that were set; the others have their defaults
	// (no deduplication, a retention of one month).
	var errs []error
	dedup := flags["dedup.minScrapeInterval"]
	if d, err := time.ParseDuration(dedup); err != nil || d <= 0 {
		errs = append(errs, fmt.Errorf("the store runs without deduplication (-dedup.minScrapeInterval=%q): a batch an agent or gateway sent twice would be billed twice; start it with -dedup.minScrapeInterval=1ms", dedup))
	}
	ret, ok := flags["retentionPeriod"]
	if !ok {
		ret = "1"
	}
	if d, err := ParseRetention(ret); err != nil {
		errs = append(errs, fmt.Errorf("the store's -retentionPeriod=%q: %w", ret, err))
	} else if d < horizon {
		errs = append(errs, fmt.Errorf("the store's -retentionPeriod=%s keeps less than the %s the usage job may still compute (backfill, grace and last recheck): an hour rechecked after its data expired would fall; raise -retentionPeriod", ret, horizon))
	}
	if date, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		// The Date header has whole seconds: the store's clock was in
		// [date, date+1s) at some instant in [sent, got].
		mid := sent.Add(got.Sub(sent) / 2)
		skew := mid.Sub(date.Add(500 * time.Millisecond))
		if skew < 0 {
			skew = -skew
		}
		if skew > MaxClockSkew+got.Sub(sent) {
			errs = append(errs, fmt.Errorf("this clock is %s away from the store's (its Date header): hours would be cut at other instants than the samples are filed; sync both with NTP", skew.Round(time.Second)))
		}
	} else {
		errs = append(errs, errors.New("the store's answer has no Date header to compare clocks with"))
	}
	return errors.Join(errs...)
}

// parseFlags reads VictoriaMetrics' /flags page: one -name="value" a line.
func parseFlags(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		name, value, ok := strings.Cut(strings.TrimPrefix(line, "-"), "=")
		if !ok || !strings.HasPrefix(line, "-") {
			continue
		}
		if uq, err := strconv.Unquote(value); err == nil {
			value = uq
		}
		out[name] = value
	}
	return out, sc.Err()
}

// ParseRetention reads VictoriaMetrics' -retentionPeriod: a number with a
// unit of h, d, w or y, or a bare number of months.
func ParseRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty")
	}
	unit := s[len(s)-1]
	num := s[:len(s)-1]
	mult := time.Duration(0)
	switch unit {
	case 'h':
		mult = time.Hour
	case 'd':
		mult = 24 * time.Hour
	case 'w':
		mult = 7 * 24 * time.Hour
	case 'y':
		mult = 365 * 24 * time.Hour
	default:
		num, mult = s, 31*24*time.Hour
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("%q is not a retention period", s)
	}
	return time.Duration(f * float64(mult)), nil
}
