package faultproxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// echo starts a line server on loopback that answers each line with
// name + ": " + line.
func echo(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, name+": "+l); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

type client struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{c, bufio.NewReader(c)}
}

// dialFrom connects to p from the loopback address ip.
func dialFrom(t *testing.T, p *Proxy, ip string) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: time.Second}
	c, err := d.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{c, bufio.NewReader(c)}
}

// ask sends a line and returns the answer, or the error after timeout.
func (c *client) ask(line string, timeout time.Duration) (string, error) {
	c.c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c.c, line+"\n"); err != nil {
		return "", err
	}
	s, err := c.r.ReadString('\n')
	return strings.TrimSuffix(s, "\n"), err
}

func TestProxy(t *testing.T) {
	a, b := echo(t, "a"), echo(t, "b")
	p, err := New("127.0.0.1:0", a)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Mode() != Forward || p.Backend() != a || p.Port() == 0 {
		t.Fatalf("new proxy: mode %v, backend %s, port %d", p.Mode(), p.Backend(), p.Port())
	}

	c1 := dial(t, p.Addr())
	if got, err := c1.ask("hi", time.Second); err != nil || got != "a: hi" {
		t.Fatalf("forward: %q, %v", got, err)
	}

	// Black hole: no answer, on old and new connections; the held bytes
	// flow once it heals.
	p.SetMode(BlackHole)
	if got, err := c1.ask("held", 200*time.Millisecond); err == nil {
		t.Fatalf("black hole answered %q", got)
	}
	c2 := dial(t, p.Addr())
	if got, err := c2.ask("new", 200*time.Millisecond); err == nil {
		t.Fatalf("black hole answered a new connection: %q", got)
	}
	p.SetMode(Forward)
	c1.c.SetDeadline(time.Now().Add(time.Second))
	if got, err := c1.r.ReadString('\n'); err != nil || got != "a: held\n" {
		t.Errorf("after healing, old connection: %q, %v", got, err)
	}
	c2.c.SetDeadline(time.Now().Add(time.Second))
	if got, err := c2.r.ReadString('\n'); err != nil || got != "a: new\n" {
		t.Errorf("after healing, new connection: %q, %v", got, err)
	}

	// Redirect: new connections go to b, old ones stay on a.
	p.SetBackend(b)
	c3 := dial(t, p.Addr())
	if got, err := c3.ask("x", time.Second); err != nil || got != "b: x" {
		t.Errorf("redirected connection: %q, %v", got, err)
	}
	if got, err := c1.ask("y", time.Second); err != nil || got != "a: y" {
		t.Errorf("old connection after SetBackend: %q, %v", got, err)
	}
	if n := p.Conns(); n[a] != 2 || n[b] != 1 {
		t.Errorf("Conns = %v", n)
	}

	// Drop closes everything, old and new.
	p.SetMode(Drop)
	if _, err := c1.ask("z", time.Second); err == nil {
		t.Error("old connection survived Drop")
	}
	c4 := dial(t, p.Addr())
	if _, err := c4.ask("z", time.Second); err == nil {
		t.Error("new connection served in Drop")
	}
	p.SetMode(Forward)
	c5 := dial(t, p.Addr())
	if got, err := c5.ask("back", time.Second); err != nil || got != "b: back" {
		t.Errorf("after Drop: %q, %v", got, err)
	}

	// CloseConns closes established connections only.
	p.CloseConns()
	if _, err := c5.ask("gone", time.Second); err == nil {
		t.Error("connection survived CloseConns")
	}
	if got, err := dial(t, p.Addr()).ask("again", time.Second); err != nil || got != "b: again" {
		t.Errorf("after CloseConns: %q, %v", got, err)
	}
	if p.Accepted() != 6 {
		t.Errorf("Accepted = %d, want 6", p.Accepted())
	}

	// Close ends held connections too.
	p.SetMode(BlackHole)
	c6 := dial(t, p.Addr())
	io.WriteString(c6.c, "never\n")
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Close hung on a black-holed connection")
	}
	if _, err := c6.ask("x", time.Second); err == nil {
		t.Error("connection survived Close")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestNonLoopback(t *testing.T) {
	if _, err := New("0.0.0.0:0", "127.0.0.1:1"); err == nil {
		t.Error("New accepted a non-loopback address")
	}
	if _, err := New("localhost:0", "127.0.0.1:1"); err == nil {
		t.Error("New accepted a host name")
	}
}

// TestSourceMode black-holes the connections from one source address only.
func TestSourceMode(t *testing.T) {
	a := echo(t, "a")
	p, err := New("127.0.0.1:0", a)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cut, other := dialFrom(t, p, "127.0.0.2"), dialFrom(t, p, "127.0.0.3")
	if got, err := cut.ask("1", time.Second); err != nil || got != "a: 1" {
		t.Fatalf("forward: %q, %v", got, err)
	}
	p.SetSourceMode("127.0.0.2", BlackHole)
	if got, err := cut.ask("2", 200*time.Millisecond); err == nil {
		t.Errorf("black-holed source answered: %q", got)
	}
	if got, err := other.ask("2", time.Second); err != nil || got != "a: 2" {
		t.Errorf("other source: %q, %v", got, err)
	}
	if got, err := dialFrom(t, p, "127.0.0.2").ask("3", 200*time.Millisecond); err == nil {
		t.Errorf("new connection from the black-holed source answered: %q", got)
	}
	// The override wins over the proxy's mode.
	p.SetMode(BlackHole)
	p.SetSourceMode("127.0.0.3", Forward)
	if got, err := other.ask("3", time.Second); err != nil || got != "a: 3" {
		t.Errorf("source forwarded in a black-holed proxy: %q, %v", got, err)
	}
	p.SetMode(Forward)
	p.SetSourceMode("127.0.0.3", Drop)
	if _, err := other.ask("4", time.Second); err == nil {
		t.Error("dropped source survived")
	}
	p.ClearSourceModes()
	cut.c.SetDeadline(time.Now().Add(time.Second))
	if got, err := cut.r.ReadString('\n'); err != nil || got != "a: 2\n" {
		t.Errorf("after clearing, held answer: %q, %v", got, err)
	}
}

// TestSourceDelay checks that a delayed source's bytes never arrive before
// the delay (a lower bound, which no slowness of the machine can break),
// keep their order and all arrive, while other sources are not held.
func TestSourceDelay(t *testing.T) {
	p, err := New("127.0.0.1:0", echo(t, "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	slow, other := dialFrom(t, p, "127.0.0.2"), dialFrom(t, p, "127.0.0.3")
	const delay = 300 * time.Millisecond
	p.SetSourceDelay("127.0.0.2", delay)

	start := time.Now()
	got, err := slow.ask("1", 10*time.Second)
	if err != nil || got != "a: 1" {
		t.Fatalf("delayed source: %q, %v", got, err)
	}
	// Both directions are delayed.
	if took := time.Since(start); took < 2*delay {
		t.Errorf("round trip through the delayed link took %v, less than twice the delay %v", took, delay)
	}
	if got, err := other.ask("1", 10*time.Second); err != nil || got != "a: 1" {
		t.Errorf("other source: %q, %v", got, err)
	}

	// Many lines at once, more than one chunk: all arrive, in order.
	var b strings.Builder
	const lines = 5000
	for i := range lines {
		fmt.Fprintf(&b, "line %d %s\n", i, strings.Repeat("x", 20))
	}
	slow.c.SetDeadline(time.Now().Add(20 * time.Second))
	go io.WriteString(slow.c, b.String())
	for i := range lines {
		l, err := slow.r.ReadString('\n')
		if want := fmt.Sprintf("a: line %d %s\n", i, strings.Repeat("x", 20)); err != nil || l != want {
			t.Fatalf("line %d: %q, %v; want %q", i, l, err, want)
		}
	}

	p.SetSourceDelay("127.0.0.2", 0)
	if got, err := slow.ask("2", 10*time.Second); err != nil || got != "a: 2" {
		t.Errorf("after removing the delay: %q, %v", got, err)
	}
}
