package otlpguard

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

var defaults = Limits{MaxDepth: 16, MaxValues: 100_000}

// nest puts a value nested depth levels deep (depth 1 = a plain value) into v.
func nest(v pcommon.Value, depth int, kvlist bool) {
	for i := 1; i < depth; i++ {
		if kvlist && i%2 == 0 {
			v = v.SetEmptyMap().PutEmpty("k")
		} else {
			v = v.SetEmptySlice().AppendEmpty()
		}
	}
	v.SetStr("leaf")
}

func metricsWithDepth(t testing.TB, depth int, kvlist bool) []byte {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("host.name", "vm-1")
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("hw.gpu.utilization")
	dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetDoubleValue(0.5)
	nest(dp.Attributes().PutEmpty("deep"), depth, kvlist)
	b, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	require.NoError(t, err)
	return b
}

func TestDepthLimitOnEverySignalAndPlace(t *testing.T) {
	for _, kvlist := range []bool{false, true} {
		require.NoError(t, Check(metricsWithDepth(t, 16, kvlist), Metrics, defaults), "depth 16 is allowed")
		require.ErrorIs(t, Check(metricsWithDepth(t, 17, kvlist), Metrics, defaults), ErrTooDeep)
	}

	places := map[string]func(depth int) ([]byte, Signal){
		"resource attribute": func(depth int) ([]byte, Signal) {
			md := pmetric.NewMetrics()
			nest(md.ResourceMetrics().AppendEmpty().Resource().Attributes().PutEmpty("x"), depth, false)
			b, _ := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
			return b, Metrics
		},
		"scope attribute": func(depth int) ([]byte, Signal) {
			md := pmetric.NewMetrics()
			nest(md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Scope().Attributes().PutEmpty("x"), depth, false)
			b, _ := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
			return b, Metrics
		},
		"histogram exemplar": func(depth int) ([]byte, Signal) {
			md := pmetric.NewMetrics()
			m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
			ex := m.SetEmptyHistogram().DataPoints().AppendEmpty().Exemplars().AppendEmpty()
			nest(ex.FilteredAttributes().PutEmpty("x"), depth, false)
			b, _ := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
			return b, Metrics
		},
		"metric metadata": func(depth int) ([]byte, Signal) {
			md := pmetric.NewMetrics()
			m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
			m.SetEmptySum()
			nest(m.Metadata().PutEmpty("x"), depth, false)
			b, _ := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
			return b, Metrics
		},
		"log body": func(depth int) ([]byte, Signal) {
			ld := plog.NewLogs()
			nest(ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body(), depth, true)
			b, _ := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
			return b, Logs
		},
		"span event attribute": func(depth int) ([]byte, Signal) {
			td := ptrace.NewTraces()
			ev := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().Events().AppendEmpty()
			nest(ev.Attributes().PutEmpty("x"), depth, false)
			b, _ := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
			return b, Traces
		},
		"span link attribute": func(depth int) ([]byte, Signal) {
			td := ptrace.NewTraces()
			l := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().Links().AppendEmpty()
			nest(l.Attributes().PutEmpty("x"), depth, false)
			b, _ := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
			return b, Traces
		},
	}
	for name, build := range places {
		ok, sig := build(16)
		require.NoError(t, Check(ok, sig, defaults), name)
		bad, sig := build(17)
		require.ErrorIs(t, Check(bad, sig, defaults), ErrTooDeep, name)
	}
}

// rawNested builds the attack payload directly: an attribute whose value is
// array_value nested levels deep. Each level only wraps the next, so the
// bytes are every level's two headers, outermost first, then the leaf.
func rawNested(levels int) []byte {
	leaf := []byte{0x0a, 0x01, 'x'} // AnyValue.string_value = "x"
	sizes := make([]int, levels+1)  // sizes[i]: bytes of the AnyValue i levels above the leaf
	sizes[0] = len(leaf)
	for i := 1; i <= levels; i++ {
		arr := headerLen(1, sizes[i-1]) + sizes[i-1] // ArrayValue.values = 1
		sizes[i] = headerLen(5, arr) + arr           // AnyValue.array_value = 5
	}
	var v []byte
	for i := levels; i >= 1; i-- {
		arr := headerLen(1, sizes[i-1]) + sizes[i-1]
		v = appendTagLen(v, 5, arr)
		v = appendTagLen(v, 1, sizes[i-1])
	}
	v = append(v, leaf...)
	kv := append(appendTagLen(nil, 1, 1), 'k')
	kv = append(appendTagLen(kv, 2, len(v)), v...)
	res := append(appendTagLen(nil, 1, len(kv)), kv...)  // Resource.attributes
	rm := append(appendTagLen(nil, 1, len(res)), res...) // ResourceMetrics.resource
	return append(appendTagLen(nil, 1, len(rm)), rm...)  // request.resource_metrics
}

func headerLen(field, n int) int { return len(appendTagLen(nil, field, n)) }

func appendTagLen(b []byte, field, n int) []byte {
	b = binary.AppendUvarint(b, uint64(field<<3|2))
	return binary.AppendUvarint(b, uint64(n))
}

func TestTheProcessKillingPayloadIsRefusedCheaply(t *testing.T) {
	payload := rawNested(1_500_000)
	require.Greater(t, len(payload), 8<<20)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	require.ErrorIs(t, Check(payload, Metrics, defaults), ErrTooDeep)
	runtime.ReadMemStats(&after)
	// Only the error message allocates: bytes, not a share of the payload
	// (a decoder would allocate several times the payload's 8 MB).
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<10))
}

func TestValueCountLimit(t *testing.T) {
	md := pmetric.NewMetrics()
	attrs := md.ResourceMetrics().AppendEmpty().Resource().Attributes()
	for i := 0; i < 60; i++ {
		attrs.PutInt(string(rune('a'+i%26))+string(rune('a'+i/26)), int64(i))
	}
	b, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	require.NoError(t, err)
	require.NoError(t, Check(b, Metrics, Limits{MaxDepth: 16, MaxValues: 120}), "60 attributes = 120 values")
	require.ErrorIs(t, Check(b, Metrics, Limits{MaxDepth: 16, MaxValues: 119}), ErrTooMany)
}

func TestMalformed(t *testing.T) {
	good := metricsWithDepth(t, 3, false)
	for name, b := range map[string][]byte{
		"truncated":        good[:len(good)-3],
		"length too long":  {0x0a, 0xff, 0x01, 0x00},
		"bad varint":       {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"group wire type":  {0x0b},
		"field zero":       {0x02, 0x00},
		"truncated fixed":  {0x09, 0x01, 0x02},
		"nested truncated": append([]byte{0x0a, 0x04}, 0x0a, 0x05, 0x00, 0x00),
	} {
		require.ErrorIs(t, Check(b, Metrics, defaults), ErrMalformed, name)
	}
	require.NoError(t, Check(nil, Metrics, defaults), "an empty request is a valid empty message")
}

func TestJSON(t *testing.T) {
	ok := []byte(`{"resourceMetrics":[{"resource":{"attributes":[{"key":"a","value":{"stringValue":"[[[{{{"}}]}}]}`)
	require.NoError(t, CheckJSON(ok, defaults), "brackets inside strings do not count")
	deep := bytes.Repeat([]byte(`{"arrayValue":{"values":[`), 30)
	require.ErrorIs(t, CheckJSON(deep, defaults), ErrTooDeep)
	require.NoError(t, CheckJSON(bytes.Repeat([]byte(`{"arrayValue":{"values":[`), 16), defaults))
}

func FuzzCheck(f *testing.F) {
	f.Add(metricsWithDepth(f, 3, false), uint8(0))
	f.Add(metricsWithDepth(f, 16, true), uint8(0))
	f.Add(metricsWithDepth(f, 17, false), uint8(0))
	f.Add(rawNested(40), uint8(0))
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00}, uint8(1))
	f.Add([]byte{}, uint8(2))
	f.Fuzz(func(t *testing.T, b []byte, s uint8) {
		sig := Signal(s % 3)
		if Check(b, sig, defaults) != nil {
			return
		}
		// Whatever passes decodes without crashing, and what decodes is
		// within the limits.
		switch sig {
		case Metrics:
			md, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(b)
			if err == nil {
				require.LessOrEqual(t, md.DataPointCount(), len(b))
			}
		case Logs:
			ld, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(b)
			if err == nil {
				rls := ld.ResourceLogs()
				for i := 0; i < rls.Len(); i++ {
					sls := rls.At(i).ScopeLogs()
					for j := 0; j < sls.Len(); j++ {
						lrs := sls.At(j).LogRecords()
						for k := 0; k < lrs.Len(); k++ {
							require.LessOrEqual(t, valueDepth(lrs.At(k).Body()), defaults.MaxDepth)
						}
					}
				}
			}
		case Traces:
			_, _ = (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
		}
	})
}

func valueDepth(v pcommon.Value) int {
	switch v.Type() {
	case pcommon.ValueTypeSlice:
		d := 0
		s := v.Slice()
		for i := 0; i < s.Len(); i++ {
			d = max(d, valueDepth(s.At(i)))
		}
		return d + 1
	case pcommon.ValueTypeMap:
		d := 0
		v.Map().Range(func(_ string, x pcommon.Value) bool {
			d = max(d, valueDepth(x))
			return true
		})
		return d + 1
	default:
		return 1
	}
}

func BenchmarkCheckAgentRequest(b *testing.B) {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	for i := 0; i < 8; i++ {
		rm.Resource().Attributes().PutStr("k"+string(rune('a'+i)), "value")
	}
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	for i := 0; i < 340; i++ {
		dp := ms.AppendEmpty().SetEmptyGauge().DataPoints().AppendEmpty()
		dp.Attributes().PutStr("hw.id", "GPU-0000")
		dp.Attributes().PutStr("hw.name", "nvidia0")
		dp.SetDoubleValue(1)
	}
	payload, _ := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(payload, Metrics, defaults); err != nil {
			b.Fatal(err)
		}
	}
}

// The scalar fast path skips walking an AnyValue only when it is exactly one
// scalar field: a string followed by a nested array in the same AnyValue (a
// repeated oneof, which decoders accept, last one wins) is still walked.
func TestScalarFastPathCannotHideNesting(t *testing.T) {
	deep := rawNested(40)
	// Find the attribute's AnyValue and put a string field in front of it.
	kvStart := bytes.Index(deep, []byte{0x0a, 0x01, 'k'})
	require.Positive(t, kvStart)
	value := deep[kvStart+3:] // AnyValue field 2 header + the nested AnyValue
	_, n := binary.Uvarint(value[1:])
	inner := value[1+n:]
	prefixed := append([]byte{0x0a, 0x01, 'y'}, inner...) // string_value "y", then array_value
	kv := append(appendTagLen(nil, 1, 1), 'k')
	kv = append(appendTagLen(kv, 2, len(prefixed)), prefixed...)
	res := append(appendTagLen(nil, 1, len(kv)), kv...)
	rm := append(appendTagLen(nil, 1, len(res)), res...)
	req := append(appendTagLen(nil, 1, len(rm)), rm...)
	require.ErrorIs(t, Check(req, Metrics, defaults), ErrTooDeep)

	for _, tc := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"string", []byte{0x0a, 0x02, 'h', 'i'}, true},
		{"empty string", []byte{0x0a, 0x00}, true},
		{"bool", []byte{0x10, 0x01}, true},
		{"int", []byte{0x18, 0x96, 0x01}, true},
		{"double", []byte{0x21, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f}, true},
		{"bytes", []byte{0x3a, 0x01, 0xff}, true},
		{"string then more", []byte{0x0a, 0x01, 'x', 0x10, 0x01}, false},
		{"truncated string", []byte{0x0a, 0x05, 'x'}, false},
		{"array", []byte{0x2a, 0x00}, false},
		{"kvlist", []byte{0x32, 0x00}, false},
		{"empty", nil, false},
	} {
		require.Equal(t, tc.want, scalar(tc.b), tc.name)
	}
}
