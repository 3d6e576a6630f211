package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/policy"
)

// FuzzParse feeds arbitrary bytes to both parsers: they must return, never
// panic, and what they accept must be usable.
func FuzzParse(f *testing.F) {
	err := filepath.WalkDir("testdata", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f.Add(data)
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := Parse(data); err == nil {
			for _, p := range c.Policies() {
				if len(p.Limits) == 0 || len(p.Limits) > tollgate.MaxLimits {
					t.Errorf("policy %q has %d limits", p.Name, len(p.Limits))
				}
				for _, l := range p.Limits {
					if err := l.Validate(); err != nil {
						t.Errorf("policy %q has an invalid limit: %v", p.Name, err)
					}
				}
				if got, ok := c.Policy(p.Name); !ok || !reflect.DeepEqual(got, p) {
					t.Errorf("Policy(%q) = %+v, %t", p.Name, got, ok)
				}
			}
		}
		c, err := ParseEnvoy(data)
		if err != nil {
			return
		}
		for _, d := range c.Domains() {
			for _, es := range [][]policy.Entry{
				nil, {{Key: "", Value: ""}}, {{Key: "key1", Value: "value1"}}, {{Key: "key1", Value: "value1"}, {Key: "subkey1", Value: "x"}},
				{{Key: "wild", Value: "foo1"}}, {{Key: "k", Value: string(data)}},
			} {
				r, ok := c.Match(d, es)
				if !ok || r.Unlimited {
					continue
				}
				check := r.Limit
				check.Units = max(check.Units, 1)
				if err := check.Validate(); err != nil || r.Key == "" || len(r.Key) > MaxKeyLen {
					t.Errorf("Match(%q, %v) = %+v: %v", d, es, r, err)
				}
			}
		}
	})
}
