package config_test

import (
	"fmt"

	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/policy"
)

func ExampleParse() {
	c, err := config.Parse([]byte(`
policies:
  - name: api-hourly
    units: 100
    window: 1h
  - name: login
    units: 5
    window: 1m
    algorithm: gcra
    failure_mode: fail_open
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	p, _ := c.Policy("login")
	fmt.Println(p.Limits, p.FailureMode)

	_, err = config.Parse([]byte("policies:\n  - name: x\n    units: 0\n    window: 1h\n"))
	fmt.Println(err)
	// Output:
	// [5 per 1m0s (gcra)] fail_open
	// line 3: policy "x": tollgate: invalid limit: units 0 out of range [1, 1000000000000000]
}

func ExampleEnvoyConfig_Match() {
	c, err := config.ParseEnvoy([]byte(`
domain: api
descriptors:
  - key: remote_address
    rate_limit: {unit: minute, requests_per_unit: 60}
  - key: remote_address
    value: 10.0.0.1
    rate_limit: {unlimited: true}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	r, ok := c.Match("api", []policy.Entry{{Key: "remote_address", Value: "192.0.2.7"}})
	fmt.Println(ok, r.Limit, r.Key)
	r, ok = c.Match("api", []policy.Entry{{Key: "remote_address", Value: "10.0.0.1"}})
	fmt.Println(ok, r.Unlimited)
	_, ok = c.Match("api", []policy.Entry{{Key: "path", Value: "/"}})
	fmt.Println(ok)
	// Output:
	// true 60 per 1m0s (sliding_log) api|remote_address=192.0.2.7
	// true true
	// false
}
