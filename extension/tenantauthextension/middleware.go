package tenantauthextension

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"

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
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/otelcol-gpu/otelcol-gpu/extension/tenantauthextension/internal/otlpguard"
)

var (
	_ extensionmiddleware.GRPCServer = (*authenticator)(nil)
	_ extensionmiddleware.HTTPServer = (*authenticator)(nil)
)

// GetGRPCServerOptions hardens the otlp receiver's gRPC server when
// tenant_auth is listed in its middlewares:
//   - a tap handle checks the bearer token from the headers before the
//     message is read, so a stranger costs a header lookup, not a decode;
//   - a codec checks each OTLP request on the wire (nesting, counts) before
//     pdata decodes it; an interceptor turns a refusal into InvalidArgument.
func (a *authenticator) GetGRPCServerOptions(context.Context) ([]grpc.ServerOption, error) {
	return []grpc.ServerOption{
		grpc.InTapHandle(a.tap),
		grpc.ForceServerCodecV2(&guardCodec{delegate: encoding.GetCodecV2("proto"), a: a}),
		grpc.ChainUnaryInterceptor(a.refuseGuarded),
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
	return ctx, nil
}

// grpcStatus is the status a refused credential gets: Unauthenticated, which
// an exporter does not retry, or for a throttled one ResourceExhausted with
// RetryInfo, which the collector's otlp exporter retries after the delay.
func grpcStatus(err error) error {
	var throttled throttledError
	if !errors.As(err, &throttled) {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	st, derr := status.New(codes.ResourceExhausted, err.Error()).
		WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(throttled.retryAfter)})
	if derr != nil {
		return status.Error(codes.ResourceExhausted, err.Error())
	}
	return st.Err()
}

// payloadGuard hands a codec's verdict to the interceptor that runs right
// after it on the same request: grpc-go reports any codec error as Internal,
// and a refused payload deserves InvalidArgument.
type payloadGuard struct {
	refused sync.Map // request message -> error
}

func (a *authenticator) refuseGuarded(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err, ok := a.guard.refused.LoadAndDelete(req); ok {
		return nil, status.Error(codes.InvalidArgument, err.(error).Error())
	}
	return handler(ctx, req)
}

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
	// One contiguous copy (none when gRPC already holds one buffer), from
	// the pool, shared by the check and the decoder: the pdata codec would
	// otherwise make its own.
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	if err := c.a.checkPayload(context.Background(), buf.ReadOnlyData(), sig, false); err != nil {
		c.a.guard.refused.Store(v, err)
		return nil // left empty; refuseGuarded answers InvalidArgument
	}
	return c.delegate.Unmarshal(mem.BufferSlice{buf}, v)
}

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

// GetHTTPHandler checks OTLP/HTTP bodies on the wire. The collector's HTTP
// server runs it after the authenticator (so a stranger's body is never
// read) and after decompression, bounded by max_request_body_size.
func (a *authenticator) GetHTTPHandler(context.Context) (extensionmiddleware.WrapHTTPHandlerFunc, error) {
	return func(_ context.Context, next http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sig, ok := signalOfPath(r.URL.Path)
			if !ok || r.Method != http.MethodPost {
				next.ServeHTTP(w, r)
				return
			}
			body, err := io.ReadAll(r.Body)
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
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			next.ServeHTTP(w, r)
		}), nil
	}, nil
}

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
