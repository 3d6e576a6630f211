package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/server/httpapi"
)

// HTTP server timeouts.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 10 * time.Second
	idleTimeout       = 60 * time.Second
)

// serveConfig is what `tollgate serve` runs with.
type serveConfig struct {
	// Listen is the HOST:PORT to serve on; port 0 picks a free port.
	Listen string
	// ShutdownTimeout bounds how long in-flight requests may run after the
	// context is done; it must be positive.
	ShutdownTimeout time.Duration
	// Store selects the store.
	Store storeConfig

	// onListening, when non-nil, is called with the bound address once the
	// listener is open, before serving. Tests use it with port 0.
	onListening func(net.Addr)
}

func (c serveConfig) validate() error {
	if c.Listen == "" {
		return errors.New("--listen is empty")
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("--shutdown-timeout %s: must be positive", c.ShutdownTimeout)
	}
	return c.Store.validate()
}

// runServe serves the HTTP API until ctx is done, then stops accepting,
// lets in-flight requests finish for up to cfg.ShutdownTimeout, and closes
// the store. It returns nil after a clean shutdown. A nil logger discards.
func runServe(ctx context.Context, cfg serveConfig, logger *slog.Logger) (err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	store, ready, closeStore, err := openStore(ctx, cfg.Store)
	if err != nil {
		return fmt.Errorf("open %s store: %w", cfg.Store.kind(), err)
	}
	defer func() {
		if cerr := closeStore(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close store: %w", cerr))
		}
	}()

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           httpapi.New(tollgate.New(store, tollgate.Options{}), httpapi.Options{Logger: logger, Ready: ready}),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("listening", slog.String("addr", ln.Addr().String()), slog.String("store", cfg.Store.kind()))
	if cfg.onListening != nil {
		cfg.onListening(ln.Addr())
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }() // Serve closes ln
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	logger.Info("shutting down", slog.String("timeout", cfg.ShutdownTimeout.String()))
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		// Timed out draining: drop the remaining connections.
		_ = srv.Close()
		<-served
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("stopped")
	return nil
}
