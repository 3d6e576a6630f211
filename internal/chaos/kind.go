package chaos

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
)

// Kind classifies the outcome of one call.
type Kind uint8

const (
	// OK: the store answered, allowed or denied.
	OK Kind = iota
	// Timeout: the call's deadline passed (context or socket).
	Timeout
	// Moved: a MOVED redirect reached the caller.
	Moved
	// Ask: an ASK redirect reached the caller.
	Ask
	// TryAgain: TRYAGAIN, a multi-key command on a slot being migrated.
	TryAgain
	// ClusterDown: CLUSTERDOWN, a slot without a master.
	ClusterDown
	// Loading: LOADING, a node still loading its data set.
	Loading
	// ReadOnly: READONLY, a write sent to a replica.
	ReadOnly
	// Refused: connection refused, a dead node's address.
	Refused
	// Reset: the connection broke or could not be made (reset, EOF, broken
	// pipe, closed; rueidis's "unable to connect").
	Reset
	// CircuitOpen: the store failed the call fast on purpose, without
	// trying the node (store/redis's ErrCircuitOpen: "circuit open").
	CircuitOpen
	// Other: anything else, such as a malformed reply.
	Other
	numKinds
)

var kindNames = [numKinds]string{"ok", "timeout", "moved", "ask", "tryagain", "clusterdown", "loading", "readonly", "refused", "reset", "circuit-open", "other"}

// String returns the kind's name as used in JSON: "ok", "timeout", "moved",
// "ask", "tryagain", "clusterdown", "loading", "readonly", "refused",
// "reset", "circuit-open" or "other".
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "unknown"
}

// Classify returns the Kind of a call's error; nil is OK. It looks at the
// standard error values first and otherwise at the message, since Redis error
// replies reach the caller as text (wrapped by tollgate.ErrUnavailable).
func Classify(err error) Kind {
	if err == nil {
		return OK
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return Timeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return Reset
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Timeout
	}
	msg := err.Error()
	for _, p := range []struct {
		text string
		kind Kind
	}{
		{"circuit open", CircuitOpen},
		{"MOVED ", Moved},
		{"ASK ", Ask},
		{"TRYAGAIN", TryAgain},
		{"CLUSTERDOWN", ClusterDown},
		{"LOADING", Loading},
		{"READONLY", ReadOnly},
		{"connection refused", Refused},
		{"connection reset", Reset},
		{"broken pipe", Reset},
		{"use of closed network connection", Reset},
		{"unable to connect", Reset}, // rueidis.ErrClosing
		{"i/o timeout", Timeout},
		{"deadline exceeded", Timeout},
	} {
		if strings.Contains(msg, p.text) {
			return p.kind
		}
	}
	return Other
}
