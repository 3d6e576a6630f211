package observetest_test

import (
	"testing"

	"github.com/tollgate/tollgate/server/observe"
	"github.com/tollgate/tollgate/server/observe/observetest"
)

var _ observe.Observer = (*observetest.Checks)(nil)

func TestChecks(t *testing.T) {
	var c observetest.Checks
	c.Check("p", observe.ResultAllowed)
	c.Check("q", observe.ResultDenied)
	if got := c.Take(); got != "p allowed, q denied" {
		t.Errorf("Take() = %q", got)
	}
	if got := c.Take(); got != "" {
		t.Errorf("second Take() = %q, want nothing", got)
	}
}
