package tollgate_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/memory"
)

// Meter a customer at 100 cost units per rolling hour, where a request may
// cost several units.
func Example() {
	store := memory.New(memory.Options{})
	defer store.Close()
	lim := tollgate.New(store, tollgate.Options{})
	ctx := context.Background()
	perHour := tollgate.PerHour(100)

	res, err := lim.Consume(ctx, "cust-42", 60, perHour)
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Allowed, res.Used, res.Remaining)

	// 60 + 50 > 100: denied, and nothing recorded.
	res, _ = lim.Consume(ctx, "cust-42", 50, perHour)
	fmt.Println(res.Allowed, res.Used, res.RetryAfter > 59*time.Minute)

	// The request failed downstream: give its units back.
	res, _ = lim.Refund(ctx, "cust-42", 60, perHour)
	fmt.Println(res.Used)

	// A cost above the limit can never fit: an error, not a deny.
	_, err = lim.Consume(ctx, "cust-42", 101, perHour)
	fmt.Println(errors.Is(err, tollgate.ErrCostExceedsLimit))
	// Output:
	// true 60 40
	// false 60 true
	// 0
	// true
}

// A fake clock drives the limiter through Options.Now.
func ExampleOptions_now() {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	store := memory.New(memory.Options{})
	defer store.Close()
	lim := tollgate.New(store, tollgate.Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	limit := tollgate.Limit{Units: 2, Window: time.Second, Algorithm: tollgate.GCRA}

	for range 3 {
		res, _ := lim.Consume(ctx, "k", 1, limit)
		fmt.Println(res.Allowed, res.RetryAfter)
	}
	now = now.Add(500 * time.Millisecond) // one unit drained
	res, _ := lim.Consume(ctx, "k", 1, limit)
	fmt.Println(res.Allowed)
	// Output:
	// true 0s
	// true 0s
	// false 500ms
	// true
}
