package chaos_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/chaos/harness"
	"github.com/tollgate/tollgate/internal/faultproxy"
	"github.com/tollgate/tollgate/store/redis"
)

// replicationLag is how far behind its master the replica is made to run.
const replicationLag = 100 * time.Millisecond

// TestReplicationLag measures what WaitReplicas buys. The replication link
// of one master runs replicationLag behind (the replica's connection through
// the master's proxy is delayed both ways); under load the master is killed,
// and what the replica had not received by then is gone (the proxy drops the
// bytes it holds, as a dead master's unsent output buffer would be), then
// the replica takes over.
//
// Without WAIT, the consumes acknowledged in the last replicationLag before
// the crash are lost: the test requires some loss, or the fault did not
// bite. With WaitReplicas 1 a consume is acknowledged only once the replica
// has it (the others fail with ErrNotReplicated), so no acknowledged unit
// may be lost.
//
// The load is the other scenarios' (chaos.DefaultRate): with WAIT, the
// writes to one master share connections and WAITs (the group commit).
func TestReplicationLag(t *testing.T) {
	for _, tc := range []struct {
		name string
		wait int
	}{
		{"no-wait", 0},
		{"wait", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ps := needProxied(t)
			var s *scenario
			// Registered first, so it runs after the scenario's own
			// cleanup has counted the units.
			t.Cleanup(func() {
				if s == nil || len(s.faults) == 0 || t.Failed() {
					return
				}
				f := s.faults[0]
				t.Logf("%s: units lost to the crash behind a %v replication lag: %d", tc.name, replicationLag, f.LostUnits)
				if tc.wait == 0 && f.LostUnits == 0 {
					t.Errorf("no unit lost without WAIT: the replication lag did not bite")
				}
			})
			s = startScenario(t, harness.Options{
				Name:     "replication-lag-" + tc.name,
				Lossless: tc.wait > 0,
				Cluster:  c,
				Open: func(ctx context.Context) (*redis.Store, error) {
					return redis.New(ctx, redis.Options{Addrs: c.Addrs(), Cluster: true, WaitReplicas: tc.wait, WaitTimeout: 300 * time.Millisecond})
				},
			})
			sh := s.shards()[0]
			master, replica := sh.Master, sh.Replicas[0]
			proxy, _ := ps.Of(master)
			s.run(harness.Fault{
				Name: fmt.Sprintf("kill -9 of master %s, its replica %v behind", master.Announced(), replicationLag),
				// Recovery is TestKillMaster's; this test counts units.
				Bound: harness.StuckAfter,
				Prepare: func() error {
					proxy.SetSourceDelay(replica.Host, replicationLag)
					harness.Sleep(s.ctx, time.Second) // a second of load on the lagging link
					return nil
				},
				Inject: func() ([]string, error) {
					err := master.Kill()
					proxy.SetSourceMode(replica.Host, faultproxy.Drop)
					return nil, err
				},
			})
			proxy.ClearSourceModes()
			s.run(harness.Fault{
				Name:   fmt.Sprintf("restart of %s", master.Announced()),
				Bound:  harness.StuckAfter,
				Keep:   true,
				Inject: func() ([]string, error) { return nil, master.Restart(s.ctx) },
			})
		})
	}
}
