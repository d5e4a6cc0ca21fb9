package tenantqueryextension

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"time"
)

// scopeParams builds the parameters forwarded to the store from those the
// client sent (URL query and form body, already decoded). Only the
// endpoint's allowlisted names survive; the rest are dropped whatever their
// spelling, encoding or number, so extra_label, extra_filters[] and any
// parameter a later store release adds never reach the store from a
// client. The timeout and, where the endpoint takes one, the limit are held
// to the configured limits. The tenant's own scope is added by the caller,
// after this, where no client value can meet it.
//
// dropped counts the parameter names removed.
func scopeParams(ep *endpoint, sent url.Values, limits LimitsConfig) (out url.Values, dropped int, err error) {
	out = make(url.Values, len(sent)+2)
	for name, values := range sent {
		if !ep.params[name] {
			dropped++
			continue
		}
		out[name] = values
	}
	timeout, err := clampTimeout(out.Get("timeout"), limits.QueryTimeout)
	if err != nil {
		return nil, dropped, err
	}
	out.Set("timeout", formatSeconds(timeout))
	if ep.limited {
		limit, err := clampLimit(out.Get("limit"), limits.MaxSeries)
		if err != nil {
			return nil, dropped, err
		}
		out.Set("limit", strconv.Itoa(limit))
	}
	return out, dropped, nil
}

// clampTimeout reads a Prometheus timeout (float seconds or a duration like
// 30s) and holds it to max; a missing one is max.
func clampTimeout(sent string, maxTimeout time.Duration) (time.Duration, error) {
	if sent == "" {
		return maxTimeout, nil
	}
	d, err := parsePromDuration(sent)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("timeout: %q is not a positive duration", sent)
	}
	return min(d, maxTimeout), nil
}

func parsePromDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || f > math.MaxInt64/float64(time.Second) {
			return 0, fmt.Errorf("out of range")
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	return time.ParseDuration(s)
}

// clampLimit holds a series limit to maxSeries; missing, 0 (which the API
// reads as "no limit") and anything above become maxSeries.
func clampLimit(sent string, maxSeries int) (int, error) {
	if sent == "" {
		return maxSeries, nil
	}
	n, err := strconv.Atoi(sent)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("limit: %q is not a non-negative integer", sent)
	}
	if n == 0 || n > maxSeries {
		return maxSeries, nil
	}
	return n, nil
}

func formatSeconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// scopeQuery is the URL query the store receives for a tenant: the scope
// parameter alone (POST, where the client's parameters go in the body), or
// the client's scoped parameters with it (GET). The scope goes last and
// is the only extra_label: the store ANDs it with every selector.
func scopeQuery(params url.Values, tenantLabel, tenant string) string {
	q := ""
	if params != nil {
		q = params.Encode()
	}
	if tenantLabel == "" {
		return q
	}
	scope := url.Values{"extra_label": {tenantLabel + "=" + tenant}}.Encode()
	if q == "" {
		return scope
	}
	return q + "&" + scope
}
