package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{io.EOF, true},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{context.DeadlineExceeded, true},
		{context.Canceled, false},
		{rueidis.ErrClosing, false},
	} {
		if got := transient(tc.err); got != tc.want {
			t.Errorf("transient(%v) = %t, want %t", tc.err, got, tc.want)
		}
	}
}

func TestRetryPolicy(t *testing.T) {
	p := retryPolicy{retries: 3, attempt: time.Second, backoff: time.Millisecond}
	ctx := context.Background()
	failing := func(n int, err error) (func(context.Context) (int, error), *int) {
		calls := 0
		return func(context.Context) (int, error) {
			calls++
			if calls <= n {
				return 0, err
			}
			return calls, nil
		}, &calls
	}
	for _, tc := range []struct {
		name      string
		fails     int
		err       error
		retryable bool
		wantCalls int
		wantErr   bool
	}{
		{"recovers", 2, io.EOF, true, 3, false},
		{"gives up", 10, io.EOF, true, 4, true},
		{"not retryable", 2, io.EOF, false, 1, true},
		{"not transient", 2, errors.New("ERR"), true, 3, false}, // plain errors are network-like
		{"closing", 2, rueidis.ErrClosing, true, 1, true},
		// A cancellation the caller did not ask for: a retired client's.
		{"canceled under a live context", 2, context.Canceled, true, 3, false},
		{"canceled, not retryable", 2, context.Canceled, false, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			call, calls := failing(tc.fails, tc.err)
			_, err := retryDo(ctx, p, tc.retryable, nopObserver{}, call)
			if *calls != tc.wantCalls || (err != nil) != tc.wantErr {
				t.Errorf("calls %d, err %v; want %d calls, error %t", *calls, err, tc.wantCalls, tc.wantErr)
			}
		})
	}
	// A deadline shorter than the wait before a retry ends the retries.
	// Waits are jittered but never shorter than 1 ms, so a deadline of
	// half that leaves no room for any retry, whatever the draw.
	dctx, cancel := context.WithTimeout(ctx, 500*time.Microsecond)
	defer cancel()
	call, calls := failing(10, io.EOF)
	if _, err := retryDo(dctx, p, true, nopObserver{}, call); err == nil || *calls != 1 {
		t.Errorf("calls %d, err %v: want one call and its error", *calls, err)
	}
}

// An attempt ends with its context even when the client would block on.
func TestBoundedAttempt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	release := make(chan struct{})
	defer close(release)
	_, err := bounded(ctx, nil, func(context.Context) (int, error) {
		<-release // ignores its context, as a client waiting for pipeline room does
		return 1, nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the deadline", err)
	}
}

// Calls left running past their callers hold their tokens until they end:
// past the bound, calls fail at once, and as many goroutines as tokens are
// left behind at most.
func TestBoundedInFlight(t *testing.T) {
	const limit = 5
	inFlight := make(chan struct{}, limit)
	release := make(chan struct{})
	stuck := func(context.Context) (int, error) { <-release; return 1, nil }
	base := runtime.NumGoroutine()
	for i := range 3 * limit {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		_, err := bounded(ctx, inFlight, stuck)
		cancel()
		want := context.DeadlineExceeded
		if i >= limit {
			want = ErrOverloaded
		}
		if !errors.Is(err, want) {
			t.Fatalf("call %d: %v, want %v", i, err, want)
		}
	}
	if n := runtime.NumGoroutine(); n > base+limit {
		t.Errorf("%d goroutines left, want at most %d more than %d", n, limit, base)
	}
	if got := KindOf(fmt.Errorf("x: %w", ErrOverloaded)); got != KindOverloaded || !got.Unavailable() {
		t.Errorf("kind %v", got)
	}
	close(release) // the stuck calls end and give their tokens back
	for end := time.Now().Add(5 * time.Second); len(inFlight) > 0 && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	if v, err := bounded(context.Background(), inFlight, func(context.Context) (int, error) { return 2, nil }); v != 2 || err != nil {
		t.Errorf("after the stuck calls ended: %v, %v", v, err)
	}
}

func TestRequestIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newRequestID()
		if len(id) != 16 || seen[id] {
			t.Fatalf("id %q: want 16 characters, never repeated", id)
		}
		seen[id] = true
	}
}

// With split, an attempt that hangs (a silent node) takes at most half the
// time left, and between runs before the retry, which then succeeds within
// the call's deadline; without split the first attempt takes it all.
func TestRetrySplit(t *testing.T) {
	for _, split := range []bool{true, false} {
		t.Run(fmt.Sprint("split=", split), func(t *testing.T) {
			var moved atomic.Bool
			p := retryPolicy{retries: 2, attempt: time.Second, backoff: time.Millisecond, split: split,
				between: func(context.Context, error) { moved.Store(true) }}
			call := func(ctx context.Context) (int, error) {
				if !moved.Load() {
					<-ctx.Done() // the old owner never answers
					return 0, ctx.Err()
				}
				return 1, nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			v, err := retryDo(ctx, p, true, nopObserver{}, call)
			if split && (err != nil || v != 1) {
				t.Errorf("got %d, %v; want the retry to succeed", v, err)
			}
			if !split && err == nil {
				t.Errorf("got %d; want the deadline to end the only attempt", v)
			}
		})
	}
}
