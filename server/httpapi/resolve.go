package httpapi

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/server/header"
)

// Resolution of a request: what it applies to (an inline limit or a
// policy), in which namespace, and which Limiter answers it.

// target is what a request applies to: an inline limit or a policy.
type target struct {
	name   string // the policy's name, or "" for an inline limit
	key    string // the request's key
	ns     string // the key's namespace
	limits []tollgate.Limit
	multi  bool // the answer lists every limit's figures
	shadow bool
	mode   policy.FailureMode
}

// minUnits is the smallest Units of t's limits: no larger cost ever fits.
func (t target) minUnits() int64 {
	units := t.limits[0].Units
	for _, l := range t.limits[1:] {
		units = min(units, l.Units)
	}
	return units
}

// headerName is the name of t in the RateLimit header fields.
func (t target) headerName() string {
	if t.name == "" {
		return InlinePolicyName
	}
	return t.name
}

// request decodes a consume, peek or refund request (of op), whose body
// has these fields, resolves it (withCost as for resolve) and checks it
// against the server's settings and the token's scope. It answers a bad or
// forbidden request itself and then reports false: nothing reached the
// Limiter.
func (h *handler) request(w http.ResponseWriter, r *http.Request, op Ops, withCost bool, fields ...string) (limitRequest, int64, target, bool) {
	var req limitRequest
	if e := h.decode(w, r, &req, fields...); e != nil {
		writeAPIError(w, e)
		return limitRequest{}, 0, target{}, false
	}
	// The scope first: a token learns nothing of policies outside it.
	e := h.permit(r.Context(), op, req.Policy)
	var (
		cost int64
		t    target
	)
	if e == nil {
		cost, t, e = h.resolve(req, withCost)
	}
	if e != nil {
		writeAPIError(w, e)
		return limitRequest{}, 0, target{}, false
	}
	return req, cost, t, true
}

// resolve checks the syntax of a consume, peek or refund request and finds
// what it applies to. withCost: the request has a cost (else it is 1).
// Ranges are left to the Limiter, which reports them by sentinel.
func (h *handler) resolve(req limitRequest, withCost bool) (int64, target, *apiError) {
	cost := int64(1)
	if withCost && !absent(req.Cost) {
		n, err := parseInt(req.Cost)
		if err != nil {
			return 0, target{}, badRequest(CodeInvalidCost, "cost %s", err)
		}
		cost = n
	}
	single := !absent(req.Limit) || req.Window != "" || req.Algorithm != ""
	switch {
	case req.Policy == "" && absent(req.Limits):
		lim, e := parseLimit(req.Limit, req.Window, req.Algorithm)
		if e != nil {
			return 0, target{}, e
		}
		return cost, target{key: req.Key, ns: NamespaceInline, limits: []tollgate.Limit{lim}}, nil
	case req.Policy == "" && single:
		return 0, target{}, badRequest(CodeInvalidLimit,
			"limits and limit, window or algorithm are mutually exclusive: give either a list of limits or one limit")
	case req.Policy == "":
		limits, e := parseLimits(req.Limits)
		if e != nil {
			return 0, target{}, e
		}
		return cost, target{key: req.Key, ns: NamespaceInline, limits: limits, multi: true}, nil
	case single || !absent(req.Limits):
		return 0, target{}, badRequest(CodeInvalidLimit,
			"policy and limit, window, algorithm or limits are mutually exclusive: give either a policy or inline limits")
	}
	p, e := h.policy(req.Policy)
	if e != nil {
		return 0, target{}, e
	}
	return cost, target{
		name:   p.Name,
		key:    req.Key,
		ns:     PolicyNamespace(p.Name),
		limits: p.Limits,
		multi:  len(p.Limits) > 1,
		shadow: p.Shadow,
		mode:   p.FailureMode,
	}, nil
}

// policy looks a policy up by name.
func (h *handler) policy(name string) (policy.Policy, *apiError) {
	if h.policies != nil {
		if p, ok := h.policies.Policy(name); ok {
			p.Name = name
			return p, nil
		}
	}
	return policy.Policy{}, badRequest(CodeUnknownPolicy, "unknown policy %.64q", name)
}

// NamespaceInline is the namespace of inline limits' keys.
const NamespaceInline = "inline"

// PolicyNamespace is the namespace of the keys of the policy called name.
func PolicyNamespace(name string) string { return "policy:" + name }

// apply runs call on the Limiter and, for a fail_local policy whose store
// is unavailable, on the fallback Limiter, marking the response degraded.
func (h *handler) apply(w http.ResponseWriter, r *http.Request, t target, call func(*tollgate.Limiter) (tollgate.Decision, error)) (tollgate.Decision, error) {
	d, err := call(h.lim.Namespace(t.ns))
	if err == nil || t.mode != policy.FailLocal || h.fallback == nil || !errors.Is(err, tollgate.ErrUnavailable) {
		return d, err
	}
	h.logAt(r, slog.LevelWarn, "store unavailable: answering from the local fallback",
		slog.String("policy", t.name), slog.Any("error", err))
	w.Header().Set(HeaderDegraded, header.DegradedLocalFallback)
	return call(h.fallback.Namespace(t.ns))
}
