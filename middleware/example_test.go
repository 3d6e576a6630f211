package middleware_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/middleware"
	"github.com/tollgate/tollgate/store/memory"
)

func ExampleNew() {
	store := memory.New(memory.Options{})
	defer store.Close()
	lim := tollgate.New(store, tollgate.Options{})

	limit := middleware.New(lim, middleware.Options{
		Limit: tollgate.PerMinute(2),
		Name:  "search",
		// Keep this middleware's keys apart from other uses of lim, and
		// count an IPv6 client's whole /64 as one.
		Key: func(r *http.Request) (string, error) {
			ip, err := middleware.ClientIP(r)
			if err != nil {
				return "", err
			}
			if a, _ := netip.ParseAddr(ip); a.Is6() {
				p, _ := a.Prefix(64)
				ip = p.String()
			}
			return "search:" + ip, nil
		},
	})
	search := limit(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "results")
	}))

	for _, remote := range []string{"[2001:db8::1]:1000", "[2001:db8::2]:1000", "[2001:db8::3]:1000"} {
		req := httptest.NewRequest("GET", "/search?q=gate", nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		search.ServeHTTP(rec, req)
		fmt.Println(rec.Code, rec.Header().Get("RateLimit"))
	}
	// Output:
	// 200 "search";r=1;t=60
	// 200 "search";r=0;t=60
	// 429 "search";r=0;t=60
}

func ExampleClientIPBehind() {
	// Behind a load balancer in 10.0.0.0/8: the client is the address it
	// appended to X-Forwarded-For, not what the client claims.
	key := middleware.ClientIPBehind(netip.MustParsePrefix("10.0.0.0/8"))
	req := httptest.NewRequest("GET", "/", nil)
	req.RemoteAddr = "10.1.2.3:50000"
	req.Header.Set("X-Forwarded-For", "6.6.6.6, 198.51.100.7")
	fmt.Println(key(req))
	// Output: 198.51.100.7 <nil>
}
