// Package api holds the OpenAPI 3.1 document of Tollgate's HTTP API
// (package server/httpapi), the contract that clients such as the Node.js
// package in clients/node are written against.
//
// The document is openapi.yaml beside this file; openapi.json is the same
// document as JSON, generated from it (go test ./api -run TestJSONFile
// -update), so that the handler, which serves it at GET /openapi.json,
// needs no YAML parser. The package's tests check that openapi.json
// matches openapi.yaml, and the conformance test sends every request
// example of the document to the live handler and checks the answers
// against it, so the document cannot drift from the code.
package api

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"sync"
)

// YAML is the OpenAPI document, as written.
//
//go:embed openapi.yaml
var YAML []byte

// indented is the document as JSON, generated from YAML (object keys
// sorted, indented).
//
//go:embed openapi.json
var indented []byte

// JSON returns the OpenAPI document as compact JSON (object keys sorted).
// The result is computed once and shared: callers must not modify it.
func JSON() ([]byte, error) { return jsonDoc() }

var jsonDoc = sync.OnceValues(func() ([]byte, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, indented); err != nil {
		return nil, fmt.Errorf("api: openapi.json: %w", err)
	}
	return b.Bytes(), nil
})
