package redis

import "testing"

func TestJudge(t *testing.T) {
	full := func(node string, owners ...string) answer {
		a := answer{node: node}
		for i, o := range owners {
			first, last := i*16384/len(owners), (i+1)*16384/len(owners)-1
			a.ranges = append(a.ranges, slotRange{first: uint16(first), last: uint16(last), owner: o})
		}
		return a
	}
	set := func(addrs ...string) map[string]bool {
		m := map[string]bool{}
		for _, a := range addrs {
			m[a] = true
		}
		return m
	}
	// Masters a, b, c; a2 replicates a. The client knows its masters.
	abc := set("a", "b", "c")
	for _, tc := range []struct {
		name     string
		answers  []answer
		lost     string
		known    map[string]bool
		good     bool
		stale    bool
		lostBack bool
	}{
		{"nothing changed", []answer{full("a", "a", "b", "c"), full("b", "a", "b", "c"), full("c", "a", "b", "c")}, "", abc, true, false, false},
		{"owners not heard yet", []answer{full("b", "a", "b", "c")}, "", abc, false, false, false},
		{"lost master back", []answer{full("a", "a", "b", "c"), full("b", "a", "b", "c"), full("c", "a", "b", "c")}, "a", abc, false, false, true},
		{"crash before the promotion", []answer{full("b", "a", "b", "c"), full("c", "a", "b", "c")}, "a", abc, false, false, false},
		{"crash after the promotion", []answer{full("b", "a", "b", "c"), full("c", "a2", "b", "c"), full("a2", "a2", "b", "c")}, "a", abc, true, true, false},
		{"promoted, heard from the new master alone", []answer{full("a2", "a2", "b", "c")}, "", abc, false, false, false},
		{"crash, the client already followed", []answer{full("b", "a2", "b", "c"), full("c", "a2", "b", "c"), full("a2", "a2", "b", "c")}, "a", set("a2", "b", "c"), true, false, false},
		{"lost replica", []answer{full("b", "a", "b", "c"), full("a", "a", "b", "c"), full("c", "a", "b", "c")}, "a2", abc, true, false, false},
		{"master at a new address", []answer{full("b", "x", "b", "c"), full("c", "x", "b", "c"), full("x", "x", "b", "c")}, "", abc, true, true, false},
		{"master at a new address, not heard yet", []answer{full("b", "x", "b", "c"), full("c", "x", "b", "c")}, "", abc, false, false, false},
		{"a silent known master", []answer{full("b", "a2", "b", "c"), full("c", "a", "b", "c")}, "", set("a2", "b", "c"), false, false, false},
		{"partial map", []answer{{node: "b", ranges: []slotRange{{first: 0, last: 100, owner: "b"}}}}, "", abc, false, false, false},
		{"no answer", nil, "a", abc, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := judge(tc.answers, tc.lost, tc.known)
			if (v.good != nil) != tc.good || v.stale != tc.stale || v.lostBack != tc.lostBack {
				t.Errorf("judge = good %v, stale %v, lost back %v; want %v, %v, %v", v.good, v.stale, v.lostBack, tc.good, tc.stale, tc.lostBack)
			}
		})
	}
}
