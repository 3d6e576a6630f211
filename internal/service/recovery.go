package service

import (
	"context"
	"log/slog"
	"runtime/debug"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/server/observe"
)

// recovery turns a panic in a gRPC handler or an interceptor after it into
// the status INTERNAL, logs it once with its stack, and counts it in obs
// (nil counts nothing), so that one bad call cannot take the process and
// every call in flight down with it. (Package rls recovers the goroutines
// a handler starts itself.)
type recovery struct {
	log *slog.Logger
	obs observe.PanicObserver
}

func (rc recovery) recovered(ctx context.Context, method string, p any, err *error) {
	rc.log.LogAttrs(ctx, slog.LevelError, "panic serving a gRPC call: answered INTERNAL",
		slog.String("method", method), slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
	if rc.obs != nil {
		rc.obs.Panic(observe.ServerGRPC)
	}
	*err = status.Error(codes.Internal, "internal error")
}

func (rc recovery) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp = nil
			rc.recovered(ctx, info.FullMethod, p, &err)
		}
	}()
	return handler(ctx, req)
}

func (rc recovery) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			rc.recovered(ss.Context(), info.FullMethod, p, &err)
		}
	}()
	return handler(srv, ss)
}
