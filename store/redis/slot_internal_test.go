package redis

import "testing"

// Known slots from `CLUSTER KEYSLOT` on Redis 7.
func TestSlot(t *testing.T) {
	for key, want := range map[string]uint16{"foo": 12182, "bar": 5061, "user1000": 3443, "": 0, "123456789": 12739} {
		if got := slot(key); got != want {
			t.Errorf("slot(%q) = %d, want %d", key, got, want)
		}
	}
}
