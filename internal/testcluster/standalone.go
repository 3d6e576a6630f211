package testcluster

import (
	"context"
	"errors"
	"os"
	"sync"
)

// Server is a standalone (non-cluster) redis-server. The embedded Node gives
// its address, Do, Kill and Restart.
type Server struct {
	*Node
	dir    string
	ownDir bool

	stopOnce sync.Once
	stopErr  error
}

// StartStandalone starts one standalone server on Options.Hosts[0]
// (default DefaultStandaloneHost), with the same port, directory and binary
// options as Start, and returns once it serves. Cluster options are ignored.
func StartStandalone(ctx context.Context, opt Options) (*Server, error) {
	o, bin, dir, owned, err := prepare(opt, true)
	if err != nil {
		return nil, err
	}
	ctx, cancel := bound(ctx)
	defer cancel()
	s := &Server{dir: dir, ownDir: owned}
	nodes, err := launch(ctx, o, bin, dir, false)
	if err != nil {
		return nil, errors.Join(err, s.Stop())
	}
	s.Node = nodes[0]
	o.Logf("testcluster: standalone server at %s (dir %s)", s.Addr, dir)
	return s, nil
}

// Stop stops the server like Cluster.Stop. It is idempotent.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.Node != nil {
			s.stopErr = s.terminate()
		}
		if s.ownDir {
			s.stopErr = errors.Join(s.stopErr, os.RemoveAll(s.dir))
		}
	})
	return s.stopErr
}
