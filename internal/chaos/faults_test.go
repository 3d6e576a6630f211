package chaos_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/chaos/harness"
	"github.com/tollgate/tollgate/store/redis"
)

// The scenarios on the shared cluster; see package harness for what each
// does and the bounds it is held to.

func TestGracefulFailover(t *testing.T) {
	s := newScenario(t, "graceful-failover", true)
	check(t, harness.GracefulFailover(s.Scenario, runs))
}

func TestKillMaster(t *testing.T) {
	s := newScenario(t, "kill-master", false)
	check(t, harness.KillMasters(s.Scenario, runs))
}

// TestKillMasterWaitReplica is TestKillMaster with consumes that wait for a
// replica (redis.Options.WaitReplicas), for the units a crash loses with and
// without it (reported in the accounting, not asserted).
func TestKillMasterWaitReplica(t *testing.T) {
	if os.Getenv("TOLLGATE_CHAOS_WAIT") == "" {
		t.Skip("a measurement (~30 s): TOLLGATE_CHAOS_WAIT=1 runs it")
	}
	c := needCluster(t)
	s := newScenarioWith(t, c, "kill-master-wait", false, func(ctx context.Context) (*redis.Store, error) {
		return redis.New(ctx, redis.Options{Addrs: c.Addrs(), Cluster: true, WaitReplicas: 1, WaitTimeout: 100 * time.Millisecond})
	})
	check(t, harness.KillMasters(s.Scenario, runs))
}

func TestClientKill(t *testing.T) {
	s := newScenario(t, "client-kill", true)
	check(t, harness.ClientKill(s.Scenario, runs))
}

func TestSlotMigration(t *testing.T) {
	s := newScenario(t, "slot-migration", true)
	check(t, harness.SlotMigration(s.Scenario, runs))
}

func TestReshard(t *testing.T) {
	s := newScenario(t, "reshard", true)
	check(t, harness.Reshard(s.Scenario, runs))
}
