// Package observetest records what a server reports to its
// observe.Observer, for tests.
package observetest

import (
	"strings"
	"sync"
)

// Checks is an observe.Observer that records each check as "policy
// result". It is safe for concurrent use; the zero value is ready.
type Checks struct {
	mu  sync.Mutex
	got []string
}

// Check implements observe.Observer.
func (c *Checks) Check(policy, result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, policy+" "+result)
}

// Take returns the checks recorded since the last Take, joined by ", ",
// and forgets them.
func (c *Checks) Take() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := strings.Join(c.got, ", ")
	c.got = nil
	return s
}
