package tollgate_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

func TestParseAlgorithm(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want tollgate.Algorithm
		err  bool
	}{
		{"", tollgate.SlidingLog, false},
		{"sliding_log", tollgate.SlidingLog, false},
		{"sliding_window", tollgate.SlidingWindow, false},
		{"gcra", tollgate.GCRA, false},
		{"GCRA", 0, true},
		{"token_bucket", 0, true},
	} {
		got, err := tollgate.ParseAlgorithm(tc.in)
		if (err != nil) != tc.err || (err == nil && got != tc.want) {
			t.Errorf("ParseAlgorithm(%q) = %v, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, tollgate.ErrInvalidLimit) {
			t.Errorf("ParseAlgorithm(%q) error %v does not wrap ErrInvalidLimit", tc.in, err)
		}
		if err == nil && tc.in != "" && got.String() != tc.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tc.in)
		}
	}
	if got := tollgate.Algorithm(7).String(); got != "Algorithm(7)" {
		t.Errorf("unknown algorithm String = %q", got)
	}
}

func TestLimit(t *testing.T) {
	l := tollgate.PerHour(100)
	if got, want := l.String(), "100 per 1h0m0s (sliding_log)"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if l.IsZero() || !(tollgate.Limit{}).IsZero() {
		t.Error("IsZero")
	}
	if tollgate.PerSecond(3) != (tollgate.Limit{Units: 3, Window: time.Second}) || tollgate.PerMinute(3).Window != time.Minute {
		t.Error("PerSecond/PerMinute")
	}
	for _, tc := range []struct {
		l  tollgate.Limit
		ok bool
	}{
		{tollgate.Limit{Units: 1, Window: tollgate.MinWindow}, true},
		{tollgate.Limit{Units: tollgate.MaxUnits, Window: tollgate.MaxWindow, Algorithm: tollgate.GCRA}, true},
		{tollgate.Limit{Units: 0, Window: time.Second}, false},
		{tollgate.Limit{Units: -1, Window: time.Second}, false},
		{tollgate.Limit{Units: tollgate.MaxUnits + 1, Window: time.Second}, false},
		{tollgate.Limit{Units: 1, Window: tollgate.MinWindow - 1}, false},
		{tollgate.Limit{Units: 1, Window: tollgate.MaxWindow + 1}, false},
		{tollgate.Limit{Units: 1, Window: time.Second, Algorithm: 3}, false},
	} {
		err := tc.l.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, tollgate.ErrInvalidLimit)) {
			t.Errorf("%+v.Validate() = %v", tc.l, err)
		}
	}
}
