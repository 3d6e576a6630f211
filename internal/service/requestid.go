package service

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/tollgate/tollgate/server/httpapi"
)

// requestIDMetadata is the gRPC metadata key of the request id, as Envoy
// names the header.
const requestIDMetadata = "x-request-id"

type grpcRequestIDKey struct{}

// requestIDInterceptor gives each unary call a request id: the caller's
// x-request-id metadata when it is 1 to httpapi.MaxRequestIDLen visible
// ASCII characters, else a new random one. It sends the id back as response
// header metadata and puts it in the context, where contextHandler finds it
// for log records.
func requestIDInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(requestIDMetadata); len(v) > 0 && httpapi.ValidRequestID(v[0]) {
			id = v[0]
		}
	}
	if id == "" {
		id = rand.Text()
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(requestIDMetadata, id)) // fails only if headers were sent
	return handler(context.WithValue(ctx, grpcRequestIDKey{}, id), req)
}

// contextHandler adds the request id of a gRPC call (requestIDInterceptor)
// to the records logged with its context. (Package httpapi adds the ids of
// HTTP requests itself.)
type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if id, ok := ctx.Value(grpcRequestIDKey{}).(string); ok {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}

// NewLogger returns the service's logger: JSON records at level and above
// on w, each with the request id of the gRPC call it is about.
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(contextHandler{slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})})
}
