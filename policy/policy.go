// Package policy holds the rate-limit rules that Tollgate's servers apply,
// as plain values: named HTTP API policies (Policy), the rules of the Envoy
// rate limit service (Rule, matched from a descriptor's Entry list) and
// what to do when the store is unavailable (FailureMode).
//
// It imports only the root package and the standard library, so that the
// servers (server/httpapi, server/rls) and the middleware can use these
// types without the YAML parser: package config reads them from files, and
// a program that builds its rules in code needs only this package.
package policy

import "github.com/tollgate/tollgate"

// Policy is a named set of Limits and how to apply them.
type Policy struct {
	// Name is the policy's unique, non-empty name.
	Name string
	// Limits are 1 to tollgate.MaxLimits valid limits, no two with the same
	// algorithm and window; a request must fit all of them.
	Limits []tollgate.Limit
	// Shadow means decide and report, but never deny: a caller should let a
	// denied request through (and may log or count it).
	Shadow bool
	// FailureMode says how to answer while the store is unavailable; the
	// zero value is FailClosed.
	FailureMode FailureMode
}

// Entry is one key/value pair of a request's rate limit descriptor.
type Entry struct {
	Key, Value string
}

// Rule is the limit that applies to an Envoy rate limit descriptor.
type Rule struct {
	// Limit is valid for the Limiter, except that Limit.Units is 0 for a
	// rule of requests_per_unit: 0, which denies every request (as in
	// envoyproxy/ratelimit). It is the zero Limit when Unlimited.
	Limit tollgate.Limit
	// Unlimited means no limit applies (rate_limit: {unlimited: true}).
	Unlimited bool
	// Shadow (shadow_mode) means report the outcome but never deny.
	Shadow bool
	// FailureMode says how to answer the descriptor while the store is
	// unavailable. The zero value, FailClosed (the default), leaves the
	// failure to the server; FailOpen counts the descriptor as allowed;
	// FailLocal answers it from the server's in-process fallback limiter.
	FailureMode FailureMode
	// StopChargingWhenOver (stop_charging_when_over: true) keeps no hits of
	// a request of which another descriptor is over its limit, as
	// envoyproxy/ratelimit's STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT does:
	// the hits are not charged when an earlier descriptor is over, and are
	// refunded when a later one is.
	StopChargingWhenOver bool
	// Name is the rate_limit's name, if any.
	Name string
	// Replaces are the names of rules this one replaces: when a request
	// matches both, the replaced rule is not checked. Shared; do not modify.
	Replaces []string
	// Key identifies the counter: the domain and the request's descriptor
	// entries, with each value that matched a share_threshold glob replaced
	// by the glob. It is "" when Unlimited. Package config builds it as
	// domain|key1=value1|key2=value2 with '\', '|', '=' and '#' in each part
	// escaped by a backslash, so distinct descriptors never share a key, and
	// hashes keys longer than config.MaxKeyLen.
	Key string
}
