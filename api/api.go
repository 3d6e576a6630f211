// Package api holds the OpenAPI 3.1 document of Tollgate's HTTP API
// (package server/httpapi), the contract that clients such as the Node.js
// package in clients/node are written against.
//
// The document is openapi.yaml beside this file; the handler serves it as
// JSON at GET /openapi.json. The package's conformance test sends every
// request example of the document to the live handler and checks the
// answers against it, so the document cannot drift from the code.
package api

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"sync"

	"go.yaml.in/yaml/v3"
)

// YAML is the OpenAPI document, as written.
//
//go:embed openapi.yaml
var YAML []byte

// JSON returns the OpenAPI document converted to JSON (object keys sorted).
// The result is computed once and shared: callers must not modify it.
func JSON() ([]byte, error) { return jsonDoc() }

var jsonDoc = sync.OnceValues(func() ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(YAML, &v); err != nil {
		return nil, fmt.Errorf("api: openapi.yaml: %w", err)
	}
	b, err := json.Marshal(jsonValue(v))
	if err != nil {
		return nil, fmt.Errorf("api: openapi.yaml to JSON: %w", err)
	}
	return b, nil
})

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
