package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

// maxSFInteger is the largest Integer of HTTP Structured Fields (RFC 9651).
const maxSFInteger = 999_999_999_999_999

// setRateLimit sets the RateLimit-Policy and RateLimit fields of a result
// (see the package documentation). denied: the answer is a 429, so t is
// the Retry-After.
func setRateLimit(h http.Header, name string, lim tollgate.Limit, res tollgate.Result, denied bool) {
	item, ok := sfString(name)
	if !ok {
		return
	}
	setPolicyItem(h, item, lim)
	var t int64
	switch {
	case denied:
		t = ceilDiv(res.RetryAfter, time.Second)
	case res.ResetAfter > 0:
		t = ceilDiv(res.ResetAfter, time.Second)
	default:
		t = ceilDiv(lim.Window, time.Second)
	}
	h.Set("RateLimit", item+";r="+sfInt(res.Remaining)+";t="+sfInt(t))
}

// setRateLimitPolicy sets the RateLimit-Policy field of a policy or inline
// limit called name.
func setRateLimitPolicy(h http.Header, name string, lim tollgate.Limit) {
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
	h.Set("RateLimit-Policy", v)
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
// maxSFInteger].
func sfInt(n int64) string {
	return strconv.FormatInt(max(0, min(n, maxSFInteger)), 10)
}
