package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/server/httpapi"
	"github.com/tollgate/tollgate/server/metrics"
	"github.com/tollgate/tollgate/server/rls"
	"github.com/tollgate/tollgate/store/memory"
	"github.com/tollgate/tollgate/store/overlimit"
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

// serveConfig is what `tollgate serve` runs with. Flags, environment and
// the config file's server section fill it (see package documentation).
type serveConfig struct {
	// Listen is the HOST:PORT to serve HTTP on; port 0 picks a free port.
	Listen string
	// GRPCListen, if not empty, is the HOST:PORT to serve the Envoy rate
	// limit service on; it needs EnvoyConfigPath.
	GRPCListen string
	// ConfigPath, if not empty, is the policy file (config.Load); its
	// policies are reloaded when it changes.
	ConfigPath string
	// EnvoyConfigPath, if not empty, are the Envoy descriptor configs
	// (config.LoadEnvoy); they need GRPCListen.
	EnvoyConfigPath string
	// CheckTimeout bounds each store call of a check; past it the check
	// fails as unavailable and the failure mode applies. It must be
	// positive.
	CheckTimeout time.Duration
	// ShutdownTimeout bounds how long in-flight requests may run after the
	// context is done; it must be positive.
	ShutdownTimeout time.Duration
	// ReloadInterval is how often ConfigPath and EnvoyConfigPath are polled
	// for changes; it must be positive.
	ReloadInterval time.Duration
	// APITokenFile and AdminTokenFile, if not empty, hold bearer tokens,
	// one a line (see readTokens): see httpapi.Options.
	APITokenFile, AdminTokenFile string
	// Store selects the store.
	Store storeConfig
	// LocalCacheSize is how many denials the local over-limit cache keeps
	// (store/overlimit); 0 turns it off. It must not be negative.
	LocalCacheSize int
	// LocalCacheMaxAge is the longest the cache answers one denial; 0 means
	// until its RetryAfter. It must not be negative.
	LocalCacheMaxAge time.Duration

	// onListening, when non-nil, is called with the bound addresses (grpc
	// nil when not serving gRPC) once the listeners are open, before
	// serving. Tests use it with port 0.
	onListening func(http, grpc net.Addr)
	// store, when non-nil, is used instead of the one Store selects, and
	// not closed. Tests use it for stores that fail or hang.
	store tollgate.Store
	// reload, when non-nil, asks for an immediate reload of the configs
	// (SIGHUP).
	reload <-chan os.Signal
}

func (c serveConfig) validate() error {
	switch {
	case c.Listen == "":
		return errors.New("--listen is empty")
	case c.GRPCListen != "" && c.EnvoyConfigPath == "":
		return errors.New("--grpc-listen needs --envoy-config (the descriptor rules to serve)")
	case c.EnvoyConfigPath != "" && c.GRPCListen == "":
		return errors.New("--envoy-config needs --grpc-listen (the Envoy rate limit service serves it)")
	case c.CheckTimeout <= 0:
		return fmt.Errorf("--check-timeout %s: must be positive", c.CheckTimeout)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("--shutdown-timeout %s: must be positive", c.ShutdownTimeout)
	case c.ReloadInterval <= 0:
		return fmt.Errorf("--reload-interval %s: must be positive", c.ReloadInterval)
	case c.LocalCacheSize < 0:
		return fmt.Errorf("--local-cache-size %d: must not be negative (0 turns the cache off)", c.LocalCacheSize)
	case c.LocalCacheMaxAge < 0:
		return fmt.Errorf("--local-cache-max-age %s: must not be negative", c.LocalCacheMaxAge)
	}
	return c.Store.validate()
}

// runServe serves until ctx is done, then stops accepting, lets in-flight
// requests finish for up to cfg.ShutdownTimeout, and closes the store. It
// returns nil after a clean shutdown. A nil logger discards.
func runServe(ctx context.Context, cfg serveConfig, logger *slog.Logger) (err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.validate(); err != nil {
		return err
	}

	// Configs and tokens first: a bad one fails before anything listens.
	var policies *config.Holder
	if cfg.ConfigPath != "" {
		if policies, err = config.NewHolder(cfg.ConfigPath); err != nil {
			return fmt.Errorf("--config: %w", err)
		}
		logger.Info("policies loaded", slog.String("file", cfg.ConfigPath), slog.Int("policies", len(policies.Config().Policies())))
	}
	var rules *config.EnvoyHolder
	if cfg.EnvoyConfigPath != "" {
		if rules, err = config.NewEnvoyHolder(cfg.EnvoyConfigPath); err != nil {
			return fmt.Errorf("--envoy-config: %w", err)
		}
		logger.Info("envoy configs loaded", slog.String("path", cfg.EnvoyConfigPath), slog.Any("domains", rules.Config().Domains()))
	}
	apiTokens, err := loadTokens(cfg.APITokenFile, "--api-token-file", logger)
	if err != nil {
		return err
	}
	adminTokens, err := loadTokens(cfg.AdminTokenFile, "--admin-token-file", logger)
	if err != nil {
		return err
	}
	if len(apiTokens) > 0 && len(adminTokens) == 0 {
		logger.Warn("API tokens without admin tokens: /v1/reset is refused to everyone")
	}

	m := metrics.New()
	cfg.Store.Observer = m
	cfg.Store.Logger = logger
	store, ready := cfg.store, (func(context.Context) error)(nil)
	if store == nil {
		st, readyFn, closeStore, err := openStore(ctx, cfg.Store)
		if err != nil {
			return fmt.Errorf("open %s store: %w", cfg.Store.kind(), err)
		}
		defer func() {
			if cerr := closeStore(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("close store: %w", cerr))
			}
		}()
		store, ready = st, readyFn
	}
	lim := tollgate.New(serviceStore(store, cfg, m), tollgate.Options{})

	httpLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var grpcLn net.Listener
	if cfg.GRPCListen != "" {
		if grpcLn, err = net.Listen("tcp", cfg.GRPCListen); err != nil {
			_ = httpLn.Close()
			return fmt.Errorf("grpc listen: %w", err)
		}
	}

	// fail_local policies fall back to this instance's own memory.
	fallback := memory.New(memory.Options{})
	defer fallback.Close()
	opts := httpapi.Options{
		Logger:      logger,
		APITokens:   apiTokens,
		AdminTokens: adminTokens,
		Observer:    m,
		Metrics:     m.Handler(),
		Fallback:    tollgate.New(fallback, tollgate.Options{}),
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
	}
	var grpcSrv *grpc.Server
	var health interface{ Shutdown() }
	if grpcLn != nil {
		grpcSrv = grpc.NewServer(grpc.ChainUnaryInterceptor(requestIDInterceptor))
		health = rls.New(lim, rules, rls.Options{Logger: logger, Observer: m}).Register(grpcSrv)
	}

	attrs := []any{slog.String("addr", httpLn.Addr().String())}
	var grpcAddr net.Addr
	if grpcLn != nil {
		grpcAddr = grpcLn.Addr()
		attrs = append(attrs, slog.String("grpc_addr", grpcAddr.String()))
	}
	attrs = append(attrs, slog.String("store", cfg.Store.kind()),
		slog.Bool("auth", len(apiTokens) > 0), slog.String("check_timeout", cfg.CheckTimeout.String()),
		slog.Int("local_cache_size", cfg.LocalCacheSize))
	logger.Info("listening", attrs...)
	if cfg.onListening != nil {
		cfg.onListening(httpLn.Addr(), grpcAddr)
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
	go func() { httpDone <- httpSrv.Serve(httpLn) }() // Serve closes httpLn
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
		logger.Info("shutting down", slog.String("timeout", cfg.ShutdownTimeout.String()))
	}
	stopErr := shutdown(ctx, cfg.ShutdownTimeout, httpSrv, httpDone, grpcSrv, grpcDone, health)
	if serveErr != nil {
		return errors.Join(serveErr, stopErr)
	}
	if stopErr != nil {
		return stopErr
	}
	logger.Info("stopped")
	return nil
}

// serviceStore wraps store as the service uses it. Limiter → local
// over-limit cache (when cfg.LocalCacheSize > 0) → metrics → check timeout
// → store: the cache's hits are not store calls, and a timed-out call is
// one.
func serviceStore(store tollgate.Store, cfg serveConfig, m *metrics.Metrics) tollgate.Store {
	store = observedStore{store: deadlineStore{store: store, timeout: cfg.CheckTimeout}, obs: m}
	if cfg.LocalCacheSize > 0 {
		store = overlimit.New(store, overlimit.Options{Size: cfg.LocalCacheSize, MaxAge: cfg.LocalCacheMaxAge, Observer: m})
	}
	return store
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
// cfg.ReloadInterval, and on each value of cfg.reload. Each reload is logged
// and counted in m.
func startReloads(ctx context.Context, wg *sync.WaitGroup, cfg serveConfig, policies *config.Holder, rules *config.EnvoyHolder,
	logger *slog.Logger, m *metrics.Metrics) {
	var reloaders []func() error
	if policies != nil {
		initial := policies.Config().Server()
		notify := func(err error) {
			m.ConfigReload(metrics.ConfigPolicies, err)
			if err != nil {
				logger.Error("config not reloaded; the previous one stays in force",
					slog.String("file", cfg.ConfigPath), slog.Any("error", err))
				return
			}
			logger.Info("config reloaded", slog.String("file", cfg.ConfigPath),
				slog.Int("policies", len(policies.Config().Policies())))
			if !reflect.DeepEqual(policies.Config().Server(), initial) {
				logger.Warn("the server section changed; it applies at the next start", slog.String("file", cfg.ConfigPath))
			}
		}
		wg.Go(func() { policies.Watch(ctx, cfg.ReloadInterval, notify) })
		reloaders = append(reloaders, func() error { err := policies.Reload(); notify(err); return err })
	}
	if rules != nil {
		notify := func(err error) {
			m.ConfigReload(metrics.ConfigEnvoy, err)
			if err != nil {
				logger.Error("envoy configs not reloaded; the previous ones stay in force",
					slog.String("path", cfg.EnvoyConfigPath), slog.Any("error", err))
				return
			}
			logger.Info("envoy configs reloaded", slog.String("path", cfg.EnvoyConfigPath),
				slog.Any("domains", rules.Config().Domains()))
		}
		wg.Go(func() { rules.Watch(ctx, cfg.ReloadInterval, notify) })
		reloaders = append(reloaders, func() error { err := rules.Reload(); notify(err); return err })
	}
	if cfg.reload == nil || len(reloaders) == 0 {
		return
	}
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-cfg.reload:
				for _, reload := range reloaders {
					_ = reload() // notify has logged the outcome
				}
			}
		}
	})
}
