package tenantauthextension

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/extension/extensionmiddleware"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/otelcol-gpu/otelcol-gpu/extension/tenantauthextension/internal/otlpguard"
	"github.com/otelcol-gpu/otelcol-gpu/internal/admission"
	"github.com/otelcol-gpu/otelcol-gpu/internal/bufpool"
)

// admissionWait bounds how long a gRPC request waits for room in the
// in-flight limit (the codec has no request context to end the wait), and
// admissionRetry is the delay a refused client is told to wait.
const (
	admissionWait  = 5 * time.Second
	admissionRetry = time.Second
)

var (
	_ extensionmiddleware.GRPCServer = (*authenticator)(nil)
	_ extensionmiddleware.HTTPServer = (*authenticator)(nil)
)

// GetGRPCServerOptions hardens the otlp receiver's gRPC server when
// tenant_auth is listed in its middlewares:
//   - a tap handle checks the bearer token from the headers before the
//     message is read, so a stranger costs a header lookup, not a decode;
//   - the same tap handle refuses (retryably) while a send queue is full,
//     before the message is read;
//   - a codec checks each OTLP request on the wire (nesting, counts) before
//     pdata decodes it, and takes room for it in the in-flight limit
//     (admission), waiting or refusing; an interceptor turns a refusal into
//     InvalidArgument, or ResourceExhausted with RetryInfo;
//   - a stats handler gives the room back when the call ends.
func (a *authenticator) GetGRPCServerOptions(context.Context) ([]grpc.ServerOption, error) {
	return []grpc.ServerOption{
		grpc.InTapHandle(a.tap),
		grpc.ForceServerCodecV2(&guardCodec{delegate: encoding.GetCodecV2("proto"), a: a}),
		grpc.ChainUnaryInterceptor(a.refuseGuarded),
		grpc.StatsHandler(admissionRelease{a: a}),
	}, nil
}

func (a *authenticator) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	source := ""
	if p, ok := peer.FromContext(ctx); ok {
		source = sourceOf(p.Addr)
	}
	if _, err := a.check(ctx, info.Header, source); err != nil {
		return ctx, grpcStatus(err)
	}
	if admission.Queues(a.cfg.Admission.Queues).Full() {
		a.refused.Add(ctx, 1, reasonQueuesFull)
		return ctx, retryableStatus(admission.ErrQueuesFull, admissionRetry)
	}
	if a.limiter.Saturated() {
		a.refused.Add(ctx, 1, reasonBusy)
		return ctx, retryableStatus(admission.ErrBusy, admissionRetry)
	}
	return ctx, nil
}

var (
	reasonQueuesFull = metric.WithAttributes(attribute.String("reason", "queues_full"))
	reasonBusy       = metric.WithAttributes(attribute.String("reason", "busy"))
)

// retryableStatus is ResourceExhausted with RetryInfo: the collector's otlp
// exporter (and any client following the OTLP spec) retries after the delay.
func retryableStatus(err error, after time.Duration) error {
	return statusWithRetry(codes.ResourceExhausted, err.Error(), after).Err()
}

// statusWithRetry is a status of code with RetryInfo: the delay after which
// the client should try again.
func statusWithRetry(code codes.Code, msg string, after time.Duration) *status.Status {
	st, err := status.New(code, msg).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(after)})
	if err != nil {
		return status.New(code, msg)
	}
	return st
}

// grpcStatus is the status a refused credential gets: Unauthenticated, which
// an exporter does not retry; for a throttled one ResourceExhausted with
// RetryInfo, and while the credentials are unavailable Unavailable with
// RetryInfo, both of which the collector's otlp exporter retries after the
// delay.
func grpcStatus(err error) error {
	var throttled throttledError
	var unavailable unavailableError
	switch {
	case errors.As(err, &throttled):
		return retryableStatus(err, throttled.retryAfter)
	case errors.As(err, &unavailable):
		return unavailable.GRPCStatus().Err()
	}
	return status.Error(codes.Unauthenticated, err.Error())
}

// payloadGuard hands a codec's verdict to the interceptor that runs right
// after it on the same request: grpc-go reports any codec error as Internal,
// and a refused payload deserves InvalidArgument (or, when the gateway is
// busy, ResourceExhausted). It also holds each admitted request's room
// until the stats handler moves it to the call's own state.
type payloadGuard struct {
	refused sync.Map // request message -> error
	permits sync.Map // request message -> release func()
}

func (a *authenticator) refuseGuarded(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err, ok := a.guard.refused.LoadAndDelete(req); ok {
		if errors.Is(err.(error), admission.ErrBusy) {
			return nil, retryableStatus(err.(error), admissionRetry)
		}
		return nil, status.Error(codes.InvalidArgument, err.(error).Error())
	}
	return handler(ctx, req)
}

// admissionRelease gives a call's in-flight room back when the call ends,
// whatever ended it (an interceptor before the guard may refuse the call
// after the codec admitted it).
type admissionRelease struct{ a *authenticator }

type callKey struct{}

// callState is one call's room, and its message while a verdict on it may
// be left to clean up. An admitted message is not kept: the call may wait
// long after the pipeline is done with it (for its parts' sync with the
// queue on disk; for its turn to write the answer on a busy core), and the
// decoded request would stay live all that time, for the collector to mark
// at every cycle.
type callState struct {
	release func()
	msg     any
}

func (h admissionRelease) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, callKey{}, &callState{})
}

func (h admissionRelease) HandleRPC(ctx context.Context, s stats.RPCStats) {
	// Only two of a call's events matter; the context is looked up for them
	// alone (this runs for every event of every call).
	switch ev := s.(type) {
	case *stats.InPayload:
		cs, _ := ctx.Value(callKey{}).(*callState)
		if cs == nil {
			return
		}
		// Right after the codec: the message it decoded, whose room moves
		// to the call, or the message it left empty, with a verdict the
		// interceptor normally takes.
		if r, ok := h.a.guard.permits.LoadAndDelete(ev.Payload); ok {
			cs.release = r.(func())
		} else {
			cs.msg = ev.Payload
		}
	case *stats.End:
		cs, _ := ctx.Value(callKey{}).(*callState)
		if cs == nil {
			return
		}
		if cs.release != nil {
			cs.release()
		}
		if cs.msg != nil {
			h.a.guard.refused.Delete(cs.msg)
			if r, ok := h.a.guard.permits.LoadAndDelete(cs.msg); ok {
				r.(func())()
			}
		}
	}
}

func (admissionRelease) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (admissionRelease) HandleConn(context.Context, stats.ConnStats) {}

type guardCodec struct {
	delegate encoding.CodecV2
	a        *authenticator
}

func (c *guardCodec) Marshal(v any) (mem.BufferSlice, error) { return c.delegate.Marshal(v) }
func (c *guardCodec) Name() string                           { return c.delegate.Name() }

func (c *guardCodec) Unmarshal(data mem.BufferSlice, v any) error {
	sig, ok := signalOfMessage(v)
	if !ok {
		return c.delegate.Unmarshal(data, v)
	}
	// Room in the in-flight limit first: a request waiting for it holds
	// only the buffers gRPC read it into.
	ctx, cancel := context.WithTimeout(context.Background(), admissionWait)
	release, err := c.a.limiter.Acquire(ctx, int64(data.Len()))
	cancel()
	if err != nil {
		c.a.refused.Add(context.Background(), 1, reasonBusy)
		c.a.guard.refused.Store(v, err)
		return nil // left empty; refuseGuarded answers ResourceExhausted
	}
	c.a.guard.permits.Store(v, release)
	// One contiguous copy (none when gRPC already holds one buffer), shared
	// by the check and the decoder: the pdata codec would otherwise make its
	// own. Small ones come from gRPC's pool; past its 32 KiB tier that pool
	// hands out 1 MiB buffers (a 40 KB agent request held 1 MiB: 620 MiB at
	// 1,000 tenants), so larger ones come from internal/bufpool (a fresh
	// buffer each time cost 10% of the gateway's CPU in zeroing and
	// copying).
	pool := mem.DefaultBufferPool()
	if data.Len() > pooledCopyMax {
		pool = bufpool.Large
	}
	buf := data.MaterializeToBuffer(pool)
	defer buf.Free()
	if err := c.a.checkPayload(context.Background(), buf.ReadOnlyData(), sig, false); err != nil {
		c.a.guard.refused.Store(v, err)
		return nil // left empty; refuseGuarded answers InvalidArgument
	}
	if err := c.delegate.Unmarshal(mem.BufferSlice{buf}, v); err != nil {
		// grpc-go answers Internal without reporting the payload to the
		// stats handler: the room would never be given back.
		if r, ok := c.a.guard.permits.LoadAndDelete(v); ok {
			r.(func())()
		}
		return err
	}
	return nil
}

// pooledCopyMax is the largest copy taken from gRPC's buffer pool;
// internal/bufpool holds the larger ones, in buffers at most twice their
// size.
const pooledCopyMax = 32 << 10

var signalTypes sync.Map // reflect.Type -> otlpguard.Signal

// signalOfMessage recognises the OTLP export requests (pdata's internal
// types) by name.
func signalOfMessage(v any) (otlpguard.Signal, bool) {
	t := reflect.TypeOf(v)
	if s, ok := signalTypes.Load(t); ok {
		return s.(otlpguard.Signal), true
	}
	name := t.String()
	var sig otlpguard.Signal
	switch {
	case strings.HasSuffix(name, "ExportMetricsServiceRequest"):
		sig = otlpguard.Metrics
	case strings.HasSuffix(name, "ExportLogsServiceRequest"):
		sig = otlpguard.Logs
	case strings.HasSuffix(name, "ExportTraceServiceRequest"):
		sig = otlpguard.Traces
	default:
		return 0, false
	}
	signalTypes.Store(t, sig)
	return sig, true
}

// checkPayload runs the wire check and counts a refusal by reason.
func (a *authenticator) checkPayload(ctx context.Context, b []byte, sig otlpguard.Signal, json bool) error {
	lim := otlpguard.Limits{MaxDepth: a.cfg.DecodeLimits.MaxNestingDepth, MaxValues: a.cfg.DecodeLimits.MaxValues}
	var err error
	if json {
		err = otlpguard.CheckJSON(b, lim)
	} else {
		err = otlpguard.Check(b, sig, lim)
	}
	if err == nil {
		return nil
	}
	reason := "malformed"
	switch {
	case errors.Is(err, otlpguard.ErrTooDeep):
		reason = "too_deep"
	case errors.Is(err, otlpguard.ErrTooMany):
		reason = "too_many"
	}
	a.refused.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
	a.logger.Debug("request refused before decoding", zap.String("reason", reason), zap.Error(err))
	return err
}

// unavailableKey marks a request's context that Authenticate let through
// to the middleware to be refused retryably (unavailableError).
type unavailableKey struct{}

// guardsHTTP reports whether the HTTP server of a request runs tenant_auth's
// middleware: then a request it lets through is sure to meet it.
func (a *authenticator) guardsHTTP(ctx context.Context) bool {
	srv, ok := ctx.Value(http.ServerContextKey).(*http.Server)
	if !ok {
		return false
	}
	_, guarded := a.httpGuarded.Load(srv)
	return guarded
}

// GetHTTPHandler checks OTLP/HTTP bodies on the wire. The collector's HTTP
// server runs it after the authenticator (so a stranger's body is never
// read) and after decompression, bounded by max_request_body_size.
//
// It also answers 503 with Retry-After to the requests Authenticate let
// through while the credentials are unavailable, before anything else, on
// every path. Which server it serves, it learns from its first request
// (one handler is built per server); until then Authenticate refuses such
// requests itself, with the 401 the collector gives every refusal.
func (a *authenticator) GetHTTPHandler(context.Context) (extensionmiddleware.WrapHTTPHandlerFunc, error) {
	return func(_ context.Context, next http.Handler) (http.Handler, error) {
		var learned atomic.Bool
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !learned.Load() {
				if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok {
					a.httpGuarded.Store(srv, struct{}{})
					learned.Store(true)
				}
			}
			if unavailable, ok := r.Context().Value(unavailableKey{}).(unavailableError); ok {
				refuseRetryableAfter(w, unavailable, unavailable.retryAfter)
				return
			}
			sig, ok := signalOfPath(r.URL.Path)
			if !ok || r.Method != http.MethodPost {
				next.ServeHTTP(w, r)
				return
			}
			if admission.Queues(a.cfg.Admission.Queues).Full() {
				a.refused.Add(r.Context(), 1, reasonQueuesFull)
				refuseRetryable(w, admission.ErrQueuesFull)
				return
			}
			if a.limiter.Saturated() {
				a.refused.Add(r.Context(), 1, reasonBusy)
				refuseRetryable(w, admission.ErrBusy)
				return
			}
			body, err := readBody(r)
			if err != nil {
				var tooLarge *http.MaxBytesError
				if errors.As(err, &tooLarge) {
					http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
					return
				}
				http.Error(w, "cannot read the request body: "+err.Error(), http.StatusBadRequest)
				return
			}
			isJSON := strings.HasPrefix(r.Header.Get("Content-Type"), "application/json")
			if err := a.checkPayload(r.Context(), body, sig, isJSON); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			release, err := a.limiter.Acquire(r.Context(), int64(len(body)))
			if err != nil {
				a.refused.Add(r.Context(), 1, reasonBusy)
				refuseRetryable(w, err)
				return
			}
			defer release()
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			next.ServeHTTP(w, r)
		}), nil
	}, nil
}

// refuseRetryable answers 503 with Retry-After, which OTLP/HTTP clients
// (the collector's otlphttp exporter among them) retry.
func refuseRetryable(w http.ResponseWriter, err error) {
	refuseRetryableAfter(w, err, admissionRetry)
}

// refuseRetryableAfter answers 503 with Retry-After: after, in whole
// seconds, at least 1.
func refuseRetryableAfter(w http.ResponseWriter, err error, after time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(max(int((after+time.Second-1)/time.Second), 1)))
	http.Error(w, err.Error(), http.StatusServiceUnavailable)
}

// readBody reads the whole body in one allocation when its length is known
// (the receiver's own read copies it once more).
func readBody(r *http.Request) ([]byte, error) {
	if n := r.ContentLength; n > 0 && n <= maxPresized {
		buf := make([]byte, n)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, errors.New("the body is shorter than its Content-Length")
			}
			return nil, err
		}
		// Anything past Content-Length is the server's to refuse; a read
		// here would only block.
		return buf, nil
	}
	return io.ReadAll(r.Body)
}

// maxPresized bounds the allocation a Content-Length alone may cause before
// any byte arrived (max_request_body_size still bounds what is read).
const maxPresized = 8 << 20

func signalOfPath(path string) (otlpguard.Signal, bool) {
	switch {
	case strings.HasSuffix(path, "/v1/metrics"):
		return otlpguard.Metrics, true
	case strings.HasSuffix(path, "/v1/logs"):
		return otlpguard.Logs, true
	case strings.HasSuffix(path, "/v1/traces"):
		return otlpguard.Traces, true
	default:
		return 0, false
	}
}
