package chaos

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/tollgate/tollgate/store/redis"
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

// kindNames spell the kinds the store also has as redis.Kind spells them.
var kindNames = [numKinds]string{"ok", redis.KindTimeout.String(), redis.KindMoved.String(), redis.KindAsk.String(),
	redis.KindTryAgain.String(), redis.KindClusterDown.String(), redis.KindLoading.String(), redis.KindReadOnly.String(),
	"refused", "reset", redis.KindCircuitOpen.String(), redis.KindOther.String()}

// String returns the kind's name as used in JSON: "ok", "timeout", "moved",
// "ask", "tryagain", "clusterdown", "loading", "readonly", "refused",
// "reset", "circuit_open" or "other".
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "unknown"
}

// Classify returns the Kind of a call's error; nil is OK. A broken or
// refused connection is told apart by its system error; a store/redis
// error by its kind (redis.KindOf, which sees through the Limiter's
// wrapping); anything else by its message.
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
	switch redis.KindOf(err) {
	case redis.KindCircuitOpen:
		return CircuitOpen
	case redis.KindMoved:
		return Moved
	case redis.KindAsk:
		return Ask
	case redis.KindTryAgain:
		return TryAgain
	case redis.KindClusterDown:
		return ClusterDown
	case redis.KindLoading:
		return Loading
	case redis.KindReadOnly:
		return ReadOnly
	case redis.KindTimeout:
		return Timeout
	case redis.KindClosed:
		return Reset // rueidis.ErrClosing: "unable to connect"
	}
	// Not a reply of store/redis (another store's error, or text): by its
	// message.
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
		{"unable to connect", Reset},
		{"i/o timeout", Timeout},
		{"deadline exceeded", Timeout},
	} {
		if strings.Contains(msg, p.text) {
			return p.kind
		}
	}
	return Other
}
