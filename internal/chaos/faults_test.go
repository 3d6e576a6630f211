package chaos_test

import (
	"testing"

	"github.com/tollgate/tollgate/internal/chaos/harness"
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

// The idle scenarios send no call during the fault, then sweep every slot
// (harness.SweepKeys consumes, one after another, each within 100 ms): no
// call may fail.

func TestIdleFailover(t *testing.T) {
	s := newScenario(t, "idle-failover", true)
	check(t, harness.IdleFailover(s.Scenario, 1))
}

func TestIdleKill(t *testing.T) {
	s := newScenario(t, "idle-kill", false)
	check(t, harness.IdleKill(s.Scenario, 1))
}
