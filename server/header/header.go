// Package header sets the rate-limit header fields of an HTTP response from
// a tollgate.Result, as the HTTP API (server/httpapi) and the net/http
// middleware (package middleware) send them: RateLimit-Policy and RateLimit
// of draft-ietf-httpapi-ratelimit-headers-11, and Retry-After on a denial.
//
// For a policy called "api-hourly" of 100 units per hour with 97 remaining:
//
//	RateLimit-Policy: "api-hourly";q=100;w=3600
//	RateLimit: "api-hourly";r=97;t=3600
//
// q is the limit's units and w its window in seconds (left out when the
// window is not a whole number of seconds, as the draft has no sub-second
// windows); r is the remaining units and t, in seconds rounded up, the time
// until usage falls to 0 (a full window when nothing is in use), within
// which a client that uses no more than r units will not be throttled. On a
// denial t equals Retry-After (whole seconds, rounded up), as the draft asks
// that Retry-After not end before the effective window. Integers are capped
// at MaxInteger.
//
// A policy of several limits (SetAll) lists each in RateLimit-Policy, named
// "<policy>/<window>" ("<policy>/<window>/<algorithm>" where two limits share
// a window), and RateLimit reports the tightest (tollgate.Decision.Tightest),
// as draft-11 allows:
//
//	RateLimit-Policy: "api/1s";q=10;w=1, "api/1h";q=1000;w=3600
//	RateLimit: "api/1h";r=0;t=1200
package header

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

// Header field names.
const (
	RateLimit       = "RateLimit"
	RateLimitPolicy = "RateLimit-Policy"
	RetryAfter      = "Retry-After"
)

// The fields' keys in an http.Header (Go's canonical form): set by key,
// not by Header.Set, so that no answer pays to canonicalize them again.
const (
	keyRateLimit       = "Ratelimit"
	keyRateLimitPolicy = "Ratelimit-Policy"
	keyRetryAfter      = "Retry-After"
)

// Degraded is the header field that marks an answer given without the
// store, by the HTTP API and the middleware; its values are
// DegradedStoreUnavailable and DegradedLocalFallback.
const Degraded = "Tollgate-Degraded"

// Values of Degraded.
const (
	// DegradedStoreUnavailable: the store did not answer and a fail_open
	// policy let the request through unchecked.
	DegradedStoreUnavailable = "store-unavailable"
	// DegradedLocalFallback: the store did not answer and a fail_local
	// policy's in-process fallback limiter answered instead.
	DegradedLocalFallback = "local-fallback"
)

// MaxInteger is the largest Integer of HTTP Structured Fields (RFC 9651):
// larger values are sent as MaxInteger.
const MaxInteger = 999_999_999_999_999

// Set sets RateLimit-Policy and RateLimit for res under lim, naming the
// policy name; denied means the response refuses the request (a 429), so
// that t is the retry time and Retry-After is set too. A name with
// characters outside printable ASCII cannot be a Structured Fields String:
// then only Retry-After (when denied) is set.
func Set(h http.Header, name string, lim tollgate.Limit, res tollgate.Result, denied bool) {
	retry := ceilSeconds(res.RetryAfter)
	if denied {
		h[keyRetryAfter] = oneValue(strconv.FormatInt(retry, 10))
	}
	item, ok := sfString(name)
	if !ok {
		return
	}
	setPolicyItem(h, item, lim)
	var t int64
	switch {
	case denied:
		t = retry
	case res.ResetAfter > 0:
		t = ceilSeconds(res.ResetAfter)
	default:
		t = ceilSeconds(lim.Window)
	}
	h[keyRateLimit] = oneValue(item + ";r=" + sfInt(res.Remaining) + ";t=" + sfInt(t))
}

// SetAll sets the fields for d, the Decision of a policy called name over
// limits (in the order of d.Results); denied as for Set. With one limit it
// is Set.
func SetAll(h http.Header, name string, limits []tollgate.Limit, d tollgate.Decision, denied bool) {
	if len(limits) == 1 {
		Set(h, name, limits[0], d.Results[0], denied)
		return
	}
	if denied {
		h[keyRetryAfter] = oneValue(strconv.FormatInt(ceilSeconds(d.RetryAfter), 10))
	}
	items, ok := limitItems(name, limits)
	if !ok {
		return
	}
	setPolicyItems(h, items, limits)
	i := d.Tightest()
	r := d.Results[i]
	var t int64
	switch {
	case denied:
		t = ceilSeconds(d.RetryAfter)
	case r.ResetAfter > 0:
		t = ceilSeconds(r.ResetAfter)
	default:
		t = ceilSeconds(limits[i].Window)
	}
	h[keyRateLimit] = oneValue(items[i] + ";r=" + sfInt(r.Remaining) + ";t=" + sfInt(t))
}

// SetPolicy sets only RateLimit-Policy, for an answer without a Result (for
// example one let through while the store is unavailable).
func SetPolicy(h http.Header, name string, limits ...tollgate.Limit) {
	if len(limits) == 1 {
		if item, ok := sfString(name); ok {
			setPolicyItem(h, item, limits[0])
		}
		return
	}
	if items, ok := limitItems(name, limits); ok {
		setPolicyItems(h, items, limits)
	}
}

// LimitName names limit i of limits in a policy called name, as SetAll
// does: "<name>/<window>", with "/<algorithm>" when another limit has the
// same window.
func LimitName(name string, limits []tollgate.Limit, i int) string {
	n := name + "/" + FormatWindow(limits[i].Window)
	for j, l := range limits {
		if j != i && l.Window == limits[i].Window {
			return n + "/" + limits[i].Algorithm.String()
		}
	}
	return n
}

// limitItems serializes every limit's name, or reports false when the
// policy's name cannot be a String.
func limitItems(name string, limits []tollgate.Limit) ([]string, bool) {
	items := make([]string, len(limits))
	for i := range limits {
		item, ok := sfString(LimitName(name, limits, i))
		if !ok {
			return nil, false
		}
		items[i] = item
	}
	return items, true
}

// setPolicyItem sets RateLimit-Policy for the serialized name item.
func setPolicyItem(h http.Header, item string, lim tollgate.Limit) {
	h[keyRateLimitPolicy] = oneValue(policyItem(item, lim))
}

func setPolicyItems(h http.Header, items []string, limits []tollgate.Limit) {
	v := make([]string, len(items))
	for i, item := range items {
		v[i] = policyItem(item, limits[i])
	}
	h[keyRateLimitPolicy] = oneValue(strings.Join(v, ", "))
}

func policyItem(item string, lim tollgate.Limit) string {
	v := item + ";q=" + sfInt(lim.Units)
	if lim.Window >= time.Second && lim.Window%time.Second == 0 {
		v += ";w=" + sfInt(int64(lim.Window/time.Second))
	}
	return v
}

// FormatWindow formats a window as limit names show it: as
// time.Duration.String does, without zero units at the end ("1h", "90s",
// "1h30m", "250ms").
func FormatWindow(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// sfString serializes s as a Structured Fields String, or reports false if
// it has characters a String cannot hold (outside printable ASCII).
func sfString(s string) (string, bool) {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < ' ' || c > '~':
			return "", false
		case c == '"' || c == '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String(), true
}

// sfInt serializes n as a Structured Fields Integer, clamped to [0,
// MaxInteger].
func sfInt(n int64) string {
	return strconv.FormatInt(max(0, min(n, MaxInteger)), 10)
}

// Ceil returns d in whole units of unit (above 0), rounded up, so that a
// client that waits that long never comes back too early: Ceil(1500ms,
// time.Second) is 2. It is 0 for d <= 0.
func Ceil(d, unit time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	n := int64(d / unit)
	if d%unit != 0 {
		n++
	}
	return n
}

// ceilSeconds returns d in whole seconds, rounded up; 0 for d <= 0.
func ceilSeconds(d time.Duration) int64 { return Ceil(d, time.Second) }

func oneValue(v string) []string { return []string{v} }
