package main

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/bench"
	"github.com/tollgate/tollgate/server/httpapi"
	"github.com/tollgate/tollgate/store/memory"
)

// --http-batch N: N checks per request of the HTTP target, each counted.
func TestBenchCommandHTTPBatch(t *testing.T) {
	st := memory.New(memory.Options{})
	defer st.Close()
	srv := httptest.NewServer(httpapi.New(tollgate.New(st, tollgate.Options{}), httpapi.Options{}))
	defer srv.Close()
	out, _, err := runBenchCmd(t, "--http", srv.URL, "--http-batch", "7", "--count", "100", "--keys", "2", "--limit", "10", "--window", "1m", "--concurrency", "4", "--json")
	if err != nil {
		t.Fatal(err)
	}
	m := benchJSON(t, out)
	if m["checks"] != 100.0 || m["allowed"] != 20.0 || m["denied"] != 80.0 || m["errors"] != 0.0 {
		t.Errorf("checks %v: allowed %v, denied %v, errors %v; want 100: 20, 80, 0", m["checks"], m["allowed"], m["denied"], m["errors"])
	}
	if note, _ := m["note"].(string); !strings.Contains(note, "7 checks per request") {
		t.Errorf("note %q", m["note"])
	}
}

// --compare=http --http-batch: a row per batch size (1 and repeats are
// the http row's), each through a service started in process.
func TestBenchCommandCompareHTTPBatch(t *testing.T) {
	out, _, err := runBenchCmd(t, "--compare=http", "--http-batch", "1,5,5,10", "--count", "200", "--keys", "10", "--concurrency", "4", "--json")
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := benchJSON(t, out)["compare"].([]any)
	want := []string{bench.NameTollgate, bench.NameHTTP, bench.HTTPBatchName(5), bench.HTTPBatchName(10)}
	if len(rows) != len(want) {
		t.Fatalf("%d compare rows, want %d:\n%s", len(rows), len(want), out)
	}
	for i, r := range rows {
		row := r.(map[string]any)
		if row["name"] != want[i] || row["checks"] != 200.0 || row["allowed"] != 200.0 {
			t.Errorf("row %d: %v, want %s with 200 checks allowed", i, row, want[i])
		}
		if v, _ := row["ratio_checks_per_sec"].(float64); v <= 0 {
			t.Errorf("row %s: ratio %v", want[i], row["ratio_checks_per_sec"])
		}
	}
}

func TestBenchCommandHTTPBatchErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--http-batch", "5"}, "--http-batch needs --http or --compare=http"},
		{[]string{"--http-batch", "5", "--grpc", "127.0.0.1:2"}, "--http-batch needs --http"},
		{[]string{"--http-batch", "5", "--compare=deny"}, "--http-batch needs --http or --compare=http"},
		{[]string{"--http-batch", "0", "--http", "http://127.0.0.1:1"}, "--http-batch 0"},
		{[]string{"--http-batch", "101", "--compare=http"}, "--http-batch 101"},
		{[]string{"--http-batch", "2,3", "--http", "http://127.0.0.1:1"}, "one batch size"},
	} {
		_, _, err := runBenchCmd(t, append(tc.args, "--count", "1")...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
