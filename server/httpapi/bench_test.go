package httpapi_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/server/httpapi"
)

// discard is a ResponseWriter that keeps nothing, so that the benchmarks
// count the handler's allocations, not a recorder's.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkConsume is one POST /v1/consume with an inline limit through the
// handler on the memory store: its allocations per request (-benchmem) are
// the service's own, without net/http's.
//
//	go test -run '^$' -bench . -benchmem -memprofile /tmp/mem.prof ./server/httpapi
//	go tool pprof -sample_index=alloc_objects -top /tmp/mem.prof
func BenchmarkConsume(b *testing.B) {
	for _, tc := range []struct{ name, path, body string }{
		{"consume", "/v1/consume", `{"key":"k%d","limit":1000000,"window":"1h"}`},
		{"peek", "/v1/peek", `{"key":"k%d","limit":1000000,"window":"1h"}`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b, httpapi.Options{})
			bodies := make([]string, 1000)
			for i := range bodies {
				bodies[i] = strings.Replace(tc.body, "%d", strconv.Itoa(i), 1)
			}
			w := &discard{h: http.Header{}}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				req, err := http.NewRequest(http.MethodPost, tc.path, strings.NewReader(bodies[i%len(bodies)]))
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				clear(w.h)
				e.h.ServeHTTP(w, req)
				i++
			}
		})
	}
}
