package testcluster

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Role is a node's role in a cluster.
type Role string

const (
	RoleMaster  Role = "master"
	RoleReplica Role = "replica"
)

// Node is one redis-server process. Its address, directory and cluster ID are
// fixed for its life: Restart reuses the port, the directory and nodes.conf,
// so the node rejoins under the same identity, as a rebooted host would.
//
// Methods are safe for concurrent use, but Kill and Restart of one node should
// not race each other.
type Node struct {
	Addr    string // "host:port" the node listens on; the package dials it
	Host    string // loopback IP address
	Port    int
	BusPort int    // cluster bus port; 0 for a standalone server
	ID      string // cluster node ID; empty for a standalone server
	Dir     string // working directory: redis.conf, redis.log, nodes.conf

	bin string // redis-server binary
	// external: a node of a cluster given to Attach, not a process of
	// this package; it counts as running and cannot be killed.
	external bool

	mu   sync.Mutex
	proc *process // nil when never started or killed
	// Ports the cluster announces for the node (cluster-announce-port and
	// cluster-announce-bus-port); 0 means its own.
	announcePort, announceBusPort int
	// announceHost is the address the cluster announces for the node
	// (cluster-announce-ip); "" means Host.
	announceHost string
	password     string // AUTH for the package's connections; "" means none
}

// SetPassword makes the package authenticate its own connections to the
// node with password from now on (see Cluster.SetPassword).
func (n *Node) SetPassword(password string) {
	n.mu.Lock()
	n.password = password
	n.mu.Unlock()
}

// dial connects to the node and authenticates when it has a password.
func (n *Node) dial(ctx context.Context) (*conn, error) {
	n.mu.Lock()
	password := n.password
	n.mu.Unlock()
	c, err := dial(ctx, n.Addr)
	if err != nil || password == "" {
		return c, err
	}
	if _, err := c.do("AUTH", password); err != nil {
		c.close()
		return nil, fmt.Errorf("AUTH: %w", err)
	}
	return c, nil
}

// Announced is the address the cluster gives clients for the node, in
// CLUSTER SLOTS, CLUSTER NODES and redirects: Addr unless Options.Announce
// or Announce set another port, such as a proxy's.
func (n *Node) Announced() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	host, port := cmp.Or(n.announceHost, n.Host), cmp.Or(n.announcePort, n.Port)
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// AnnounceHost makes the running node announce host (a loopback address,
// such as a proxy's) with port and busPort from now on, as Announce does
// for ports: a node that moved to another address. Restart keeps them.
func (n *Node) AnnounceHost(ctx context.Context, host string, port, busPort int) error {
	if err := checkHosts([]string{host}); err != nil {
		return err
	}
	ctx, cancel := bound(ctx)
	defer cancel()
	if n.BusPort == 0 {
		return fmt.Errorf("%s: not a cluster node", n.Addr)
	}
	if _, err := n.Do(ctx, "CONFIG", "SET", "cluster-announce-ip", host, "cluster-announce-port", port, "cluster-announce-bus-port", busPort); err != nil {
		return fmt.Errorf("%s: %w", n.Addr, err)
	}
	if _, err := n.Do(ctx, "CONFIG", "REWRITE"); err != nil {
		return fmt.Errorf("%s: %w", n.Addr, err)
	}
	n.mu.Lock()
	n.announceHost, n.announcePort, n.announceBusPort = host, port, busPort
	n.mu.Unlock()
	return nil
}

// Announce makes the running node announce port and busPort (0: its own)
// from now on, with CONFIG SET, and keeps them across Restart. Peers learn
// the new address by gossip; WaitHealthy waits until all agree.
func (n *Node) Announce(ctx context.Context, port, busPort int) error {
	ctx, cancel := bound(ctx)
	defer cancel()
	if n.BusPort == 0 {
		return fmt.Errorf("%s: not a cluster node", n.Addr)
	}
	if _, err := n.Do(ctx, "CONFIG", "SET", "cluster-announce-port", port, "cluster-announce-bus-port", busPort); err != nil {
		return fmt.Errorf("%s: %w", n.Addr, err)
	}
	// The config file is what Restart starts from.
	if _, err := n.Do(ctx, "CONFIG", "REWRITE"); err != nil {
		return fmt.Errorf("%s: %w", n.Addr, err)
	}
	n.mu.Lock()
	n.announcePort, n.announceBusPort = port, busPort
	n.mu.Unlock()
	return nil
}

// process is one run of a node.
type process struct {
	cmd    *exec.Cmd
	logOff int64         // log size at start: where this run's lines begin
	done   chan struct{} // closed once the process has exited and been reaped
	err    error         // cmd.Wait's result; read only after done is closed
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to exit. Exit follows SIGKILL at once,
// so the bound only guards against a stuck kernel or a wrong PID.
func (p *process) wait(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
		return fmt.Errorf("pid %d did not exit within %v", p.cmd.Process.Pid, d)
	}
}

// Timings of process control.
const (
	termGrace  = 3 * time.Second // SIGTERM to SIGKILL in Stop
	reapWait   = 5 * time.Second // SIGKILL to reaped
	pollEvery  = 20 * time.Millisecond
	probeLimit = 2 * time.Second // one status query of one node
)

func (n *Node) logPath() string { return filepath.Join(n.Dir, "redis.log") }

func (n *Node) current() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// PID is the process ID of the running redis-server, or 0 when it is not
// running.
func (n *Node) PID() int {
	if p := n.current(); p != nil && !p.exited() {
		return p.cmd.Process.Pid
	}
	return 0
}

// Running reports whether the node's process is alive (it may still be
// starting, paused by DEBUG SLEEP, or not yet part of the cluster).
// A node of an attached cluster always counts as running.
func (n *Node) Running() bool { return n.external || n.PID() != 0 }

// Do runs one command on the node over a new connection and returns its
// reply: string for simple and bulk strings, int64, []any for arrays, nil for
// null. An error reply is returned as a ReplyError. Arguments may be string,
// []byte, int, int64, uint64 or float64. Without a context deadline the call
// is bounded by DefaultTimeout.
func (n *Node) Do(ctx context.Context, args ...any) (any, error) {
	sargs, err := commandArgs(args)
	if err != nil {
		return nil, err
	}
	ctx, cancel := bound(ctx)
	defer cancel()
	c, err := n.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.close()
	return c.do(sargs...)
}

// Role asks the node for its current role; it changes on failover.
func (n *Node) Role(ctx context.Context) (Role, error) {
	v, err := n.Do(ctx, "ROLE")
	if err != nil {
		return "", err
	}
	if arr, ok := v.([]any); ok && len(arr) > 0 {
		switch arr[0] {
		case "master":
			return RoleMaster, nil
		case "slave":
			return RoleReplica, nil
		}
	}
	return "", fmt.Errorf("%s: unexpected ROLE reply %v", n.Addr, v)
}

// Kill sends SIGKILL, as a crashed host would, and waits for the process to
// exit. Other nodes notice only after the cluster node timeout.
func (n *Node) Kill() error {
	if n.external {
		return fmt.Errorf("%s: %w", n.Addr, ErrAttached)
	}
	p := n.current()
	if p == nil || p.exited() {
		return fmt.Errorf("%s: not running", n.Addr)
	}
	if err := p.cmd.Process.Kill(); err != nil && !p.exited() {
		return fmt.Errorf("%s: %w", n.Addr, err)
	}
	return p.wait(reapWait)
}

// Restart starts the node again with the same port, directory and
// nodes.conf, killing it first if it runs. It returns once the node serves
// commands; a cluster node then rejoins by itself, which WaitHealthy waits
// for. Restart fails if something else took the port meanwhile.
func (n *Node) Restart(ctx context.Context) error {
	if n.external {
		return fmt.Errorf("%s: %w", n.Addr, ErrAttached)
	}
	ctx, cancel := bound(ctx)
	defer cancel()
	if n.Running() {
		if err := n.Kill(); err != nil {
			return err
		}
	}
	if err := n.start(); err != nil {
		return err
	}
	if err := n.waitServing(ctx); err != nil {
		n.terminate()
		return err
	}
	return nil
}

// LogTail returns up to the last lines lines of the node's log, for test
// failure messages.
func (n *Node) LogTail(lines int) string { return n.logSince(0, lines) }

// logSince returns up to the last lines lines written at or after offset.
func (n *Node) logSince(offset int64, lines int) string {
	const window = 64 << 10
	f, err := os.Open(n.logPath())
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	offset = max(offset, st.Size()-window)
	b, err := io.ReadAll(io.NewSectionReader(f, offset, st.Size()-offset))
	if err != nil {
		return ""
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(ls[max(0, len(ls)-lines):], "\n")
}

// writeConfig writes the node's redis.conf. The settings follow
// shared/notes/local-cluster.md; ExtraConfig comes last so it overrides them.
func (n *Node) writeConfig(o Options) error {
	var b bytes.Buffer
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("port %d", n.Port)
	line("bind %s", n.Host)
	// Without it peers would record each other as 127.0.0.1.
	line("bind-source-addr %s", n.Host)
	line("protected-mode no")
	line("daemonize no")
	line("dir %s", quote(n.Dir))
	line("logfile %s", quote(n.logPath()))
	line(`save ""`)
	line("appendonly no")
	// A restarted node resyncs in ~20 ms instead of 5 s.
	line("repl-diskless-sync-delay 0")
	// DEBUG SLEEP simulates a hung node.
	line("enable-debug-command local")
	// SIGTERM must not wait for replicas that are being stopped too.
	line("shutdown-timeout 0")
	if n.BusPort != 0 {
		line("cluster-enabled yes")
		line("cluster-config-file %s", quote(filepath.Join(n.Dir, "nodes.conf")))
		line("cluster-port %d", n.BusPort)
		// A node otherwise learns its own address from peers only, and a
		// one-node cluster would list itself as ":port".
		line("cluster-announce-ip %s", cmp.Or(n.announceHost, n.Host))
		if n.announcePort != 0 {
			line("cluster-announce-port %d", n.announcePort)
		}
		if n.announceBusPort != 0 {
			line("cluster-announce-bus-port %d", n.announceBusPort)
		}
		line("cluster-node-timeout %d", o.NodeTimeout.Milliseconds())
		line("cluster-require-full-coverage %s", yesNo(o.RequireFullCoverage))
		line("cluster-allow-reads-when-down no")
	}
	if o.Password != "" {
		line("requirepass %s", quote(o.Password))
		line("masterauth %s", quote(o.Password))
	}
	for _, l := range o.ExtraConfig {
		line("%s", l)
	}
	return os.WriteFile(filepath.Join(n.Dir, "redis.conf"), b.Bytes(), 0o644)
}

// start launches the process without waiting for it to serve. It uses
// exec.Command rather than CommandContext: a node must outlive the context of
// the call that started it, and dies with the test binary instead (see
// sysProcAttr).
func (n *Node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.exited() {
		return fmt.Errorf("%s: already running", n.Addr)
	}
	// Redis writes to its logfile once it has parsed the config; stdout and
	// stderr go to the same file to keep earlier errors too.
	out, err := os.OpenFile(n.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	st, err := out.Stat()
	if err != nil {
		return err
	}
	cmd := exec.Command(n.bin, filepath.Join(n.Dir, "redis.conf"))
	cmd.Dir = n.Dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", n.Addr, err)
	}
	p := &process{cmd: cmd, logOff: st.Size(), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	n.proc = p
	return nil
}

// errPortTaken marks a start that failed because another process bound the
// port between our probe and redis-server's bind.
var errPortTaken = errors.New("port taken")

// waitServing waits until this node's own process answers: a PING alone
// could be answered by another package's server that won the port.
func (n *Node) waitServing(ctx context.Context) error {
	p := n.current()
	if p == nil {
		return fmt.Errorf("%s: not started", n.Addr)
	}
	pid := p.cmd.Process.Pid
	// A probe must not outlast the process: whatever holds the port instead
	// may accept connections and never answer.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var last error
	for {
		if p.exited() {
			tail := n.logSince(p.logOff, 20)
			err := fmt.Errorf("%s: redis-server exited while starting (%v); log:\n%s", n.Addr, p.err, tail)
			if strings.Contains(tail, "Address already in use") {
				err = fmt.Errorf("%w: %w", errPortTaken, err)
			}
			return err
		}
		got, err := n.serverPID(ctx)
		if err == nil && got == pid {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("answered by pid %d, not ours (%d)", got, pid)
		}
		last = err
		if err := sleep(ctx, pollEvery); err != nil && !p.exited() {
			return fmt.Errorf("%s: not serving: %w (last: %v); log:\n%s", n.Addr, err, last, n.logSince(p.logOff, 20))
		}
	}
}

// serverPID asks the server at n.Addr for its process ID.
func (n *Node) serverPID(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, probeLimit)
	defer cancel()
	c, err := n.dial(ctx)
	if err != nil {
		return 0, err
	}
	defer c.close()
	info, err := c.text("INFO", "server")
	if err != nil {
		return 0, err
	}
	v, ok := infoField(info, "process_id")
	if !ok {
		return 0, errors.New("INFO server has no process_id")
	}
	return strconv.Atoi(v)
}

// terminate stops the process: SIGTERM, then SIGKILL after termGrace.
func (n *Node) terminate() error {
	p := n.current()
	if p == nil || p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if p.wait(termGrace) == nil {
		return nil
	}
	_ = p.cmd.Process.Kill()
	if err := p.wait(reapWait); err != nil {
		return fmt.Errorf("%s: %w", n.Addr, err)
	}
	return nil
}

// stopNodes terminates nodes in parallel, so Stop takes one grace period at
// most rather than one per node.
func stopNodes(nodes []*Node) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = n.terminate() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// infoField returns the value of "name:value" in an INFO or CLUSTER INFO
// reply.
func infoField(info, name string) (string, bool) {
	for l := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimRight(l, "\r\n"), name+":"); ok {
			return v, true
		}
	}
	return "", false
}

// quote quotes s for redis.conf, so paths may contain spaces.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// bound gives ctx a DefaultTimeout deadline unless it has one, so that no
// wait in this package is unbounded.
func bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
