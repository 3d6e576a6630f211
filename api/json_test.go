package api

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite openapi.json from openapi.yaml")

// TestJSONFile checks that openapi.json is openapi.yaml converted to JSON;
// with -update it rewrites openapi.json.
func TestJSONFile(t *testing.T) {
	var v any
	if err := yaml.Unmarshal(YAML, &v); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	b, err := json.MarshalIndent(jsonValue(v), "", "  ")
	if err != nil {
		t.Fatalf("openapi.yaml to JSON: %v", err)
	}
	b = append(b, '\n')
	if *update {
		if err := os.WriteFile("openapi.json", b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(b, indented) {
		t.Error("openapi.json is not openapi.yaml as JSON: run go test ./api -run TestJSONFile -update")
	}
	compact, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(jsonValue(v))
	if !bytes.Equal(compact, want) {
		t.Error("JSON() is not the compact form of openapi.yaml")
	}
}

// jsonValue turns what YAML decoded into values encoding/json can encode:
// mappings with keys other than strings get their keys as text.
func jsonValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = jsonValue(e)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = jsonValue(e)
		}
		return m
	case []any:
		for i, e := range v {
			v[i] = jsonValue(e)
		}
		return v
	}
	return v
}
