package chaos_test

import (
	"testing"

	"github.com/tollgate/tollgate/internal/chaos/harness"
)

// The scenarios on the cluster behind fault proxies; see package harness.

func TestBlackHole(t *testing.T) {
	c, _ := needProxied(t)
	s := newScenarioOn(t, c, "black-hole", false)
	check(t, harness.BlackHole(s.Scenario, runs))
}

func TestStuckMoved(t *testing.T) {
	c, _ := needProxied(t)
	s := newScenarioOn(t, c, "stuck-moved", true)
	check(t, harness.StuckMoved(s.Scenario, runs))
}

func TestPortChange(t *testing.T) {
	c, _ := needProxied(t)
	s := newScenarioOn(t, c, "port-change", true)
	check(t, harness.PortChange(s.Scenario, runs))
}

func TestIdleBlackHole(t *testing.T) {
	c, _ := needProxied(t)
	s := newScenarioOn(t, c, "idle-black-hole", false)
	check(t, harness.IdleBlackHole(s.Scenario, 1))
}

// TestAddressMove moves every node to a new address until no seed is
// alive; the scenarios after it (TestReplicationLag) find the nodes behind
// proxies at their new addresses.
func TestAddressMove(t *testing.T) {
	c, _ := needProxied(t)
	s := newScenarioOn(t, c, "address-move", true)
	check(t, harness.AddressMove(s.Scenario, 1))
}
