# syntax=docker/dockerfile:1
#
# Tollgate: the `tollgate serve` binary on a distroless image, as a non-root
# user.
#
#   docker build -t tollgate .
#   docker run --rm -p 8080:8080 tollgate                      # memory store
#   docker run --rm -p 8080:8080 -p 8081:8081 -v "$PWD/conf:/etc/tollgate:ro" tollgate \
#     --config /etc/tollgate/tollgate.yaml --grpc-listen 0.0.0.0:8081 --redis-cluster redis-0:6379
#
# Arguments after the image name are appended to `serve --listen
# 0.0.0.0:8080`; every flag can also come from TOLLGATE_* environment
# variables (TOLLGATE_REDIS_CLUSTER=…).

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w' -o /out/tollgate ./cmd/tollgate

# Static binary: no libc, no shell, CA certificates included (for Redis over
# TLS), user nonroot (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tollgate /usr/local/bin/tollgate
USER nonroot:nonroot
# 8080: HTTP API, /healthz, /readyz, /metrics. 8081: Envoy rate limit
# service (gRPC), when started with --grpc-listen 0.0.0.0:8081.
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/tollgate", "serve", "--listen", "0.0.0.0:8080"]
