package policy

import (
	"errors"
	"fmt"
)

// FailureMode says how a policy, rule or server answers while the store is
// unavailable (tollgate.ErrUnavailable). The zero value is FailClosed.
type FailureMode uint8

// Failure modes. Their String forms are the spellings of failure_mode in
// config files.
const (
	// FailClosed refuses the request: the HTTP API answers 503, the Envoy
	// rate limit service an Unavailable error, the middleware 503.
	FailClosed FailureMode = iota
	// FailOpen lets the request through unchecked, marked degraded.
	FailOpen
	// FailLocal answers from an in-process fallback limiter of the same
	// limits, marked degraded: each instance then limits on its own. Where
	// no fallback is configured it acts as FailClosed.
	FailLocal
)

// ErrInvalidFailureMode is wrapped by ParseFailureMode's errors.
var ErrInvalidFailureMode = errors.New("policy: invalid failure mode")

// String returns the mode's name: "fail_closed", "fail_open" or
// "fail_local".
func (m FailureMode) String() string {
	switch m {
	case FailClosed:
		return "fail_closed"
	case FailOpen:
		return "fail_open"
	case FailLocal:
		return "fail_local"
	}
	return fmt.Sprintf("FailureMode(%d)", uint8(m))
}

// ParseFailureMode parses a name as returned by FailureMode.String. The
// empty string parses as FailClosed, the default. Other names fail with
// ErrInvalidFailureMode.
func ParseFailureMode(s string) (FailureMode, error) {
	for _, m := range []FailureMode{FailClosed, FailOpen, FailLocal} {
		if s == m.String() {
			return m, nil
		}
	}
	if s == "" {
		return FailClosed, nil
	}
	return 0, fmt.Errorf("%w: unknown failure_mode %q (want %s, %s or %s)", ErrInvalidFailureMode, s, FailClosed, FailOpen, FailLocal)
}

// MarshalText implements encoding.TextMarshaler with String; a mode
// outside the three fails with ErrInvalidFailureMode.
func (m FailureMode) MarshalText() ([]byte, error) {
	if m > FailLocal {
		return nil, fmt.Errorf("%w: %d", ErrInvalidFailureMode, uint8(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseFailureMode.
func (m *FailureMode) UnmarshalText(text []byte) error {
	v, err := ParseFailureMode(string(text))
	if err != nil {
		return err
	}
	*m = v
	return nil
}
