package header

import (
	"net/http"
	"testing"
)

// The keys set directly are the canonical forms Header.Get looks up.
func TestKeysCanonical(t *testing.T) {
	for name, key := range map[string]string{RateLimit: keyRateLimit, RateLimitPolicy: keyRateLimitPolicy, RetryAfter: keyRetryAfter} {
		if c := http.CanonicalHeaderKey(name); c != key {
			t.Errorf("key of %s is %q, want %q", name, key, c)
		}
	}
}
