package loadgen

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
)

// ErrMalformed is returned for bytes that are not an OTLP metrics request.
var ErrMalformed = errors.New("loadgen: malformed OTLP metrics request")

// CountDataPoints counts the data points of a protobuf
// ExportMetricsServiceRequest on the wire, without decoding it into pdata:
// a sink that counts this way costs a fraction of what the gateway under test
// spends, so it is not what limits a benchmark.
func CountDataPoints(b []byte) (int, error) {
	return countIn(b, 0)
}

// Levels of the OTLP metrics schema, and the field that leads one level down.
// request.resource_metrics(1) > scope_metrics(2) > metrics(2) >
// gauge(5)|sum(7)|histogram(9)|exponential_histogram(10)|summary(11) > data_points(1).
const (
	lvRequest = iota
	lvResource
	lvScope
	lvMetric
	lvData
)

func countIn(b []byte, level int) (int, error) {
	n := 0
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return 0, ErrMalformed
		}
		b = b[l:]
		if typ != protowire.BytesType {
			l = protowire.ConsumeFieldValue(num, typ, b)
			if l < 0 {
				return 0, ErrMalformed
			}
			b = b[l:]
			continue
		}
		v, l := protowire.ConsumeBytes(b)
		if l < 0 {
			return 0, ErrMalformed
		}
		b = b[l:]
		switch {
		case level == lvRequest && num == 1, level == lvResource && num == 2, level == lvScope && num == 2:
			k, err := countIn(v, level+1)
			if err != nil {
				return 0, err
			}
			n += k
		case level == lvMetric && (num == 5 || num == 7 || num == 9 || num == 10 || num == 11):
			k, err := countIn(v, lvData)
			if err != nil {
				return 0, err
			}
			n += k
		case level == lvData && num == 1:
			n++
		}
	}
	return n, nil
}
