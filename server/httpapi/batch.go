package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/httpjson"
)

// Batches: POST /v1/batch answers several consumes and peeks in one
// request, so that a caller with many checks to make pays one round trip
// to the service, and the service's checks share the store client's
// pipeline. See the package documentation.

// DefaultMaxBatchChecks is the most checks of one batch when
// Options.MaxBatchChecks is 0.
const DefaultMaxBatchChecks = 100

// batchParallel bounds the goroutines of one batch: enough for the Redis
// client to pipeline a batch's checks, few enough that one batch cannot
// take every connection of the store.
const batchParallel = 32

// Operations of a batch's check ("op").
const (
	batchConsume = "consume"
	batchPeek    = "peek"
)

// The field names of a batch body and of its checks: a consume's or a
// peek's, and "op".
var (
	batchFields        = []string{"checks"}
	batchConsumeFields = append(slices.Clip(consumeFields), "op")
	batchPeekFields    = append(slices.Clip(peekFields), "op")
)

type (
	// batchRequest is the body of POST /v1/batch.
	batchRequest struct {
		Checks []json.RawMessage `json:"checks"`
	}
	// batchItem is one check of a batch.
	batchItem struct {
		limitRequest
		Op string `json:"op"`
	}
	// batchCheck is a check of a batch, validated.
	batchCheck struct {
		peek bool
		req  limitRequest
		cost int64
		t    target
	}
	// batchResult is one check's answer: the status and body /v1/consume
	// or /v1/peek would have answered it with, and the Tollgate-Degraded
	// header it would have had.
	batchResult struct {
		Status   int             `json:"status"`
		Body     json.RawMessage `json:"body"`
		Degraded string          `json:"degraded,omitempty"`
	}
	batchResponse struct {
		Results []batchResult `json:"results"`
	}
)

// batch answers POST /v1/batch. Every check is validated (syntax, scope,
// policy, the Limiter's own checks of its arguments) before any runs, so
// that a batch refused as a whole has changed nothing.
func (h *handler) batch(w http.ResponseWriter, r *http.Request) {
	checks, e := h.batchChecks(w, r)
	if e != nil {
		writeAPIError(w, e)
		return
	}
	results := make([]batchResult, len(checks))
	run := func(i int) { results[i] = h.runCheck(r, checks[i]) }
	workers := min(len(checks), batchParallel)
	if workers == 1 {
		for i := range checks {
			run(i)
		}
	} else {
		var (
			next atomic.Int64
			wg   sync.WaitGroup
		)
		for range workers {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < len(checks); i = int(next.Add(1) - 1) {
					run(i)
				}
			})
		}
		wg.Wait()
	}
	httpjson.Write(w, http.StatusOK, batchResponse{Results: results})
}

// batchChecks decodes and validates a batch: every check's syntax first,
// then every check's scope (so that a batch with one check outside the
// token's scope is 403, whatever else is wrong, and a token learns nothing
// of policies outside its scope), then each check's policy and arguments.
// Errors of a check name it by index ("checks[3]: …").
func (h *handler) batchChecks(w http.ResponseWriter, r *http.Request) ([]batchCheck, *apiError) {
	raw, e := h.readBody(w, r)
	if e != nil {
		return nil, e
	}
	var req batchRequest
	if e := decodeObject(raw, &req, "request body", batchFields...); e != nil {
		return nil, e
	}
	switch n := len(req.Checks); {
	case n == 0:
		return nil, badRequest(CodeInvalidJSON, "checks is required: a list of 1 to %d checks", h.maxBatch)
	case n > h.maxBatch:
		return nil, badRequest(CodeTooManyChecks, "%d checks: a batch has at most %d", n, h.maxBatch)
	}
	items := make([]batchItem, len(req.Checks))
	for i, raw := range req.Checks {
		if e := decodeItem(raw, &items[i]); e != nil {
			return nil, itemError(i, e)
		}
	}
	for i, it := range items {
		if e := h.permit(r.Context(), OpsCheck, it.Policy); e != nil {
			return nil, itemError(i, e)
		}
	}
	checks := make([]batchCheck, len(items))
	// ids finds a request_id repeated on one key: checks run at once, so
	// which of the two would count is a race.
	ids := map[[3]string]int{}
	for i, it := range items {
		c := batchCheck{peek: it.Op == batchPeek, req: it.limitRequest}
		var e *apiError
		if c.cost, c.t, e = h.resolve(it.limitRequest, !c.peek); e != nil {
			return nil, itemError(i, e)
		}
		if e := h.dryRun(r.Context(), c); e != nil {
			return nil, itemError(i, e)
		}
		if id := it.RequestID; id != "" {
			k := [3]string{c.t.ns, c.t.key, id}
			if j, ok := ids[k]; ok {
				return nil, itemError(i, badRequest(CodeInvalidRequestID,
					"request_id %.64q repeats that of checks[%d] on the same key", id, j))
			}
			ids[k] = i
		}
		checks[i] = c
	}
	return checks, nil
}

// decodeItem decodes a check of a batch: a consume's body, or with "op":
// "peek" a peek's, plus "op".
func decodeItem(raw json.RawMessage, it *batchItem) *apiError {
	var probe map[string]json.RawMessage
	if json.Unmarshal(raw, &probe) != nil || probe == nil {
		return badRequest(CodeInvalidJSON, "a check must be a JSON object")
	}
	fields := batchConsumeFields
	if op, ok := probe["op"]; ok && !absent(op) {
		var s string
		if json.Unmarshal(op, &s) != nil || (s != batchConsume && s != batchPeek) {
			return badRequest(CodeInvalidJSON, `op must be "consume" or "peek", not %.32s`, op)
		}
		if s == batchPeek {
			fields = batchPeekFields
		}
	}
	return decodeObject(raw, it, "a check", fields...)
}

// itemError prefixes e's message with the index of the check it is about.
func itemError(i int, e *apiError) *apiError {
	e.message = fmt.Sprintf("checks[%d]: %s", i, e.message)
	return e
}

// dryRun checks c's arguments as the Limiter will (key, cost, limits,
// request id), on a Limiter that records nothing: the Limiter's own
// checks, so that a batch is refused for what a check would be refused
// for, before any check has run.
func (h *handler) dryRun(ctx context.Context, c batchCheck) *apiError {
	var err error
	switch {
	case c.peek:
		_, err = h.dry.PeekAll(ctx, c.t.key, c.t.limits...)
	case c.t.shadow && c.cost > c.t.minUnits() && c.cost >= 1:
		// Answered with a peek's figures (runConsume): never an error.
		_, err = h.dry.PeekAll(ctx, c.t.key, c.t.limits...)
	default:
		_, err = h.dry.ConsumeAll(tollgate.WithRequestID(ctx, c.req.RequestID), c.t.key, c.cost, c.t.limits...)
	}
	if err == nil {
		return nil
	}
	if code, ok := inputCode(err); ok {
		return badRequest(code, "%s", strings.TrimPrefix(err.Error(), "tollgate: "))
	}
	return nil // unreachable: the dry store never fails
}

// dryStore answers every call allowed and records nothing.
type dryStore struct{}

func (dryStore) Do(_ context.Context, req tollgate.Request) (tollgate.Decision, error) {
	return tollgate.Decision{Allowed: true, Results: make([]tollgate.Result, len(req.Limits))}, nil
}

func (dryStore) Reset(context.Context, string) error { return nil }

// newDryLimiter returns the Limiter that validates a batch's checks, with
// the default Options, as the service's Limiter has. A handler's Limiter
// with a smaller MaxKeyLen still refuses a longer key, as that check's own
// 400 entry.
func newDryLimiter() *tollgate.Limiter { return tollgate.New(dryStore{}, tollgate.Options{}) }

// runCheck runs one check of a batch and returns its answer. A panic is
// that check's 500 internal answer (the other checks go on), logged once
// with its stack, as the handler does for a request.
func (h *handler) runCheck(r *http.Request, c batchCheck) (res batchResult) {
	w := &itemWriter{hdr: http.Header{}}
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		h.reportPanic(r, p, "panic serving a check of a batch: answered 500")
		w = &itemWriter{hdr: http.Header{}}
		writeError(w, http.StatusInternalServerError, CodeInternal, "internal error")
		res = w.result()
	}()
	if c.peek {
		h.runPeek(w, r, c.t)
	} else {
		h.runConsume(w, r, c.req, c.cost, c.t)
	}
	return w.result()
}

// itemWriter is the http.ResponseWriter of one check of a batch: it keeps
// the answer, to be put in the batch's body.
type itemWriter struct {
	hdr    http.Header
	status int
	body   []byte
}

func (w *itemWriter) Header() http.Header { return w.hdr }

func (w *itemWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *itemWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body = append(w.body, b...)
	return len(b), nil
}

// result is the answer written, as a batch's entry.
func (w *itemWriter) result() batchResult {
	return batchResult{
		Status:   w.status,
		Body:     json.RawMessage(w.body),
		Degraded: w.hdr.Get(HeaderDegraded),
	}
}
