package usage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ErrPartial is a store's answer marked partial (isPartial: a cluster node
// did not answer): billing it would undercount, so it is an error and the
// hour is asked again.
var ErrPartial = errors.New("the store's answer is partial (isPartial: some storage nodes did not answer)")

type row struct {
	labels map[string]string
	value  float64
}

func (s *Source) instantRows(ctx context.Context, query string, at time.Time) ([]row, error) {
	q := url.Values{"query": {query}, "time": {formatTime(at)}, "nocache": {"1"}}
	var body struct {
		IsPartial bool `json:"isPartial"`
		Data      struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := s.postJSON(ctx, s.StoreURL+"/api/v1/query", q, &body); err != nil {
		return nil, err
	}
	if body.IsPartial {
		return nil, ErrPartial
	}
	out := make([]row, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		v, err := parseValue(r.Value[1])
		if err != nil {
			return nil, fmt.Errorf("query %q: %w", query, err)
		}
		out = append(out, row{labels: r.Metric, value: v})
	}
	return out, nil
}

func (s *Source) labelValues(ctx context.Context, label string, start, end time.Time) ([]string, error) {
	q := url.Values{"start": {formatTime(start)}, "end": {formatTime(end)}}
	var body struct {
		IsPartial bool     `json:"isPartial"`
		Data      []string `json:"data"`
	}
	if err := s.getJSON(ctx, s.StoreURL+"/api/v1/label/"+url.PathEscape(label)+"/values", q, &body); err != nil {
		return nil, err
	}
	if body.IsPartial {
		return nil, ErrPartial
	}
	return body.Data, nil
}

// readMeters is, per tenant, the queries answered and the series returned
// in the hour. A record the read path sent twice (a retry whose first
// attempt had landed) is counted once: each carries a unique query_id.
func (s *Source) readMeters(ctx context.Context, hour time.Time, set []string) (map[string]meterValues, error) {
	filter := ""
	if set != nil {
		quoted := make([]string, len(set))
		for i, t := range set {
			quoted[i] = strconv.Quote(t)
		}
		filter = " tenant_id:in(" + strings.Join(quoted, ", ") + ")"
	}
	query := fmt.Sprintf(`_time:[%s, %s) _stream:%s%s | uniq by (tenant_id, query_id, series, series_fetched, exec_ms) | stats by (tenant_id) count() queries, sum(series) series, sum(series_fetched) fetched, sum(exec_ms) exec_ms`,
		hour.Format(time.RFC3339), hour.Add(time.Hour).Format(time.RFC3339), ReadEventsStream, filter)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.EventsURL+"/select/logsql/query",
		strings.NewReader(url.Values{"query": {query}}.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range s.EventsHeaders {
		req.Header.Set(k, v)
	}
	ec := s.EventsClient
	if ec == nil {
		ec = s.client()
	}
	resp, err := ec.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read meters: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return nil, fmt.Errorf("read meters: the event store answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	out := map[string]meterValues{}
	dec := json.NewDecoder(resp.Body)
	for {
		var line struct {
			Tenant  string `json:"tenant_id"`
			Queries string `json:"queries"`
			Series  string `json:"series"`
			Fetched string `json:"fetched"`
			ExecMs  string `json:"exec_ms"`
		}
		if err := dec.Decode(&line); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("read meters: %w", err)
		}
		var v [4]int64
		var errs [4]error
		for i, f := range []string{line.Queries, line.Series, line.Fetched, line.ExecMs} {
			v[i], errs[i] = parseCount(f)
		}
		if err := errors.Join(errs[:]...); err != nil {
			return nil, fmt.Errorf("read meters of %s: %w", line.Tenant, err)
		}
		out[line.Tenant] = meterValues{ReadQueries: v[0], ReadSeries: v[1], ReadSeriesFetched: v[2], ReadExecMs: v[3]}
	}
	return out, nil
}

// parseCount reads a LogsQL stats value: an integer (a sum of no values
// is empty or NaN: 0).
func parseCount(s string) (int64, error) {
	if s == "" || s == "NaN" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || f < 0 || f != math.Trunc(f) {
		return 0, fmt.Errorf("%q is not a count", s)
	}
	return int64(f), nil
}

func (s *Source) client() *http.Client {
	if s.Client != nil {
		return s.Client
	}
	return http.DefaultClient
}

func (s *Source) getJSON(ctx context.Context, u string, q url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"?"+q.Encode(), http.NoBody)
	if err != nil {
		return err
	}
	return s.do(req, out)
}

func (s *Source) postJSON(ctx context.Context, u string, q url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(q.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return s.do(req, out)
}

func (s *Source) do(req *http.Request, out any) error {
	resp, err := s.client().Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return fmt.Errorf("the store answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

func parseValue(v any) (float64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("value %v is not a string", v)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("value %q is not a number", s)
	}
	return f, nil
}
