// Package observe is how Tollgate's servers report their rate-limit
// decisions, for metrics: the Observer interface they call and the result
// labels they pass it. server/httpapi and server/rls report through it and
// *metrics.Metrics (package server/metrics) implements it, so that neither
// server imports Prometheus and metrics imports no server.
package observe

// Observer is told the outcome of each check. Check must be safe for
// concurrent use and fast: it is called on every request. A server given a
// nil Observer reports nothing.
type Observer interface {
	// Check reports one rate-limit decision: an HTTP /v1/consume answered
	// with a result or a store failure, or an Envoy descriptor checked
	// against a rule (bad requests, and unmatched, unlimited or replaced
	// descriptors, are not checks). policy is the HTTP API policy's name
	// (InlinePolicy for an inline limit), or the Envoy rule's name (its
	// domain when the rule has none); result is one of the Result
	// constants.
	Check(policy, result string)
}

// Results of a check: the values of the result label of
// tollgate_checks_total.
const (
	// ResultAllowed: the request fits (and, for a consume, was recorded),
	// whether the store or a fail_local fallback answered.
	ResultAllowed = "allowed"
	// ResultDenied: over the limit; the caller was told to wait.
	ResultDenied = "denied"
	// ResultShadowDenied: over the limit of a shadow policy or rule, so
	// let through.
	ResultShadowDenied = "shadow_denied"
	// ResultError: the check failed (store unavailable or too slow under a
	// fail-closed policy, or an unexpected error) and the caller got an
	// error.
	ResultError = "error"
	// ResultFailOpen: the store failed under a fail-open policy, so the
	// request was let through unchecked.
	ResultFailOpen = "fail_open"
)

// InlinePolicy is the policy label of the HTTP API's inline limits.
const InlinePolicy = "inline"

// PanicObserver is told of every panic a server recovered from, for
// metrics. A server's Observer that also implements it is told; server is
// ServerHTTP or ServerGRPC. *metrics.Metrics implements it. Panic must be
// safe for concurrent use.
type PanicObserver interface {
	Panic(server string)
}

// Servers that recover from panics: the values of the server label of
// tollgate_panics_total.
const (
	ServerHTTP = "http"
	ServerGRPC = "grpc"
)
