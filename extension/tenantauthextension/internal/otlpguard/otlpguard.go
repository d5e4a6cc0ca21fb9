// Package otlpguard checks an OTLP protobuf request on the wire, before pdata
// decodes it: the nesting depth of attribute values (pdata has no limit, and
// a few MB of nested array_values exhaust the goroutine stack and abort the
// whole process) and the number of attributes and values (each costs ~100
// bytes decoded for ~4 on the wire). It walks the bytes in place and
// allocates nothing.
package otlpguard

import (
	"errors"
	"fmt"
)

// Limits bound one request.
type Limits struct {
	// MaxDepth is the deepest nesting of AnyValue (array_value, kvlist_value)
	// accepted; a plain attribute value is depth 1.
	MaxDepth int
	// MaxValues bounds the attributes (KeyValue) and values (AnyValue) of
	// the whole request together.
	MaxValues int
}

// Signal is the kind of export request.
type Signal int

// Signals.
const (
	Metrics Signal = iota
	Logs
	Traces
)

// Errors the check returns (wrapped with detail).
var (
	ErrMalformed = errors.New("malformed protobuf")
	ErrTooDeep   = errors.New("attribute value nesting too deep")
	ErrTooMany   = errors.New("too many attributes and values")
)

// msg is a message type of the OTLP schema that can hold attributes.
type msg uint8

const (
	mNone msg = iota
	mMetricsReq
	mResourceMetrics
	mScopeMetrics
	mMetric
	mGauge // gauge and sum: data_points = 1
	mHistogram
	mExpHistogram
	mSummary
	mNumberDP
	mHistogramDP
	mExpHistogramDP
	mSummaryDP
	mExemplar
	mLogsReq
	mResourceLogs
	mScopeLogs
	mLogRecord
	mTracesReq
	mResourceSpans
	mScopeSpans
	mSpan
	mSpanEvent
	mSpanLink
	mResource
	mScope
	mKeyValue
	mAnyValue
	mArrayValue
	mKVList
)

// child says which length-delimited field of a message is a message to
// descend into; every other field is skipped after its wire format is checked.
type child struct {
	field uint64
	typ   msg
}

var schema = [...][]child{
	mMetricsReq:      {{1, mResourceMetrics}},
	mResourceMetrics: {{1, mResource}, {2, mScopeMetrics}},
	mScopeMetrics:    {{1, mScope}, {2, mMetric}},
	mMetric:          {{5, mGauge}, {7, mGauge}, {9, mHistogram}, {10, mExpHistogram}, {11, mSummary}, {12, mKeyValue}},
	mGauge:           {{1, mNumberDP}},
	mHistogram:       {{1, mHistogramDP}},
	mExpHistogram:    {{1, mExpHistogramDP}},
	mSummary:         {{1, mSummaryDP}},
	mNumberDP:        {{7, mKeyValue}, {5, mExemplar}},
	mHistogramDP:     {{9, mKeyValue}, {8, mExemplar}},
	mExpHistogramDP:  {{1, mKeyValue}, {11, mExemplar}},
	mSummaryDP:       {{7, mKeyValue}},
	mExemplar:        {{7, mKeyValue}},
	mLogsReq:         {{1, mResourceLogs}},
	mResourceLogs:    {{1, mResource}, {2, mScopeLogs}},
	mScopeLogs:       {{1, mScope}, {2, mLogRecord}},
	mLogRecord:       {{6, mKeyValue}, {5, mAnyValue}},
	mTracesReq:       {{1, mResourceSpans}},
	mResourceSpans:   {{1, mResource}, {2, mScopeSpans}},
	mScopeSpans:      {{1, mScope}, {2, mSpan}},
	mSpan:            {{9, mKeyValue}, {11, mSpanEvent}, {13, mSpanLink}},
	mSpanEvent:       {{3, mKeyValue}},
	mSpanLink:        {{4, mKeyValue}},
	mResource:        {{1, mKeyValue}},
	mScope:           {{3, mKeyValue}},
	mKeyValue:        {{2, mAnyValue}},
	mAnyValue:        {{5, mArrayValue}, {6, mKVList}},
	mArrayValue:      {{1, mAnyValue}},
	mKVList:          {{1, mKeyValue}},
}

// children is schema as a table indexed by field number (OTLP's message
// fields that matter here are all below 16): one lookup per field.
var children = func() (t [mKVList + 1][16]msg) {
	for typ, cs := range schema {
		for _, c := range cs {
			t[typ][c.field] = c.typ
		}
	}
	return t
}()

var roots = [...]msg{Metrics: mMetricsReq, Logs: mLogsReq, Traces: mTracesReq}

// Check validates one export request of the given signal.
func Check(b []byte, sig Signal, lim Limits) error {
	c := checker{lim: lim}
	return c.walk(b, roots[sig], 0)
}

type checker struct {
	lim    Limits
	values int
}

// walk checks one message. depth counts the AnyValues above it.
func (c *checker) walk(b []byte, typ msg, depth int) error {
	for len(b) > 0 {
		var tag uint64
		if b[0] < 0x80 { // every OTLP field number fits a one-byte tag
			tag, b = uint64(b[0]), b[1:]
		} else {
			t, n := uvarint(b)
			if n <= 0 {
				return fmt.Errorf("%w: bad field tag", ErrMalformed)
			}
			tag, b = t, b[n:]
		}
		field, wire := tag>>3, tag&7
		if field == 0 {
			return fmt.Errorf("%w: field number 0", ErrMalformed)
		}
		switch wire {
		case 0:
			_, n := uvarint(b)
			if n <= 0 {
				return fmt.Errorf("%w: bad varint", ErrMalformed)
			}
			b = b[n:]
		case 1:
			if len(b) < 8 {
				return fmt.Errorf("%w: truncated fixed64", ErrMalformed)
			}
			b = b[8:]
		case 5:
			if len(b) < 4 {
				return fmt.Errorf("%w: truncated fixed32", ErrMalformed)
			}
			b = b[4:]
		case 2:
			var l uint64
			var n int
			if len(b) > 0 && b[0] < 0x80 {
				l, n = uint64(b[0]), 1
			} else {
				l, n = uvarint(b)
			}
			if n <= 0 || l > uint64(len(b)-n) {
				return fmt.Errorf("%w: length beyond the message", ErrMalformed)
			}
			sub := b[n : n+int(l)]
			b = b[n+int(l):]
			next := childOf(typ, field)
			if next == mNone {
				continue
			}
			d := depth
			switch next {
			case mAnyValue:
				d++
				if d > c.lim.MaxDepth {
					return fmt.Errorf("%w: deeper than %d", ErrTooDeep, c.lim.MaxDepth)
				}
				c.values++
			case mKeyValue:
				c.values++
			}
			if c.values > c.lim.MaxValues {
				return fmt.Errorf("%w: more than %d", ErrTooMany, c.lim.MaxValues)
			}
			if next == mAnyValue && scalar(sub) {
				continue // nothing nested: no need to walk it
			}
			if err := c.walk(sub, next, d); err != nil {
				return err
			}
		default:
			// Groups (3, 4) are not used by OTLP; 6 and 7 do not exist.
			return fmt.Errorf("%w: wire type %d", ErrMalformed, wire)
		}
	}
	return nil
}

// scalar reports whether an AnyValue is exactly one well-formed scalar
// field (string 1, bool 2, int 3, double 4, bytes 7): the common case, which
// holds nothing nested and so needs no walk.
func scalar(b []byte) bool {
	if len(b) < 2 || b[0] >= 0x80 {
		return false
	}
	switch tag := b[0]; tag {
	case 1<<3 | 2, 7<<3 | 2: // string, bytes
		l, n := uvarint(b[1:])
		return n > 0 && l == uint64(len(b)-1-n)
	case 2 << 3, 3 << 3: // bool, int (wire type 0, varint)
		_, n := uvarint(b[1:])
		return n > 0 && 1+n == len(b)
	case 4<<3 | 1: // double
		return len(b) == 9
	default:
		return false
	}
}

func childOf(typ msg, field uint64) msg {
	if field >= 16 {
		return mNone
	}
	return children[typ][field]
}

// uvarint decodes a protobuf varint; n <= 0 means malformed or truncated.
func uvarint(b []byte) (v uint64, n int) {
	for i := 0; i < len(b) && i < 10; i++ {
		c := b[i]
		if i == 9 && c > 1 {
			return 0, -1
		}
		v |= uint64(c&0x7f) << (7 * uint(i))
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, -1
}

// CheckJSON bounds the nesting of an OTLP/JSON body: any AnyValue nesting
// allowed on the protobuf side, plus the schema's own levels. It does not
// validate the JSON itself (the decoder does).
func CheckJSON(b []byte, lim Limits) error {
	// Each AnyValue level is two JSON levels ({"arrayValue":{"values":[{...}]}})
	// plus the array; the request itself is about 12 levels deep.
	max := 3*lim.MaxDepth + 12
	depth, inString, escaped := 0, false, false
	for _, ch := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case ch == '\\':
				escaped = true
			case ch == '"':
				inString = false
			}
		case ch == '"':
			inString = true
		case ch == '{' || ch == '[':
			depth++
			if depth > max {
				return fmt.Errorf("%w: JSON nesting deeper than %d", ErrTooDeep, max)
			}
		case ch == '}' || ch == ']':
			depth--
		}
	}
	return nil
}
