package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/server/httpapi"
	"github.com/tollgate/tollgate/server/metrics"
	"github.com/tollgate/tollgate/store/memory"
)

// The service the examples run against: these tokens and policies.
const (
	apiToken   = "example-api-token"
	adminToken = "example-admin-token"
	// scopedToken may only check the policy api-hourly.
	scopedToken = "example-scoped-token"
	policies    = `
policies:
  - name: api-hourly
    units: 100
    window: 1h
  - name: login
    units: 5
    window: 1m
    algorithm: gcra
    failure_mode: fail_open
  - name: reports
    units: 50
    window: 1h
    failure_mode: fail_local
  - name: new-export-limit
    units: 10
    window: 24h
    shadow: true
  - name: api-tiered
    limits:
      - {units: 10, window: 1s, algorithm: gcra}
      - {units: 1000, window: 1h}
      - {units: 20000, window: 24h, algorithm: sliding_window}
`
)

// httpapiDir holds the source of package httpapi, whose Code constants the
// document must list.
const httpapiDir = "../server/httpapi"

// loadDoc loads and validates the OpenAPI document from data.
func loadDoc(t *testing.T, data []byte) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %q: want 3.1", doc.OpenAPI)
	}
	// Examples of bad requests do not match the request schemas on
	// purpose; TestConformance checks the others.
	if err := doc.Validate(loader.Context, openapi3.DisableExamplesValidation()); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return doc
}

// conformance is an example's x-conformance extension.
type conformance struct {
	Status int    `json:"status"`
	Repeat int    `json:"repeat"`
	Auth   string `json:"auth"`
	Store  string `json:"store"`
	Before []struct {
		Path  string `json:"path"`
		Value any    `json:"value"`
	} `json:"before"`
}

// downStore is a store whose every call fails as unavailable.
type downStore struct{}

func (downStore) Do(context.Context, tollgate.Request) (tollgate.Decision, error) {
	return tollgate.Decision{}, fmt.Errorf("%w: connection refused", tollgate.ErrUnavailable)
}

func (downStore) Reset(context.Context, string) error {
	return fmt.Errorf("%w: connection refused", tollgate.ErrUnavailable)
}

// server is what an example runs against.
type server struct {
	storeDown bool                        // every store call fails
	metrics   bool                        // serve /metrics
	ready     func(context.Context) error // Options.Ready
}

// handler returns a new handler, with fresh state, configured as s says.
func (s server) handler(t *testing.T) http.Handler {
	t.Helper()
	pols, err := config.Parse([]byte(policies))
	if err != nil {
		t.Fatal(err)
	}
	var store tollgate.Store = downStore{}
	if !s.storeDown {
		m := memory.New(memory.Options{})
		t.Cleanup(func() { _ = m.Close() })
		store = m
	}
	fallback := memory.New(memory.Options{})
	t.Cleanup(func() { _ = fallback.Close() })
	opts := httpapi.Options{
		Policies:    pols,
		APITokens:   []string{apiToken},
		AdminTokens: []string{adminToken},
		// A tenant's token: only api-hourly, only check, no inline limits.
		ScopedAPITokens: []httpapi.Token{{Secret: scopedToken, Scope: httpapi.Scope{Policies: []string{"api-hourly"}, Ops: httpapi.OpsCheck}}},
		Fallback:        tollgate.New(fallback, tollgate.Options{}),
		Ready:           s.ready,
	}
	if s.metrics {
		opts.Metrics = metrics.New().Handler()
	}
	return httpapi.New(tollgate.New(store, tollgate.Options{}), opts)
}

// call is one request to check against the document.
type call struct {
	name   string
	server server
	method string
	path   string
	auth   string // admin, api, none or wrong
	body   []byte // nil: none
	repeat int    // send this many times, check the last; 0 means 1
	before []step // requests to send first
	status int    // the status it must get
}

// step is a POST to send before a call.
type step struct {
	path string
	body []byte
}

// checker sends calls to live handlers and validates the answers against
// the document, remembering which responses and error codes it saw.
type checker struct {
	doc   *openapi3.T
	seen  map[string]bool // "METHOD PATH STATUS" of documented responses
	codes map[string]bool // error codes answered
}

func (c *checker) run(t *testing.T, cl call) {
	t.Helper()
	h := cl.server.handler(t)
	var rec *httptest.ResponseRecorder
	var req *http.Request
	steps := slices.Clone(cl.before)
	for range max(cl.repeat, 1) {
		steps = append(steps, step{cl.path, cl.body})
	}
	for i, s := range steps {
		var body io.Reader
		if s.body != nil {
			body = bytes.NewReader(s.body)
		}
		method := cl.method
		if i < len(cl.before) {
			method = http.MethodPost
		}
		req = httptest.NewRequest(method, s.path, body)
		req.Header.Set("Content-Type", "application/json")
		switch cl.auth {
		case "", "admin":
			req.Header.Set("Authorization", "Bearer "+adminToken)
		case "api":
			req.Header.Set("Authorization", "Bearer "+apiToken)
		case "scoped":
			req.Header.Set("Authorization", "Bearer "+scopedToken)
		case "wrong":
			req.Header.Set("Authorization", "Bearer not-a-token")
		case "none":
		default:
			t.Fatalf("x-conformance auth %q: want admin, api, scoped, none or wrong", cl.auth)
		}
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if i < len(cl.before) && rec.Code != http.StatusOK {
			t.Fatalf("before: POST %s %s: %d %s", s.path, s.body, rec.Code, rec.Body)
		}
	}
	got := rec.Body.Bytes()
	if rec.Code != cl.status {
		t.Fatalf("status %d, want %d; body %s", rec.Code, cl.status, got)
	}
	if rec.Header().Get("X-Request-Id") == "" {
		t.Errorf("no X-Request-Id")
	}
	var e struct {
		Error *struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(got, &e) == nil && e.Error != nil {
		c.codes[e.Error.Code] = true
	}

	pathItem := c.doc.Paths.Find(cl.path)
	var op *openapi3.Operation
	if pathItem != nil {
		op = pathItem.GetOperation(cl.method)
	}
	if op == nil {
		// Not an operation of the document (404, 405): the body is still
		// an Error.
		if rec.Code < 400 {
			t.Fatalf("%s %s answered %d but is not in the document", cl.method, cl.path, rec.Code)
		}
		validateSchema(t, c.doc, "Error", got)
		return
	}
	route := &routers.Route{Spec: c.doc, Path: cl.path, PathItem: pathItem, Method: cl.method, Operation: op}
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            true,
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
	}
	reqInput := &openapi3filter.RequestValidationInput{Request: req, Route: route, Options: opts}
	if cl.status < 400 && cl.body != nil {
		// A request the service takes matches the request schema.
		req.Body = io.NopCloser(bytes.NewReader(cl.body))
		if err := openapi3filter.ValidateRequest(context.Background(), reqInput); err != nil {
			t.Errorf("request %s does not match the document: %v", cl.body, err)
		}
	}
	err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: reqInput,
		Status:                 rec.Code,
		Header:                 rec.Header(),
		Body:                   io.NopCloser(bytes.NewReader(got)),
		Options:                opts,
	})
	if err != nil {
		t.Errorf("response %d %s %s does not match the document: %v", rec.Code, headerLines(rec.Header()), got, err)
	}
	c.seen[fmt.Sprintf("%s %s %d", cl.method, cl.path, rec.Code)] = true
}

// validateSchema validates body against the component schema name.
func validateSchema(t *testing.T, doc *openapi3.T, name string, body []byte) {
	t.Helper()
	ref := doc.Components.Schemas[name]
	if ref == nil || ref.Value == nil {
		t.Fatalf("no schema %s", name)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if err := ref.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		t.Errorf("body %s is not a %s: %v", body, name, err)
	}
}

func headerLines(h http.Header) string {
	var b strings.Builder
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range h {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "%s: %s; ", k, strings.Join(h[k], ", "))
	}
	return b.String()
}

// examples returns a call for every request example of the document.
func examples(t *testing.T, doc *openapi3.T) []call {
	t.Helper()
	var calls []call
	for _, path := range doc.Paths.InMatchingOrder() {
		for method, op := range doc.Paths.Value(path).Operations() {
			if op.RequestBody == nil || op.RequestBody.Value == nil {
				continue
			}
			mt := op.RequestBody.Value.Content.Get("application/json")
			if mt == nil || len(mt.Examples) == 0 {
				t.Errorf("%s %s: no request examples", method, path)
				continue
			}
			for name, ex := range mt.Examples {
				x := ex.Value
				raw, ok := x.Extensions["x-conformance"]
				if !ok {
					t.Errorf("%s %s example %s: no x-conformance", method, path, name)
					continue
				}
				b, _ := json.Marshal(raw)
				var cf conformance
				dec := json.NewDecoder(bytes.NewReader(b))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&cf); err != nil || cf.Status == 0 {
					t.Errorf("%s %s example %s: bad x-conformance %s: %v", method, path, name, b, err)
					continue
				}
				if cf.Store != "" && cf.Store != "up" && cf.Store != "down" {
					t.Errorf("%s %s example %s: x-conformance store %q: want up or down", method, path, name, cf.Store)
					continue
				}
				var body []byte
				if s, ok := x.Value.(string); ok { // sent as it is: malformed on purpose
					body = []byte(s)
				} else if body, _ = json.Marshal(x.Value); body == nil {
					t.Errorf("%s %s example %s: value does not encode", method, path, name)
					continue
				}
				var before []step
				for _, s := range cf.Before {
					b, err := json.Marshal(s.Value)
					if err != nil || s.Path == "" {
						t.Errorf("%s %s example %s: bad x-conformance before %+v", method, path, name, s)
					}
					before = append(before, step{s.Path, b})
				}
				calls = append(calls, call{
					name:   method + " " + path + " " + name,
					server: server{storeDown: cf.Store == "down"},
					method: method, path: path, auth: cf.Auth, body: body,
					repeat: cf.Repeat, status: cf.Status, before: before,
				})
			}
		}
	}
	sort.Slice(calls, func(i, j int) bool { return calls[i].name < calls[j].name })
	return calls
}

// TestConformance sends every request example of the document, and the
// requests that no example can show (GET endpoints, wrong paths and
// methods, an oversized body), to the live handler and checks the answers
// against the document; then that every documented response but 500 was
// seen, and every error code but internal answered.
func TestConformance(t *testing.T) {
	doc := loadDoc(t, api.YAML)
	c := &checker{doc: doc, seen: map[string]bool{}, codes: map[string]bool{}}
	calls := examples(t, doc)
	if len(calls) < 20 {
		t.Fatalf("only %d request examples", len(calls))
	}
	notReady := func(context.Context) error { return errors.New("store down") }
	big, _ := json.Marshal(map[string]any{"key": strings.Repeat("k", httpapi.DefaultMaxBodyBytes), "limit": 1, "window": "1s"})
	// One check more than a batch takes: too_many_checks, which no
	// example of readable size can show.
	check := map[string]any{"key": "k", "op": "peek", "policy": "api-hourly"}
	tooMany, _ := json.Marshal(map[string]any{"checks": slices.Repeat([]any{check}, httpapi.DefaultMaxBatchChecks+1)})
	calls = append(calls,
		call{name: "GET /healthz", method: "GET", path: "/healthz", auth: "none", status: 200},
		call{name: "GET /readyz", method: "GET", path: "/readyz", auth: "none", status: 200},
		call{name: "GET /readyz not ready", server: server{ready: notReady}, method: "GET", path: "/readyz", auth: "none", status: 503},
		call{name: "GET /metrics", server: server{metrics: true}, method: "GET", path: "/metrics", auth: "none", status: 200},
		call{name: "GET /metrics without metrics", method: "GET", path: "/metrics", auth: "none", status: 404},
		call{name: "GET /openapi.json", method: "GET", path: "/openapi.json", auth: "none", status: 200},
		call{name: "GET /nope", method: "GET", path: "/nope", auth: "none", status: 404},
		call{name: "GET /v1/consume", method: "GET", path: "/v1/consume", status: 405},
		call{name: "POST /healthz", method: "POST", path: "/healthz", status: 405, body: []byte("{}")},
		call{name: "POST /v1/consume too large", method: "POST", path: "/v1/consume", body: big, status: 400},
		call{name: "POST /v1/batch too many checks", method: "POST", path: "/v1/batch", body: tooMany, status: 400},
	)
	for _, cl := range calls {
		t.Run(cl.name, func(t *testing.T) { c.run(t, cl) })
	}
	if t.Failed() {
		return
	}

	for _, path := range doc.Paths.InMatchingOrder() {
		for method, op := range doc.Paths.Value(path).Operations() {
			for status := range op.Responses.Map() {
				if status == "500" { // unexpected errors: no request makes one
					continue
				}
				if k := fmt.Sprintf("%s %s %s", method, path, status); !c.seen[k] {
					t.Errorf("documented response %s: no example gets it", k)
				}
			}
		}
	}
	for _, code := range handlerCodes(t) {
		if code != string(httpapi.CodeInternal) && !c.codes[code] {
			t.Errorf("error code %s: no example gets it", code)
		}
	}
}

// TestErrorCodes checks that the document's ErrorCode lists exactly the
// Code constants of package httpapi, read from its source.
func TestErrorCodes(t *testing.T) {
	doc := loadDoc(t, api.YAML)
	ref := doc.Components.Schemas["ErrorCode"]
	if ref == nil || ref.Value == nil {
		t.Fatal("no schema ErrorCode")
	}
	var documented []string
	for _, v := range ref.Value.Enum {
		s, ok := v.(string)
		if !ok {
			t.Fatalf("ErrorCode enum value %v is not a string", v)
		}
		documented = append(documented, s)
	}
	slices.Sort(documented)
	codes := handlerCodes(t)
	if len(codes) < 10 {
		t.Fatalf("found only %d Code constants in %s: %v", len(codes), httpapiDir, codes)
	}
	if !slices.Equal(documented, codes) {
		t.Errorf("ErrorCode enum %v, want the Code constants of package httpapi %v", documented, codes)
	}
	for _, code := range codes {
		if !strings.Contains(ref.Value.Description, "- "+code+" (") {
			t.Errorf("ErrorCode's description does not explain %s", code)
		}
	}
}

// handlerCodes returns the values of the constants of type Code declared in
// the non-test Go files of package httpapi, sorted.
func handlerCodes(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(httpapiDir)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(httpapiDir, name), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	var codes []string
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Code" {
					continue
				}
				for _, v := range vs.Values {
					lit, ok := v.(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						t.Fatalf("%s: a Code constant that is not a string literal", fset.Position(v.Pos()))
					}
					s, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					codes = append(codes, s)
				}
			}
		}
	}
	slices.Sort(codes)
	return codes
}

// TestJSON checks that the JSON form is the same document and that the
// handler serves it at /openapi.json.
func TestJSON(t *testing.T) {
	want := loadDoc(t, api.YAML)
	b, err := api.JSON()
	if err != nil {
		t.Fatal(err)
	}
	got := loadDoc(t, b)
	wj, _ := json.Marshal(want)
	gj, _ := json.Marshal(got)
	if !bytes.Equal(wj, gj) {
		t.Errorf("the JSON document differs from the YAML one")
	}
	rec := httptest.NewRecorder()
	server{}.handler(t).ServeHTTP(rec, httptest.NewRequest("GET", httpapi.PathOpenAPI, nil))
	if rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), b) {
		t.Errorf("GET %s: %d, %d bytes; want 200 and the document", httpapi.PathOpenAPI, rec.Code, rec.Body.Len())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
}
