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
		h.Set(RetryAfter, strconv.FormatInt(retry, 10))
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
	h.Set(RateLimit, item+";r="+sfInt(res.Remaining)+";t="+sfInt(t))
}

// SetPolicy sets only RateLimit-Policy, for an answer without a Result (for
// example one let through while the store is unavailable).
func SetPolicy(h http.Header, name string, lim tollgate.Limit) {
	if item, ok := sfString(name); ok {
		setPolicyItem(h, item, lim)
	}
}

// setPolicyItem sets RateLimit-Policy for the serialized name item.
func setPolicyItem(h http.Header, item string, lim tollgate.Limit) {
	v := item + ";q=" + sfInt(lim.Units)
	if lim.Window >= time.Second && lim.Window%time.Second == 0 {
		v += ";w=" + sfInt(int64(lim.Window/time.Second))
	}
	h.Set(RateLimitPolicy, v)
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

// ceilSeconds returns d in whole seconds, rounded up; 0 for d <= 0.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	n := int64(d / time.Second)
	if d%time.Second != 0 {
		n++
	}
	return n
}
