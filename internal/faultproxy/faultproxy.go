// Package faultproxy is a TCP proxy on loopback for fault injection. Put one
// in front of a server and make clients dial it (a Redis Cluster node does
// that by announcing the proxy's port with cluster-announce-port); then
// switch its mode to make the server look partitioned or gone, or point new
// connections at another server.
//
// Modes:
//   - Forward: connections are relayed to the backend, bytes unchanged.
//   - BlackHole: a network partition. Nothing moves in either direction on
//     any connection, and new connections are accepted but not relayed;
//     every byte is held, not dropped, and flows when the mode returns to
//     Forward, as TCP would deliver it once a partition heals.
//   - Drop: every connection is closed, and new ones are closed at once.
//
// SetSourceMode overrides the mode for connections from one source IP
// address, so that a proxy can cut off one peer only: to partition a Redis
// Cluster node, black-hole its own proxies and, on every other node's bus
// proxy, the connections it opens (nodes dial from their own address with
// bind-source-addr).
//
// SetSourceDelay delays, by a fixed time, every byte relayed on connections
// from one source IP address: a slow link, such as a replica's replication
// stream lagging behind its master.
//
// SetBackend changes where new connections go; established ones keep their
// backend. So a client whose connections were re-established meanwhile may
// talk to the wrong server until it dials again.
package faultproxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is what the proxy does with connections.
type Mode uint8

const (
	Forward Mode = iota
	BlackHole
	Drop
)

// String returns "forward", "black-hole" or "drop".
func (m Mode) String() string {
	switch m {
	case Forward:
		return "forward"
	case BlackHole:
		return "black-hole"
	case Drop:
		return "drop"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// DialTimeout bounds dialling the backend.
const DialTimeout = 2 * time.Second

// bufSize is the size of one relayed chunk.
const bufSize = 32 << 10

// Proxy relays connections from its address to a backend. Its methods are
// safe for concurrent use.
type Proxy struct {
	ln net.Listener

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every mode change
	mode     Mode
	bySource map[string]Mode          // source IP → mode overriding mode
	delays   map[string]time.Duration // source IP → delay of each byte
	backend  string
	links    map[*link]struct{}
	accepted int
	closed   bool
	wg       sync.WaitGroup
}

// link is one relayed connection.
type link struct {
	client  net.Conn
	source  string // client's IP address
	backend string
	dead    chan struct{} // closed by close

	mu     sync.Mutex
	server net.Conn // nil until dialled
	closed bool
}

// New listens on addr, which must be a loopback IP address with a port (0
// picks a free one), and relays connections to backend.
func New(addr, backend string) (*Proxy, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("faultproxy: %s is not a loopback IP address", host)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, backend: backend, changed: make(chan struct{}), links: map[*link]struct{}{}, bySource: map[string]Mode{}, delays: map[string]time.Duration{}}
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port is the proxy's port.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// SetMode switches the mode for every connection, established or new,
// except those from a source with its own mode (SetSourceMode).
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	p.mode = m
	p.changeLocked()
}

// SetSourceMode sets the mode for connections, established or new, from
// the IP address ip, overriding SetMode's.
func (p *Proxy) SetSourceMode(ip string, m Mode) {
	p.mu.Lock()
	p.bySource[ip] = m
	p.changeLocked()
}

// ClearSourceModes removes every SetSourceMode override and every
// SetSourceDelay.
func (p *Proxy) ClearSourceModes() {
	p.mu.Lock()
	clear(p.bySource)
	clear(p.delays)
	p.changeLocked()
}

// SetSourceDelay makes the bytes of connections from the IP address ip,
// established or new, in both directions, flow d after they arrive; 0
// removes the delay. Bytes keep their order, and throughput is not limited.
func (p *Proxy) SetSourceDelay(ip string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d <= 0 {
		delete(p.delays, ip)
		return
	}
	p.delays[ip] = d
}

// delay is the delay for l's bytes.
func (p *Proxy) delay(l *link) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delays[l.source]
}

// changeLocked wakes every waiting relay, closes the connections that are
// now to be dropped and unlocks p.mu.
func (p *Proxy) changeLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
	var drop []*link
	for l := range p.links {
		if p.modeLocked(l) == Drop {
			drop = append(drop, l)
		}
	}
	p.mu.Unlock()
	for _, l := range drop {
		l.close()
	}
}

// modeLocked is the mode for l.
func (p *Proxy) modeLocked(l *link) Mode {
	if m, ok := p.bySource[l.source]; ok {
		return m
	}
	return p.mode
}

// Backend returns where new connections go.
func (p *Proxy) Backend() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.backend
}

// SetBackend sends new connections to addr; established ones keep theirs.
func (p *Proxy) SetBackend(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.backend = addr
}

// Conns returns how many connections are open to each backend.
func (p *Proxy) Conns() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for l := range p.links {
		out[l.backend]++
	}
	return out
}

// Accepted returns how many connections the proxy has accepted.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// CloseConns closes every established connection; the mode is unchanged.
func (p *Proxy) CloseConns() {
	p.mu.Lock()
	var all []*link
	for l := range p.links {
		all = append(all, l)
	}
	p.mu.Unlock()
	for _, l := range all {
		l.close()
	}
}

// Close stops listening, closes every connection and waits for the relays
// to end. It is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.changed) // wakes every wait; closed is checked after
	p.changed = make(chan struct{})
	p.mu.Unlock()
	err := p.ln.Close()
	p.CloseConns()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.accepted++
		source, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		l := &link{client: c, source: source, backend: p.backend, dead: make(chan struct{})}
		p.links[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.serve(l) })
	}
}

// state returns the mode for l, whether the proxy is closed and the channel
// that will be closed on the next change.
func (p *Proxy) state(l *link) (Mode, bool, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.modeLocked(l), p.closed, p.changed
}

// wait blocks while l is black-holed, and reports whether to carry on
// (false when dropping, closed, or the link is closed).
func (p *Proxy) wait(l *link) bool {
	for {
		m, closed, changed := p.state(l)
		switch {
		case closed || m == Drop:
			return false
		case m == Forward:
			return true
		}
		select {
		case <-changed:
		case <-l.dead:
			return false
		}
	}
}

// serve relays one connection until either side closes it.
func (p *Proxy) serve(l *link) {
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
	}()
	// A held connection dials only once the partition heals.
	if !p.wait(l) {
		return
	}
	s, err := net.DialTimeout("tcp", l.backend, DialTimeout)
	if err != nil || !l.setServer(s) {
		return
	}
	errc := make(chan error, 2)
	go func() { errc <- p.pump(l, s, l.client) }()
	go func() { errc <- p.pump(l, l.client, s) }()
	<-errc
	l.close() // unblocks the other pump
	<-errc
}

// pump copies src to dst, holding each chunk while the proxy black-holes.
// While the link is delayed, chunks go through a queue to a writer that
// waits out each one's delay, counted from when it was read, so that
// reading goes on and a delay does not limit throughput; otherwise, and
// once the queue is empty, the reader writes them itself.
func (p *Proxy) pump(l *link, dst, src net.Conn) error {
	queue := make(chan chunk, 256)
	var queued atomic.Int64     // chunks in the queue or being written from it
	werr := make(chan error, 1) // the writer's error; closed when it ends
	p.wg.Go(func() {
		defer close(werr)
		for c := range queue {
			if err := p.send(l, dst, c); err != nil {
				werr <- err
				l.close() // unblocks the reader
				return
			}
			queued.Add(-1)
		}
	})
	closed := false
	defer func() {
		if !closed {
			close(queue)
		}
	}()
	buf := make([]byte, bufSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			c := chunk{buf[:n], time.Now()}
			if p.delay(l) == 0 && queued.Load() == 0 {
				if err := p.send(l, dst, c); err != nil {
					return err
				}
			} else {
				c.b = bytes.Clone(c.b)
				queued.Add(1)
				select {
				case queue <- c:
				case <-l.dead:
					return errDropped
				}
			}
		}
		if err != nil {
			if err == io.EOF {
				// What is queued still arrives; then the peer sees the
				// close (half-close is not relayed).
				close(queue)
				closed = true
				return <-werr
			}
			return err
		}
	}
}

// send writes c to dst once the proxy lets it through and its delay is
// over.
func (p *Proxy) send(l *link, dst net.Conn, c chunk) error {
	if !p.wait(l) {
		return errDropped
	}
	if d := time.Until(c.read.Add(p.delay(l))); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-l.dead:
			t.Stop()
			return errDropped
		}
	}
	_, err := dst.Write(c.b)
	return err
}

// chunk is bytes read from one side and when.
type chunk struct {
	b    []byte
	read time.Time
}

var errDropped = errors.New("faultproxy: dropped")

// setServer records the backend connection, or closes it and returns false
// if the link was closed meanwhile.
func (l *link) setServer(s net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		s.Close()
		return false
	}
	l.server = s
	return true
}

// close closes both connections once.
func (l *link) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	close(l.dead)
	l.client.Close()
	if l.server != nil {
		l.server.Close()
	}
}
