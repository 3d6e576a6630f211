package harness

import (
	"testing"

	"github.com/tollgate/tollgate/internal/chaos"
)

func TestFaultFailed(t *testing.T) {
	lossy, lossless := Def{Name: "kill-master"}, Def{Name: "client-kill", Lossless: true}
	for _, tc := range []struct {
		name string
		d    Def
		f    chaos.Fault
		want bool
	}{
		{"clean", lossless, chaos.Fault{}, false},
		{"a check failed", lossy, chaos.Fault{Failures: []string{"bound"}}, true},
		{"stuck", lossy, chaos.Fault{Stuck: []int{7}}, true},
		{"lost where loss is allowed", lossy, chaos.Fault{LostUnits: 3}, false},
		{"over limit by the units lost", lossy, chaos.Fault{LostUnits: 3, OverLimitUnits: 3}, false},
		{"over limit beyond the units lost", lossy, chaos.Fault{LostUnits: 3, OverLimitUnits: 4}, true},
		{"over limit without loss", lossy, chaos.Fault{OverLimitUnits: 1}, true},
		{"lost where no loss is allowed", lossless, chaos.Fault{LostUnits: 1}, true},
	} {
		if got := FaultFailed(tc.d, tc.f); got != tc.want {
			t.Errorf("%s: FaultFailed = %v, want %v", tc.name, got, tc.want)
		}
	}
}
