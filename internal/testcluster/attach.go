package testcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// ErrAttached is returned by Node.Kill and Node.Restart on a node of a
// cluster given to Attach: the package controls no process there.
var ErrAttached = errors.New("testcluster: not a process of this package (attached cluster)")

// Attach returns a running cluster that someone else started, from the
// address of any of its nodes, for the methods that need only commands:
// Shards, WaitHealthy, Failover, slot migration, Node.Do. Every node it
// finds must be on a loopback IP address. Node.Kill and Node.Restart fail
// with ErrAttached; Stop does nothing.
func Attach(ctx context.Context, addrs []string) (*Cluster, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	if len(addrs) == 0 {
		return nil, errors.New("testcluster: Attach: no address")
	}
	for _, a := range addrs {
		if err := checkLoopbackAddr(a); err != nil {
			return nil, err
		}
	}
	c := &Cluster{
		opt:         Options{NodeTimeout: DefaultNodeTimeout, Logf: func(string, ...any) {}},
		wasMaster:   map[*Node]bool{},
		roleChanged: map[*Node]time.Time{},
	}
	var errs []error
	for _, a := range addrs {
		seed := &Node{Addr: a, external: true}
		ns, err := c.view(ctx, seed)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// Masters first, as Start orders them.
		var masters, replicas []*Node
		for _, ni := range ns {
			if ni.pending || ni.addr == "" {
				continue
			}
			if err := checkLoopbackAddr(ni.addr); err != nil {
				return nil, fmt.Errorf("%w (node %s, announced by %s)", err, ni.id, a)
			}
			host, p, _ := net.SplitHostPort(ni.addr)
			port, _ := strconv.Atoi(p)
			n := &Node{Addr: ni.addr, Host: host, Port: port, BusPort: port + busPortOffset, ID: ni.id, external: true}
			if ni.master {
				masters = append(masters, n)
			} else {
				replicas = append(replicas, n)
			}
		}
		c.nodes = append(masters, replicas...)
		// Failover's spacing rule counts in the cluster's own node timeout.
		if v, err := seed.Do(ctx, "CONFIG", "GET", "cluster-node-timeout"); err == nil {
			if kv, ok := v.([]any); ok && len(kv) == 2 {
				if ms, err := strconv.Atoi(fmt.Sprint(kv[1])); err == nil && ms > 0 {
					c.opt.NodeTimeout = time.Duration(ms) * time.Millisecond
				}
			}
		}
		if _, err := c.waitFor(ctx, nil); err != nil {
			return nil, fmt.Errorf("testcluster: Attach %s: %w", a, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("testcluster: Attach: no node answered CLUSTER NODES: %w", errors.Join(errs...))
}

// checkLoopbackAddr rejects an address whose host is not a loopback IP
// address.
func checkLoopbackAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("testcluster: address %q: %w", addr, err)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return fmt.Errorf("testcluster: address %q: bad port", addr)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("testcluster: %q is not a loopback IP address: only a cluster on this machine may be attached", addr)
	}
	return nil
}
