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
