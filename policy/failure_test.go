package policy_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/tollgate/tollgate/policy"
)

func TestFailureMode(t *testing.T) {
	for _, c := range []struct {
		in   string
		want policy.FailureMode
	}{
		{"", policy.FailClosed},
		{"fail_closed", policy.FailClosed},
		{"fail_open", policy.FailOpen},
		{"fail_local", policy.FailLocal},
	} {
		got, err := policy.ParseFailureMode(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseFailureMode(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
		if c.in != "" && got.String() != c.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), c.in)
		}
	}
	for _, bad := range []string{"fail_sometimes", "FAIL_OPEN", " fail_open", "open"} {
		if _, err := policy.ParseFailureMode(bad); !errors.Is(err, policy.ErrInvalidFailureMode) {
			t.Errorf("ParseFailureMode(%q) = %v, want ErrInvalidFailureMode", bad, err)
		}
	}
	if s := policy.FailureMode(7).String(); s != "FailureMode(7)" {
		t.Errorf("FailureMode(7).String() = %q", s)
	}
}

func TestFailureModeText(t *testing.T) {
	var v struct{ Mode policy.FailureMode }
	if err := json.Unmarshal([]byte(`{"Mode":"fail_local"}`), &v); err != nil || v.Mode != policy.FailLocal {
		t.Fatalf("unmarshal: %v, %v", v.Mode, err)
	}
	b, err := json.Marshal(v)
	if err != nil || string(b) != `{"Mode":"fail_local"}` {
		t.Fatalf("marshal: %s, %v", b, err)
	}
	if err := json.Unmarshal([]byte(`{"Mode":"nope"}`), &v); !errors.Is(err, policy.ErrInvalidFailureMode) {
		t.Errorf("unmarshal of an unknown mode: %v", err)
	}
	if _, err := json.Marshal(struct{ Mode policy.FailureMode }{9}); !errors.Is(err, policy.ErrInvalidFailureMode) {
		t.Errorf("marshal of FailureMode(9): %v", err)
	}
}
