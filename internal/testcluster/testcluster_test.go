package testcluster

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/faultproxy"
)

// needServer skips without redis-server, except in CI where the integration
// tests must run.
func needServer(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true requires redis-server in PATH: %v", err)
		}
		t.Skipf("redis-server not in PATH, skipping (install redis-server 7+): %v", err)
	}
}

func TestCluster(t *testing.T) {
	needServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	begin := time.Now()
	c, err := Start(ctx, Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("3+3 cluster started in %v", time.Since(begin).Round(time.Millisecond))
	defer c.Stop()

	nodes := c.Nodes()
	if len(nodes) != 6 || len(c.Addrs()) != 6 {
		t.Fatalf("%d nodes, %d addrs; want 6", len(nodes), len(c.Addrs()))
	}
	for i, n := range nodes {
		if want := "127.0.0." + strconv.Itoa(11+i); n.Host != want || n.Port != nodes[0].Port || n.ID == "" || !n.Running() {
			t.Errorf("node %d = %+v; want host %s, port %d, an ID, running", i, n, want, nodes[0].Port)
		}
	}
	shards := checkShards(ctx, t, c)
	checkRedirect(ctx, t, c, shards)

	t.Run("Failover", func(t *testing.T) {
		master, replica := shards[0].Master, shards[0].Replicas[0]
		begin := time.Now()
		if err := c.Failover(ctx, replica); err != nil {
			t.Fatal(err)
		}
		t.Logf("failover converged in %v", time.Since(begin).Round(time.Millisecond))
		after := checkShards(ctx, t, c)
		if after[0].Master != replica || after[0].Replicas[0] != master {
			t.Errorf("after failover shard 0 = %v, want master %s with replica %s", after[0], replica.Addr, master.Addr)
		}
		if err := c.Failover(ctx, replica); err == nil {
			t.Error("Failover of a master succeeded")
		}
		// Failing back at once is what Redis 7.0 gets wrong; Failover waits.
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if err := c.Failover(short, master); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("immediate second failover of one shard: %v, want it to wait", err)
		}
		if role, err := master.Role(ctx); err != nil || role != RoleReplica {
			t.Errorf("role of %s = %q, %v; want replica", master.Addr, role, err)
		}
	})

	t.Run("KillRestartReplica", func(t *testing.T) {
		r := shards[1].Replicas[0]
		if err := r.Kill(); err != nil {
			t.Fatal(err)
		}
		if r.Running() || r.PID() != 0 {
			t.Error("killed node still running")
		}
		if err := r.Kill(); err == nil {
			t.Error("second Kill succeeded")
		}
		// A dead replica leaves the cluster healthy.
		if err := c.WaitHealthy(ctx); err != nil {
			t.Fatal(err)
		}
		if err := r.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitHealthy(ctx); err != nil {
			t.Fatal(err)
		}
		checkShards(ctx, t, c)
	})

	t.Run("KillMaster", func(t *testing.T) {
		master, replica := shards[2].Master, shards[2].Replicas[0]
		if err := master.Kill(); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		if err := c.WaitHealthy(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("replica took over in %v", time.Since(begin).Round(time.Millisecond))
		if role, err := replica.Role(ctx); err != nil || role != RoleMaster {
			t.Fatalf("replica role = %q, %v; want master", role, err)
		}
		if err := master.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitHealthy(ctx); err != nil {
			t.Fatal(err)
		}
		if role, err := master.Role(ctx); err != nil || role != RoleReplica {
			t.Errorf("restarted master role = %q, %v; want replica", role, err)
		}
		checkShards(ctx, t, c)
	})

	t.Run("Stop", func(t *testing.T) {
		var pids []int
		for _, n := range nodes {
			pids = append(pids, n.PID())
		}
		dir := filepath.Dir(nodes[0].Dir)
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("pid %d after Stop: kill 0 = %v, want ESRCH", pid, err)
			}
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("dir %s after Stop: %v", dir, err)
		}
		if err := c.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
	})
}

// checkShards checks the standard 3+3 layout: three masters covering all
// slots in order, each with one linked replica.
func checkShards(ctx context.Context, t *testing.T, c *Cluster) []Shard {
	t.Helper()
	shards, err := c.Shards(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(shards) != 3 {
		t.Fatalf("%d shards, want 3", len(shards))
	}
	next := 0
	for _, s := range shards {
		for _, r := range s.Slots {
			if r.First != next {
				t.Fatalf("slot %d not covered (shards %v)", next, shards)
			}
			next = r.Last + 1
		}
		if len(s.Replicas) != 1 {
			t.Fatalf("master %s has %d replicas, want 1", s.Master.Addr, len(s.Replicas))
		}
		info, err := s.Replicas[0].Do(ctx, "INFO", "replication")
		if err != nil {
			t.Fatal(err)
		}
		text, _ := info.(string)
		if v, _ := infoField(text, "master_link_status"); v != "up" {
			t.Errorf("replica %s: master_link_status %q", s.Replicas[0].Addr, v)
		}
	}
	if next != slotCount {
		t.Fatalf("slots covered up to %d, want %d", next, slotCount)
	}
	return shards
}

// checkRedirect checks that a key is served by one master and that the others
// redirect to it by raw IP address.
func checkRedirect(ctx context.Context, t *testing.T, c *Cluster, shards []Shard) {
	t.Helper()
	var owner string
	for _, s := range shards {
		_, err := s.Master.Do(ctx, "SET", "testcluster:key", "v")
		var re ReplyError
		switch {
		case err == nil:
			owner = s.Master.Addr
		case errors.As(err, &re) && strings.HasPrefix(string(re), "MOVED "):
			owner = strings.Fields(string(re))[2]
		default:
			t.Fatalf("SET on %s: %v", s.Master.Addr, err)
		}
	}
	if got, err := c.Do(ctx, owner, "GET", "testcluster:key"); err != nil || got != "v" {
		t.Errorf("GET on %s = %v, %v; want v", owner, got, err)
	}
}

func TestStandalone(t *testing.T) {
	needServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	s, err := StartStandalone(ctx, Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if s.Host != DefaultStandaloneHost || s.ID != "" {
		t.Errorf("server %+v, want host %s and no cluster ID", s.Node, DefaultStandaloneHost)
	}
	if got, err := s.Do(ctx, "PING"); err != nil || got != "PONG" {
		t.Fatalf("PING = %v, %v", got, err)
	}
	var re ReplyError
	if _, err := s.Do(ctx, "CLUSTER", "INFO"); !errors.As(err, &re) {
		t.Errorf("CLUSTER INFO on a standalone server: %v, want an error reply", err)
	}
	pid := s.PID()
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Do(ctx, "PING"); err != nil || got != "PONG" || s.PID() == pid {
		t.Errorf("after Restart: PING = %v, %v; pid %d (was %d)", got, err, s.PID(), pid)
	}
	pid, dir := s.PID(), filepath.Dir(s.Dir)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("pid %d after Stop: %v", pid, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir after Stop: %v", err)
	}
}

// TestPortRace makes the first port picked already taken, as when another
// test binary binds it between the probe and redis-server's bind.
func TestPortRace(t *testing.T) {
	needServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	l, err := net.Listen("tcp", net.JoinHostPort(DefaultStandaloneHost, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	picks := 0
	opt := Options{Logf: t.Logf, pickPort: func(hosts []string, bus bool) (int, error) {
		if picks++; picks == 1 {
			return taken, nil
		}
		return freePort(hosts, bus)
	}}
	s, err := StartStandalone(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if picks != 2 || s.Port == taken {
		t.Errorf("picked %d ports, serving on %d (taken: %d); want a second pick", picks, s.Port, taken)
	}

	// A fixed port is not retried.
	opt.Port, opt.pickPort = taken, nil
	if s, err := StartStandalone(ctx, opt); err == nil || !strings.Contains(err.Error(), "Address already in use") {
		t.Errorf("StartStandalone on a taken fixed port: %v", err)
		if err == nil {
			s.Stop()
		}
	}
}

func TestOptions(t *testing.T) {
	o, err := Options{}.normalize(false)
	if err != nil {
		t.Fatal(err)
	}
	if o.Masters != 3 || o.Replicas != 1 || o.NodeTimeout != 2*time.Second ||
		strings.Join(o.Hosts, " ") != "127.0.0.11 127.0.0.12 127.0.0.13 127.0.0.14 127.0.0.15 127.0.0.16" {
		t.Errorf("defaults: %+v", o)
	}
	if o, err := (Options{Masters: 2, Replicas: 5, NoReplicas: true}).normalize(false); err != nil || len(o.Hosts) != 2 {
		t.Errorf("NoReplicas: %d hosts, %v", len(o.Hosts), err)
	}

	one := func(o Options) Options { o.Masters, o.NoReplicas = 1, true; return o }
	for name, o := range map[string]Options{
		"remote host":    one(Options{Hosts: []string{"10.0.0.1"}}),
		"host name":      one(Options{Hosts: []string{"localhost"}}),
		"duplicate host": {Masters: 2, NoReplicas: true, Hosts: []string{"127.0.0.2", "127.0.0.2"}},
		"host count":     {Hosts: []string{"127.0.0.2"}},
		"negative":       {Masters: -1},
		"port":           {Port: 60000},
		"node timeout":   {NodeTimeout: time.Microsecond},
		"too many nodes": {Masters: 100, Replicas: 2},
	} {
		if _, err := Start(t.Context(), o); err == nil {
			t.Errorf("%s: Start accepted %+v", name, o)
		}
	}
	if _, err := StartStandalone(t.Context(), Options{Hosts: []string{"192.168.1.1"}}); err == nil {
		t.Error("StartStandalone accepted a remote host")
	}
	_, err = Start(t.Context(), Options{RedisServer: filepath.Join(t.TempDir(), "redis-server")})
	if !errors.Is(err, ErrNoServer) {
		t.Errorf("missing binary: %v, want ErrNoServer", err)
	}
}

// TestSmallCluster starts one master without replicas on a given host: the
// node has no peer to learn its own address from.
func TestSmallCluster(t *testing.T) {
	needServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, err := Start(ctx, Options{Masters: 1, NoReplicas: true, Hosts: []string{"127.0.0.1"}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	v, err := c.Nodes()[0].Do(ctx, "CLUSTER", "SLOTS")
	want := []any{[]any{int64(0), int64(slotCount - 1), []any{"127.0.0.1", int64(c.Nodes()[0].Port), c.Nodes()[0].ID, []any{}}}}
	if err != nil || !reflect.DeepEqual(v, want) {
		t.Errorf("CLUSTER SLOTS = %#v, %v; want %#v", v, err, want)
	}

	// The same cluster, attached by address: commands work, processes are
	// not the attached cluster's to kill or stop.
	a, err := Attach(ctx, []string{c.Nodes()[0].Addr})
	if err != nil {
		t.Fatal(err)
	}
	n := a.Nodes()
	if len(n) != 1 || n[0].Addr != c.Nodes()[0].Addr || n[0].ID != c.Nodes()[0].ID || !n[0].Running() {
		t.Fatalf("attached nodes %+v", n)
	}
	if err := a.WaitHealthy(ctx); err != nil {
		t.Error(err)
	}
	if sh, err := a.Shards(ctx); err != nil || len(sh) != 1 || sh[0].Master != n[0] {
		t.Errorf("attached shards %+v, %v", sh, err)
	}
	if err := n[0].Kill(); !errors.Is(err, ErrAttached) {
		t.Errorf("Kill of an attached node: %v", err)
	}
	if err := n[0].Restart(ctx); !errors.Is(err, ErrAttached) {
		t.Errorf("Restart of an attached node: %v", err)
	}
	if err := a.Stop(); err != nil || !c.Nodes()[0].Running() {
		t.Errorf("Stop of the attached cluster: %v; the node runs: %v", err, c.Nodes()[0].Running())
	}
	for _, addrs := range [][]string{nil, {"10.0.0.1:6379"}, {"localhost:6379"}, {"127.0.0.1"}} {
		if _, err := Attach(ctx, addrs); err == nil {
			t.Errorf("Attach(%v) succeeded", addrs)
		}
	}
}

// TestBadConfig checks that a node that cannot start fails Start quickly,
// with its log in the error.
func TestBadConfig(t *testing.T) {
	needServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err := Start(ctx, Options{ExtraConfig: []string{"no-such-directive yes"}})
	if err == nil || !strings.Contains(err.Error(), "Bad directive") {
		t.Errorf("Start with a bad directive: %v", err)
	}
}

// TestAnnounceAndMigrate runs a 3-master cluster behind proxies: the nodes
// announce the proxies' ports, one node moves to another proxy, and slots
// migrate with the ASK and MOVED redirects that follow.
func TestAnnounceAndMigrate(t *testing.T) {
	needServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	proxies := map[string][2]*faultproxy.Proxy{} // by host: client, bus
	defer func() {
		for _, ps := range proxies {
			ps[0].Close()
			ps[1].Close()
		}
	}()
	announce := func(host string, port, busPort int) (int, int, error) {
		if old, ok := proxies[host]; ok {
			old[0].Close()
			old[1].Close()
		}
		p, err := faultproxy.New(net.JoinHostPort(host, "0"), net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return 0, 0, err
		}
		b, err := faultproxy.New(net.JoinHostPort(host, "0"), net.JoinHostPort(host, strconv.Itoa(busPort)))
		if err != nil {
			p.Close()
			return 0, 0, err
		}
		proxies[host] = [2]*faultproxy.Proxy{p, b}
		return p.Port(), b.Port(), nil
	}
	c, err := Start(ctx, Options{Masters: 3, NoReplicas: true, Announce: announce, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	for i, n := range c.Nodes() {
		if want := proxies[n.Host][0].Addr(); n.Announced() != want || c.Addrs()[i] != want {
			t.Errorf("node %s announced %s, Addrs %s; want %s", n.Addr, n.Announced(), c.Addrs()[i], want)
		}
	}

	// A key, its slot and owner; a MOVED from another master names the
	// owner's proxy.
	const key = "testcluster:announce"
	v, err := c.Nodes()[0].Do(ctx, "CLUSTER", "KEYSLOT", key)
	if err != nil {
		t.Fatal(err)
	}
	slot := int(v.(int64))
	owner, err := c.SlotOwner(ctx, slot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Do(ctx, "SET", key, "v"); err != nil {
		t.Fatal(err)
	}
	var other *Node
	for _, n := range c.Nodes() {
		if n != owner {
			other = n
			break
		}
	}
	if kind, addr, ok := IsRedirect(func() error { _, err := other.Do(ctx, "GET", key); return err }()); !ok || kind != "MOVED" || addr != owner.Announced() {
		t.Errorf("GET on a non-owner: %s %s; want MOVED %s", kind, addr, owner.Announced())
	}

	// Migration by steps: ASK while half-migrated, MOVED after.
	if err := c.BeginMigration(ctx, slot, owner, other); err != nil {
		t.Fatal(err)
	}
	if n, err := c.MigrateKeys(ctx, slot, owner, other, 0); err != nil || n != 1 {
		t.Fatalf("MigrateKeys = %d, %v; want 1 key", n, err)
	}
	_, err = owner.Do(ctx, "GET", key)
	if kind, addr, ok := IsRedirect(err); !ok || kind != "ASK" || addr != other.Announced() {
		t.Errorf("GET on the source while migrating: %v; want ASK %s", err, other.Announced())
	}
	if err := c.FinishMigration(ctx, slot, owner, other); err != nil {
		t.Fatal(err)
	}
	_, err = owner.Do(ctx, "GET", key)
	if kind, addr, ok := IsRedirect(err); !ok || kind != "MOVED" || addr != other.Announced() {
		t.Errorf("GET on the source after migrating: %v; want MOVED %s", err, other.Announced())
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	// MoveSlots brings it back, with the key.
	if err := c.MoveSlots(ctx, []int{slot, slot + 1}, owner); err != nil {
		t.Fatal(err)
	}
	if got, err := owner.Do(ctx, "GET", key); err != nil || got != "v" {
		t.Errorf("GET after moving back: %v, %v", got, err)
	}
	if o, err := c.SlotOwner(ctx, slot+1); err != nil || o != owner {
		t.Errorf("owner of slot %d after MoveSlots: %v, %v", slot+1, o, err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}

	// The node moves to another proxy: peers learn the new address.
	host := owner.Host
	p2, err := faultproxy.New(net.JoinHostPort(host, "0"), owner.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if err := owner.Announce(ctx, p2.Port(), proxies[host][1].Port()); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = other.Do(ctx, "GET", key)
	if kind, addr, ok := IsRedirect(err); !ok || kind != "MOVED" || addr != p2.Addr() {
		t.Errorf("GET on a non-owner after the move: %v; want MOVED %s", err, p2.Addr())
	}
	// Restart keeps the new address.
	if err := owner.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	if owner.Announced() != p2.Addr() {
		t.Errorf("after Restart: announced %s, want %s", owner.Announced(), p2.Addr())
	}
}
