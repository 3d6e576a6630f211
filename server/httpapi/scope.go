package httpapi

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Scopes: what a bearer token may do. A scope bounds the policies a token
// may name, whether it may send inline limits, and the operations it may
// call; a request outside its token's scope is 403 forbidden and changes
// nothing (it never reaches the Limiter).

// Ops is a set of operations a token may call.
type Ops uint8

// Operations of a scope.
const (
	// OpsCheck: /v1/consume and /v1/peek.
	OpsCheck Ops = 1 << iota
	// OpsRefund: /v1/refund.
	OpsRefund
	// OpsAdmin: /v1/reset.
	OpsAdmin
)

// Scope is what a token may do. The zero Scope may do nothing; APIScope
// and AdminScope are what the bare tokens of APITokens and AdminTokens get.
type Scope struct {
	// Policies are the policies the token may name: a name, or a prefix
	// ending in '*' ("acme-*"); "*" alone is every policy. Empty means
	// none.
	Policies []string
	// Inline allows inline limits ("limit", "limits") and, with OpsAdmin,
	// a reset without "policy" (of an inline key).
	Inline bool
	// Ops are the operations allowed.
	Ops Ops
}

// APIScope is the scope of a bare API token: every policy, inline limits,
// check and refund.
func APIScope() Scope {
	return Scope{Policies: []string{"*"}, Inline: true, Ops: OpsCheck | OpsRefund}
}

// AdminScope is the scope of a bare admin token: every policy, inline
// limits, every operation.
func AdminScope() Scope {
	return Scope{Policies: []string{"*"}, Inline: true, Ops: OpsCheck | OpsRefund | OpsAdmin}
}

// Token is a bearer token and its scope.
type Token struct {
	Secret string
	Scope  Scope
}

// AllowsPolicy reports whether s may name the policy called name.
func (s Scope) AllowsPolicy(name string) bool {
	for _, p := range s.Policies {
		if p == name || (strings.HasSuffix(p, "*") && strings.HasPrefix(name, p[:len(p)-1])) {
			return true
		}
	}
	return false
}

// ErrScope is the error of a malformed scope (ParseScope).
var ErrScope = errors.New("invalid token scope")

// ParseScope parses the scope fields of a token file's line: fields of
// KEY=VALUE, each key at most once, over base, the scope of a bare token
// of that file, which they narrow:
//
//	policies=NAME[,NAME...]   policies, or prefixes ending in '*', or "*" (default: base's)
//	inline=true|false         inline limits (default: base's)
//	ops=OP[,OP...]            check, refund, admin (default: base's; not beyond them)
//
// Errors wrap ErrScope; they never quote an unknown key, and a known
// key's value only to 32 bytes.
func ParseScope(fields []string, base Scope) (Scope, error) {
	s := base
	seen := map[string]bool{}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return Scope{}, fmt.Errorf("%w: want KEY=VALUE fields after the token (policies, inline, ops)", ErrScope)
		}
		if k != "policies" && k != "inline" && k != "ops" {
			// Not quoted: a second token on the line (base64 has '=') would show.
			return Scope{}, fmt.Errorf("%w: an unknown key (want policies, inline or ops)", ErrScope)
		}
		if seen[k] {
			return Scope{}, fmt.Errorf("%w: %s given twice", ErrScope, k)
		}
		seen[k] = true
		switch k {
		case "policies":
			var ps []string
			for p := range strings.SplitSeq(v, ",") {
				if p == "" {
					return Scope{}, fmt.Errorf("%w: policies: an empty name", ErrScope)
				}
				ps = append(ps, p)
			}
			s.Policies = ps
		case "inline":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Scope{}, fmt.Errorf("%w: inline=%.32q: want true or false", ErrScope, v)
			}
			if b && !base.Inline {
				return Scope{}, fmt.Errorf("%w: inline=true beyond this file's tokens", ErrScope)
			}
			s.Inline = b
		case "ops":
			var ops Ops
			for o := range strings.SplitSeq(v, ",") {
				switch o {
				case "check":
					ops |= OpsCheck
				case "refund":
					ops |= OpsRefund
				case "admin":
					ops |= OpsAdmin
				default:
					return Scope{}, fmt.Errorf("%w: ops: unknown operation %.32q (want check, refund or admin)", ErrScope, o)
				}
			}
			if ops&^base.Ops != 0 {
				return Scope{}, fmt.Errorf("%w: ops=%.32s beyond this file's tokens (admin needs the admin token file)", ErrScope, v)
			}
			s.Ops = ops
		}
	}
	return s, nil
}

type scopeKey struct{}

// scopeOf returns the scope the handler found for a request; ok is false
// when no token is required (every request may do what the server allows).
func scopeOf(ctx context.Context) (Scope, bool) {
	s, ok := ctx.Value(scopeKey{}).(Scope)
	return s, ok
}

func forbidden(format string, args ...any) *apiError {
	return &apiError{status: 403, code: CodeForbidden, message: fmt.Sprintf(format, args...)}
}

// outOfScope is forbidden for a token's scope: with the challenge of RFC
// 6750, section 3.1.
func outOfScope(format string, args ...any) *apiError {
	e := forbidden(format, args...)
	e.challenge = `Bearer realm="tollgate", error="insufficient_scope"`
	return e
}

// permit checks that a request of op naming policyName ("" for inline
// limits) is within the server's settings and the request's scope, before
// the policy is looked up.
func (h *handler) permit(ctx context.Context, op Ops, policyName string) *apiError {
	if policyName == "" && h.noInline && op != OpsAdmin { // an admin may still clear old inline keys
		return forbidden("inline limits are off on this server: name a policy")
	}
	s, ok := scopeOf(ctx)
	if !ok {
		return nil
	}
	switch {
	case s.Ops&op == 0:
		return outOfScope("this token may not call %s", opName(op))
	case policyName == "" && !s.Inline:
		return outOfScope("this token may not use inline limits: name a policy")
	case policyName != "" && !s.AllowsPolicy(policyName):
		return outOfScope("this token may not use policy %.64q", policyName)
	}
	return nil
}

func opName(op Ops) string {
	switch op {
	case OpsCheck:
		return "consume or peek"
	case OpsRefund:
		return "refund"
	}
	return "reset"
}
