package service

import (
	"strings"
	"testing"
)

// --http-max-batch-checks reaches the handler: a batch of one more check
// than it allows is refused and records nothing; one of as many runs.
func TestServeMaxBatchChecks(t *testing.T) {
	cfg := testConfig()
	cfg.HTTP.MaxBatchChecks = 2
	s := serve(t, cfg)
	check := `{"key":"b","limit":5,"window":"1h"}`
	batch := func(n int) string {
		return `{"checks":[` + strings.TrimSuffix(strings.Repeat(check+",", n), ",") + `]}`
	}
	if r := post(t, s.http, "/v1/batch", batch(3)); r.status != 400 || !strings.Contains(r.body, `"too_many_checks"`) {
		t.Fatalf("3 checks with --http-max-batch-checks 2: %d %s, want 400 too_many_checks", r.status, r.body)
	}
	if r := post(t, s.http, "/v1/peek", check); r.status != 200 || !strings.Contains(r.body, `"used":0`) {
		t.Fatalf("after the refused batch: %d %s, want nothing used", r.status, r.body)
	}
	r := post(t, s.http, "/v1/batch", batch(2))
	if r.status != 200 || strings.Count(r.body, `"status":200`) != 2 {
		t.Fatalf("2 checks: %d %s, want 200 with two allowed checks", r.status, r.body)
	}
	if r := post(t, s.http, "/v1/peek", check); !strings.Contains(r.body, `"used":2`) {
		t.Fatalf("after the batch of 2: %s, want used 2", r.body)
	}
}
