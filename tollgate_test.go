package tollgate_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tollgate/tollgate"
)

// brokenStore fails every call, as a store whose server is down does.
type brokenStore struct{ err error }

func (b brokenStore) Do(context.Context, tollgate.Request) (tollgate.Decision, error) {
	return tollgate.Decision{}, b.err
}
func (b brokenStore) Reset(context.Context, string) error { return b.err }

func TestStoreErrorsWrapErrUnavailable(t *testing.T) {
	ctx := context.Background()
	for _, cause := range []error{errors.New("connection refused"), context.DeadlineExceeded} {
		lim := tollgate.New(brokenStore{cause}, tollgate.Options{})
		_, err := lim.Consume(ctx, "k", 1, tollgate.PerSecond(1))
		if !errors.Is(err, tollgate.ErrUnavailable) || !errors.Is(err, cause) {
			t.Errorf("Consume error %v: want ErrUnavailable wrapping %v", err, cause)
		}
		if err := lim.Reset(ctx, "k"); !errors.Is(err, tollgate.ErrUnavailable) || !errors.Is(err, cause) {
			t.Errorf("Reset error %v: want ErrUnavailable wrapping %v", err, cause)
		}
	}
	// Already wrapped errors are not wrapped twice.
	wrapped := errors.Join(tollgate.ErrUnavailable, errors.New("x"))
	_, err := tollgate.New(brokenStore{wrapped}, tollgate.Options{}).Peek(ctx, "k", tollgate.PerSecond(1))
	if err != wrapped {
		t.Errorf("got %v, want the store's own error", err)
	}
}

// Invalid input never reaches the store.
func TestInvalidInputSkipsStore(t *testing.T) {
	lim := tollgate.New(brokenStore{errors.New("must not be called")}, tollgate.Options{})
	_, err := lim.Consume(context.Background(), "", 1, tollgate.PerSecond(1))
	if !errors.Is(err, tollgate.ErrInvalidKey) || errors.Is(err, tollgate.ErrUnavailable) {
		t.Errorf("got %v", err)
	}
}
