// Package service runs Tollgate's service: the HTTP API and the Envoy rate
// limit service over the store its settings (package settings) select, with
// policies and rules reloaded as their files change. `tollgate serve` runs
// it; `tollgate-lab bench` runs it in process to measure it.
package service

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"reflect"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/server/httpapi"
	"github.com/tollgate/tollgate/server/metrics"
	"github.com/tollgate/tollgate/server/rls"
	"github.com/tollgate/tollgate/settings"
	"github.com/tollgate/tollgate/store/memory"
	"github.com/tollgate/tollgate/store/overlimit"
	"github.com/tollgate/tollgate/store/wrap"
)

// HTTP server timeouts.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 10 * time.Second
	idleTimeout       = 60 * time.Second
)

// readyTimeout bounds a /readyz check of the store.
const readyTimeout = 2 * time.Second

// Config is what the service runs with: the settings (package settings)
// and hooks for tests and tools that run it in process.
type Config struct {
	settings.Settings

	// OnListening, when non-nil, is called with the bound addresses (grpc
	// nil when not serving gRPC) once the listeners are open, before
	// serving. Tests use it with port 0.
	OnListening func(http, grpc net.Addr)
	// Store, when non-nil, is used instead of the one the settings select,
	// and not closed. Tests use it for stores that fail or hang.
	Store tollgate.Store
	// Reload, when non-nil, asks for an immediate reload of the configs
	// (SIGHUP).
	Reload <-chan os.Signal
}

// Run serves until ctx is done, then stops accepting, lets in-flight
// requests finish for up to cfg.Check.ShutdownTimeout, and closes the
// store. It returns nil after a clean shutdown. A nil logger discards.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) (err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}

	// Configs and tokens first: a bad one fails before anything listens.
	var policies *config.Holder
	if cfg.Config != "" {
		if policies, err = config.NewHolder(cfg.Config); err != nil {
			return fmt.Errorf("--config: %w", err)
		}
		logger.Info("policies loaded", slog.String("file", cfg.Config), slog.Int("policies", len(policies.Config().Policies())))
	}
	var rules *config.EnvoyHolder
	if cfg.GRPC.EnvoyConfig != "" {
		if rules, err = config.NewEnvoyHolder(cfg.GRPC.EnvoyConfig); err != nil {
			return fmt.Errorf("--envoy-config: %w", err)
		}
		logger.Info("envoy configs loaded", slog.String("path", cfg.GRPC.EnvoyConfig), slog.Any("domains", rules.Config().Domains()))
	}
	apiTokens, err := LoadScopedTokens(cfg.HTTP.APITokenFile, "--api-token-file", httpapi.APIScope(), logger)
	if err != nil {
		return err
	}
	adminTokens, err := LoadScopedTokens(cfg.HTTP.AdminTokenFile, "--admin-token-file", httpapi.AdminScope(), logger)
	if err != nil {
		return err
	}
	if len(apiTokens) > 0 && len(adminTokens) == 0 {
		logger.Warn("API tokens without admin tokens: /v1/reset is refused to everyone")
	}

	m := metrics.New()
	store, ready := cfg.Store, (func(context.Context) error)(nil)
	if store == nil {
		st, readyFn, closeStore, err := openStore(ctx, cfg.Settings, m, logger)
		if err != nil {
			return fmt.Errorf("open %s store: %w", cfg.Redis.Kind(), err)
		}
		defer func() {
			if cerr := closeStore(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("close store: %w", cerr))
			}
		}()
		store, ready = st, readyFn
	}
	lim := tollgate.New(WrapStore(store, cfg.Settings, m), tollgate.Options{})

	var httpTLS, grpcTLS *tls.Config
	if cert, key, ca := cfg.Listen.HTTPFiles(); cert != "" {
		r, err := newCertReloader(cert, key, ca, []string{"h2", "http/1.1"}, logger)
		if err != nil {
			return fmt.Errorf("--tls-cert-file: %w", err)
		}
		httpTLS = r.TLSConfig()
	}
	if cert, key, ca := cfg.Listen.GRPCFiles(); cert != "" && cfg.GRPC.Listen != "" {
		r, err := newCertReloader(cert, key, ca, []string{"h2"}, logger)
		if err != nil {
			return fmt.Errorf("--grpc-tls-cert-file: %w", err)
		}
		grpcTLS = r.TLSConfig()
	}

	httpLn, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var grpcLn net.Listener
	if cfg.GRPC.Listen != "" {
		if grpcLn, err = net.Listen("tcp", cfg.GRPC.Listen); err != nil {
			_ = httpLn.Close()
			return fmt.Errorf("grpc listen: %w", err)
		}
	}

	// fail_local policies fall back to this instance's own memory.
	fallback := memory.New(memoryOptions(cfg.Memory, m))
	defer fallback.Close()
	opts := httpapi.Options{
		Logger:            logger,
		ScopedAPITokens:   apiTokens,
		ScopedAdminTokens: adminTokens,
		PoliciesOnly:      !cfg.HTTP.InlineLimits,
		MaxBatchChecks:    cfg.HTTP.MaxBatchChecks,
		Observer:          m,
		Metrics:           m.Handler(),
		Fallback:          tollgate.New(fallback, tollgate.Options{}),
	}
	if policies != nil { // not a typed nil in the interface
		opts.Policies = policies
	}
	if ready != nil {
		opts.Ready = func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, readyTimeout)
			defer cancel()
			return ready(ctx)
		}
	}
	httpSrv := &http.Server{
		Handler:           httpapi.New(lim, opts),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		Protocols:         new(http.Protocols),
	}
	httpSrv.Protocols.SetHTTP1(true)
	httpSrv.Protocols.SetHTTP2(true) // over TLS, when it is on
	httpSrv.Protocols.SetUnencryptedHTTP2(cfg.HTTP.H2C)
	var grpcSrv *grpc.Server
	var health interface{ Shutdown() }
	if grpcLn != nil {
		gopts := grpcServerOptions(cfg.GRPC, recovery{log: logger, obs: m})
		if grpcTLS != nil {
			gopts = append(gopts, grpc.Creds(credentials.NewTLS(grpcTLS)))
		}
		grpcSrv = grpc.NewServer(gopts...)
		health = rls.New(lim, rules, rls.Options{Logger: logger, Observer: m, Fallback: opts.Fallback,
			Reflection: cfg.GRPC.Reflection, MaxDescriptors: cfg.GRPC.MaxDescriptors, Timeout: cfg.Check.Timeout}).Register(grpcSrv)
	}

	attrs := []any{slog.String("addr", httpLn.Addr().String())}
	var grpcAddr net.Addr
	if grpcLn != nil {
		grpcAddr = grpcLn.Addr()
		attrs = append(attrs, slog.String("grpc_addr", grpcAddr.String()))
	}
	attrs = append(attrs, slog.String("store", cfg.Redis.Kind()),
		slog.Bool("auth", len(apiTokens) > 0), slog.Bool("tls", httpTLS != nil), slog.Bool("grpc_tls", grpcTLS != nil), slog.String("check_timeout", cfg.Check.Timeout.String()),
		slog.Int("local_cache_size", cfg.Cache.Size))
	logger.Info("listening", attrs...)
	if cfg.OnListening != nil {
		cfg.OnListening(httpLn.Addr(), grpcAddr)
	}

	// Reloads run until shutdown; runServe waits for them.
	var bg sync.WaitGroup
	bgCtx, stopBG := context.WithCancel(ctx)
	defer func() {
		stopBG()
		bg.Wait()
	}()
	startReloads(bgCtx, &bg, cfg, policies, rules, logger, m)

	httpDone := make(chan error, 1)
	if httpTLS != nil {
		httpSrv.TLSConfig = httpTLS
		go func() { httpDone <- httpSrv.ServeTLS(httpLn, "", "") }() // ServeTLS closes httpLn
	} else {
		go func() { httpDone <- httpSrv.Serve(httpLn) }() // Serve closes httpLn
	}
	grpcDone := make(chan error, 1)
	if grpcSrv != nil {
		go func() { grpcDone <- grpcSrv.Serve(grpcLn) }()
	}

	var serveErr error
	select {
	case err := <-httpDone:
		httpDone <- err
		serveErr = fmt.Errorf("serve http: %w", err)
	case err := <-grpcDone:
		grpcDone <- err
		serveErr = fmt.Errorf("serve grpc: %w", err)
	case <-ctx.Done():
		logger.Info("shutting down", slog.String("timeout", cfg.Check.ShutdownTimeout.String()))
	}
	stopErr := shutdown(ctx, cfg.Check.ShutdownTimeout, httpSrv, httpDone, grpcSrv, grpcDone, health)
	if serveErr != nil {
		return errors.Join(serveErr, stopErr)
	}
	if stopErr != nil {
		return stopErr
	}
	logger.Info("stopped")
	return nil
}

// Keepalive of the gRPC server: it pings a client silent this long, and
// closes the connection when the ping is not answered within
// grpcKeepaliveTimeout, so that dead peers do not hold streams.
const (
	grpcKeepaliveTime    = time.Minute
	grpcKeepaliveTimeout = 20 * time.Second
)

// grpcServerOptions are the gRPC server's options for g: panic recovery
// (outermost, so it covers the interceptors after it), the request id
// interceptor, the message and stream bounds, and keepalive enforcement
// (clients may ping while no call is in flight, as Envoy does on idle
// connections, but not more often than g.KeepaliveMinTime).
func grpcServerOptions(g settings.GRPC, rc recovery) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(rc.unary, requestIDInterceptor),
		grpc.ChainStreamInterceptor(rc.stream),
		grpc.MaxRecvMsgSize(g.MaxRecvBytes),
		grpc.MaxConcurrentStreams(uint32(min(g.MaxConcurrentStreams, math.MaxUint32))),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: g.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: grpcKeepaliveTime, Timeout: grpcKeepaliveTimeout}),
	}
}

// WrapStore wraps store as the service uses it (wrap.Chain): the local
// over-limit cache when s.Cache.Size > 0, metrics m, the check timeout.
func WrapStore(store tollgate.Store, s settings.Settings, m *metrics.Metrics) tollgate.Store {
	cfg := Config{Settings: s}
	o := wrap.Options{Timeout: cfg.Check.Timeout, Observer: m, Kind: storeErrorKind}
	if cfg.Cache.Size > 0 {
		o.Cache = &overlimit.Options{Size: cfg.Cache.Size, MaxAge: cfg.Cache.MaxAge, Observer: m}
	}
	return wrap.Chain(store, o)
}

// shutdown stops both servers: it reports NOT_SERVING on gRPC health, stops
// accepting, and waits for in-flight requests up to timeout, then drops
// them. grpcSrv and health may be nil.
func shutdown(ctx context.Context, timeout time.Duration, httpSrv *http.Server, httpDone <-chan error,
	grpcSrv *grpc.Server, grpcDone <-chan error, health interface{ Shutdown() }) error {
	if health != nil {
		health.Shutdown()
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()

	var (
		wg      sync.WaitGroup
		httpErr error
		grpcErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := httpSrv.Shutdown(stopCtx); err != nil {
			_ = httpSrv.Close() // timed out draining: drop the rest
			httpErr = fmt.Errorf("shutdown http: %w", err)
		}
		if err := <-httpDone; !errors.Is(err, http.ErrServerClosed) && httpErr == nil {
			httpErr = fmt.Errorf("serve http: %w", err)
		}
	}()
	if grpcSrv != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stopped := make(chan struct{})
			go func() {
				grpcSrv.GracefulStop()
				close(stopped)
			}()
			select {
			case <-stopped:
			case <-stopCtx.Done():
				grpcSrv.Stop() // timed out draining: drop the rest
				<-stopped
				grpcErr = fmt.Errorf("shutdown grpc: %w", stopCtx.Err())
			}
			// ErrServerStopped: stopped before Serve began (which then closes
			// the listener itself).
			if err := <-grpcDone; err != nil && !errors.Is(err, grpc.ErrServerStopped) && grpcErr == nil {
				grpcErr = fmt.Errorf("serve grpc: %w", err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(httpErr, grpcErr)
}

// startReloads starts the goroutines that reload the configs: polling every
// cfg.Check.ReloadInterval, and on each value of cfg.Reload. Each reload is logged
// and counted in m.
func startReloads(ctx context.Context, wg *sync.WaitGroup, cfg Config, policies *config.Holder, rules *config.EnvoyHolder,
	logger *slog.Logger, m *metrics.Metrics) {
	var reloaders []func() error
	if policies != nil {
		initial := policies.Config().Server()
		notify := func(err error) {
			m.ConfigReload(metrics.ConfigPolicies, err)
			if err != nil {
				logger.Error("config not reloaded; the previous one stays in force",
					slog.String("file", cfg.Config), slog.Any("error", err))
				return
			}
			logger.Info("config reloaded", slog.String("file", cfg.Config),
				slog.Int("policies", len(policies.Config().Policies())))
			if !reflect.DeepEqual(policies.Config().Server(), initial) {
				logger.Warn("the server section changed; it applies at the next start", slog.String("file", cfg.Config))
			}
		}
		wg.Go(func() { policies.Watch(ctx, cfg.Check.ReloadInterval, notify) })
		reloaders = append(reloaders, func() error { err := policies.Reload(); notify(err); return err })
	}
	if rules != nil {
		notify := func(err error) {
			m.ConfigReload(metrics.ConfigEnvoy, err)
			if err != nil {
				logger.Error("envoy configs not reloaded; the previous ones stay in force",
					slog.String("path", cfg.GRPC.EnvoyConfig), slog.Any("error", err))
				return
			}
			logger.Info("envoy configs reloaded", slog.String("path", cfg.GRPC.EnvoyConfig),
				slog.Any("domains", rules.Config().Domains()))
		}
		wg.Go(func() { rules.Watch(ctx, cfg.Check.ReloadInterval, notify) })
		reloaders = append(reloaders, func() error { err := rules.Reload(); notify(err); return err })
	}
	if cfg.Reload == nil || len(reloaders) == 0 {
		return
	}
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-cfg.Reload:
				for _, reload := range reloaders {
					_ = reload() // notify has logged the outcome
				}
			}
		}
	})
}
