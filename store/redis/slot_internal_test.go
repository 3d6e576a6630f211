package redis

import (
	"slices"
	"testing"
	"time"
)

// Known slots from `CLUSTER KEYSLOT` on Redis 7.
func TestSlot(t *testing.T) {
	for key, want := range map[string]uint16{"foo": 12182, "bar": 5061, "user1000": 3443, "": 0, "123456789": 12739} {
		if got := slot(key); got != want {
			t.Errorf("slot(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestSlotMapOwner(t *testing.T) {
	m := slotMap{ranges: []slotRange{{first: 0, last: 5460, owner: "a:1"}, {first: 5461, last: 10922, owner: "b:2"}, {first: 10923, last: 16383, owner: "c:3"}}}
	for sl, want := range map[uint16]string{0: "a:1", 5460: "a:1", 5461: "b:2", 16383: "c:3"} {
		if got := m.owner(sl); got != want {
			t.Errorf("owner(%d) = %q, want %q", sl, got, want)
		}
	}
	if got := (slotMap{ranges: []slotRange{{first: 10, last: 20, owner: "a:1"}}}).owner(21); got != "" {
		t.Errorf("uncovered slot: owner %q, want none", got)
	}
}

// A slot whose streak began longer ago than the window is not listed: no
// call may reach it any more, and it must not keep a watcher alive.
func TestFailingSlots(t *testing.T) {
	var h slotHealth
	now := time.Unix(1000, 0)
	h.record(7, true, now.Add(-time.Minute))
	h.record(9, true, now.Add(-time.Second))
	h.record(11, true, now)
	h.record(11, false, now)
	if got := h.failing(now, 20*time.Second); !slices.Equal(got, []uint16{9}) {
		t.Errorf("failing = %v, want [9]", got)
	}
}
