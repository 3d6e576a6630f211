package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlspb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate"
)

// Library is the Target of a Limiter in process: Consume with Limit, or
// ConsumeAll with Limits when there are any.
type Library struct {
	Limiter *tollgate.Limiter
	Limit   tollgate.Limit
	Limits  []tollgate.Limit
}

// Check implements Target.
func (l Library) Check(ctx context.Context, key string, cost int64) (bool, error) {
	if len(l.Limits) > 0 {
		d, err := l.Limiter.ConsumeAll(ctx, key, cost, l.Limits...)
		return d.Allowed, err
	}
	res, err := l.Limiter.Consume(ctx, key, cost, l.Limit)
	return res.Allowed, err
}

// ParseLimits parses a --limits list: comma-separated UNITS/WINDOW or
// UNITS/WINDOW/ALGORITHM, such as "10/1s/gcra,1000/1h". Its errors wrap
// tollgate.ErrInvalidLimit.
func ParseLimits(s string) ([]tollgate.Limit, error) {
	var limits []tollgate.Limit
	for _, item := range strings.Split(s, ",") {
		parts := strings.Split(strings.TrimSpace(item), "/")
		if len(parts) < 2 || len(parts) > 3 {
			return nil, fmt.Errorf("%w: %q: want UNITS/WINDOW or UNITS/WINDOW/ALGORITHM", tollgate.ErrInvalidLimit, item)
		}
		units, err := strconv.ParseInt(parts[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: units %q is not an integer", tollgate.ErrInvalidLimit, item, parts[0])
		}
		window, err := time.ParseDuration(parts[1])
		if err != nil {
			return nil, fmt.Errorf("%w: %q: window %q is not a Go duration", tollgate.ErrInvalidLimit, item, parts[1])
		}
		var alg tollgate.Algorithm
		if len(parts) == 3 {
			if alg, err = tollgate.ParseAlgorithm(parts[2]); err != nil {
				return nil, fmt.Errorf("%q: %w", item, err)
			}
		}
		l := tollgate.Limit{Units: units, Window: window, Algorithm: alg}
		if err := l.Validate(); err != nil {
			return nil, fmt.Errorf("%q: %w", item, err)
		}
		limits = append(limits, l)
	}
	if len(limits) > tollgate.MaxLimits {
		return nil, fmt.Errorf("%w: %d limits (want 1 to %d)", tollgate.ErrInvalidLimits, len(limits), tollgate.MaxLimits)
	}
	return limits, nil
}

// Reset implements Resetter.
func (l Library) Reset(ctx context.Context, key string) error { return l.Limiter.Reset(ctx, key) }

// HTTP is the Target of a running service's HTTP API: POST /v1/consume with
// an inline limit, over keep-alive connections. 200 is allowed, 429 denied;
// any other answer is an error of kind "http_<status>_<code>" (the error
// body's code, when there is one). It is a Resetter: POST /v1/reset.
//
// With HTTPOptions.Batch above 1 it is a BatchTarget: each request is a
// POST /v1/batch of Batch such checks, each with its own answer.
type HTTP struct {
	url string
	// batchURL is POST /v1/batch's, and batch the checks per request.
	batchURL string
	batch    int
	// resetURL is POST /v1/reset's, for Reset.
	resetURL string
	limit    tollgate.Limit
	limits   []byte // the body's "limits" list, when there are several
	token    string
	client   *http.Client
	tr       *http.Transport
}

// HTTPOptions configures an HTTP target.
type HTTPOptions struct {
	// Token, when not empty, is sent as Authorization: Bearer Token.
	Token string
	// Conns is how many idle connections to keep to the service: the run's
	// concurrency, so that every caller keeps its connection. 0 means
	// DefaultConcurrency.
	Conns int
	// Limits, when not empty, are sent as the inline "limits" list instead
	// of the one limit.
	Limits []tollgate.Limit
	// H2C speaks HTTP/2 without TLS (prior knowledge) to an http:// URL:
	// every caller's checks share one connection; false uses HTTP/1.1,
	// a connection per caller.
	H2C bool
	// Batch, above 1, sends Batch checks per request, by POST /v1/batch
	// (the service takes at most httpapi.DefaultMaxBatchChecks unless
	// configured otherwise); 0 or 1 sends each by POST /v1/consume.
	Batch int
}

// NewHTTP returns the target of the service whose base URL is base
// ("http://127.0.0.1:8080"), checking limit.
func NewHTTP(base string, limit tollgate.Limit, opts HTTPOptions) (*HTTP, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("--http %q: %w", base, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--http %q: want http://HOST:PORT or https://HOST:PORT", base)
	}
	conns := opts.Conns
	if conns <= 0 {
		conns = DefaultConcurrency
	}
	tr := &http.Transport{
		Proxy:               nil, // never through a proxy: the target is what was checked
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns, // the default, 2, would close and redial most connections
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	if opts.H2C {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	var limits []byte
	if len(opts.Limits) > 0 {
		type item struct {
			Limit     int64  `json:"limit"`
			Window    string `json:"window"`
			Algorithm string `json:"algorithm"`
		}
		items := make([]item, len(opts.Limits))
		for i, l := range opts.Limits {
			items[i] = item{l.Units, l.Window.String(), l.Algorithm.String()}
		}
		limits, _ = json.Marshal(items) // plain strings and ints: cannot fail
	}
	if opts.Batch < 0 {
		return nil, fmt.Errorf("--http-batch %d: want 1 or more checks per request", opts.Batch)
	}
	return &HTTP{
		limits:   limits,
		batch:    max(opts.Batch, 1),
		batchURL: strings.TrimSuffix(u.String(), "/") + "/v1/batch",
		url:      strings.TrimSuffix(u.String(), "/") + "/v1/consume",
		resetURL: strings.TrimSuffix(u.String(), "/") + "/v1/reset",
		limit:    limit,
		token:    opts.Token,
		tr:       tr,
		client: &http.Client{
			Transport: tr,
			// A redirect could lead anywhere, past the loopback check.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// appendCheck appends the body of a consume of key at cost to b.
func (h *HTTP) appendCheck(b []byte, key string, cost int64) ([]byte, error) {
	b = append(b, `{"key":`...)
	k, err := json.Marshal(key)
	if err != nil {
		return b, err
	}
	b = append(b, k...)
	b = append(b, `,"cost":`...)
	b = strconv.AppendInt(b, cost, 10)
	if h.limits != nil {
		b = append(b, `,"limits":`...)
		b = append(b, h.limits...)
		return append(b, '}'), nil
	}
	b = append(b, `,"limit":`...)
	b = strconv.AppendInt(b, h.limit.Units, 10)
	b = append(b, `,"window":"`...)
	b = append(b, h.limit.Window.String()...)
	b = append(b, `","algorithm":"`...)
	b = append(b, h.limit.Algorithm.String()...)
	return append(b, `"}`...), nil
}

// post sends body to url and returns the answer; errors are the check's.
func (h *HTTP) post(ctx context.Context, url string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil, err
		}
		return nil, &KindError{Kind: "conn", Err: err}
	}
	return resp, nil
}

// Check implements Target.
func (h *HTTP) Check(ctx context.Context, key string, cost int64) (bool, error) {
	body, err := h.appendCheck(make([]byte, 0, 128+len(key)), key, cost)
	if err != nil {
		return false, err
	}
	resp, err := h.post(ctx, h.url, body)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusTooManyRequests:
		// Read to the end so that the connection is reused.
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return false, &KindError{Kind: "conn", Err: err}
		}
		return resp.StatusCode == http.StatusOK, nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return false, statusError(resp.Status, resp.StatusCode, msg)
}

// statusError is the error of an answer of status code (text status) that
// is not a decision, of kind "http_<code>_<error code>".
func statusError(status string, code int, body []byte) error {
	var e struct {
		Error struct{ Code, Message string }
	}
	kind := "http_" + strconv.Itoa(code)
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		kind += "_" + e.Error.Code
	}
	return &KindError{Kind: kind, Err: fmt.Errorf("%s: %s", status, bytes.TrimSpace(body))}
}

// BatchSize implements BatchTarget: HTTPOptions.Batch, at least 1.
func (h *HTTP) BatchSize() int { return h.batch }

// CheckBatch implements BatchTarget: one POST /v1/batch of every check.
// Each result of 200 is allowed and 429 denied; any other is an error of
// kind "http_<status>_<code>", as for Check. A batch answered other than
// 200, or not at all, is each check's error.
func (h *HTTP) CheckBatch(ctx context.Context, keys []string, costs []int64, allowed []bool, errs []error) {
	fail := func(err error) {
		for i := range keys {
			allowed[i], errs[i] = false, err
		}
	}
	body := make([]byte, 0, 16+len(keys)*(96+len(h.limits)))
	body = append(body, `{"checks":[`...)
	for i, key := range keys {
		if i > 0 {
			body = append(body, ',')
		}
		var err error
		if body, err = h.appendCheck(body, key, costs[i]); err != nil {
			fail(err)
			return
		}
	}
	body = append(body, "]}"...)
	resp, err := h.post(ctx, h.batchURL, body)
	if err != nil {
		fail(err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		fail(statusError(resp.Status, resp.StatusCode, msg))
		return
	}
	var answer struct {
		Results []struct {
			Status int             `json:"status"`
			Body   json.RawMessage `json:"body"`
		} `json:"results"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		fail(&KindError{Kind: "conn", Err: fmt.Errorf("batch answer: %w", err)})
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body) // to the end, so that the connection is reused
	if len(answer.Results) != len(keys) {
		fail(&KindError{Kind: "http_bad_batch", Err: fmt.Errorf("%d results for %d checks", len(answer.Results), len(keys))})
		return
	}
	for i, r := range answer.Results {
		switch r.Status {
		case http.StatusOK, http.StatusTooManyRequests:
			allowed[i], errs[i] = r.Status == http.StatusOK, nil
		default:
			allowed[i], errs[i] = false, statusError(strconv.Itoa(r.Status)+" "+http.StatusText(r.Status), r.Status, r.Body)
		}
	}
}

// Reset implements Resetter: POST /v1/reset of the inline key (with an
// admin token when the service asks for one: Token must be one).
func (h *HTTP) Reset(ctx context.Context, key string) error {
	k, err := json.Marshal(key)
	if err != nil {
		return err
	}
	body := append(append([]byte(`{"key":`), k...), '}')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.resetURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reset: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// Close closes the idle connections.
func (h *HTTP) Close() error {
	h.tr.CloseIdleConnections()
	return nil
}

// Defaults of a gRPC target, matching EnvoyConfig.
const (
	DefaultDomain        = "tollgate-bench"
	DefaultDescriptorKey = "bench_key"
)

// GRPC is the Target of a running service's Envoy rate limit service:
// ShouldRateLimit in Domain with one descriptor, DescriptorKey = the key,
// and hits_addend = the cost. OK is allowed, OVER_LIMIT denied. The service
// must have a rule for it (see EnvoyConfig): a descriptor that matches no
// rule is answered OK without a check, which is reported as an error of
// kind "no_rule" rather than measured. gRPC errors are of kind
// "grpc_<code>" ("grpc_unavailable").
//
// The limit is the service's rule; the bench's own limit flags do not
// apply.
type GRPC struct {
	conn         *grpc.ClientConn
	client       rlspb.RateLimitServiceClient
	domain, dkey string
}

// NewGRPC returns the target of the service at addr, HOST:PORT, over
// plaintext gRPC (as serve's --grpc-listen serves it). Empty domain and
// descriptorKey mean DefaultDomain and DefaultDescriptorKey.
func NewGRPC(addr, domain, descriptorKey string) (*GRPC, error) {
	if domain == "" {
		domain = DefaultDomain
	}
	if descriptorKey == "" {
		descriptorKey = DefaultDescriptorKey
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("--grpc %s: %w", addr, err)
	}
	return &GRPC{conn: conn, client: rlspb.NewRateLimitServiceClient(conn), domain: domain, dkey: descriptorKey}, nil
}

// Check implements Target.
func (g *GRPC) Check(ctx context.Context, key string, cost int64) (bool, error) {
	if cost > int64(^uint32(0)) {
		return false, &KindError{Kind: "invalid_input", Err: fmt.Errorf("cost %d does not fit hits_addend", cost)}
	}
	resp, err := g.client.ShouldRateLimit(ctx, &rlspb.RateLimitRequest{
		Domain: g.domain,
		Descriptors: []*rlv3.RateLimitDescriptor{{
			Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: g.dkey, Value: key}},
		}},
		HitsAddend: uint32(cost),
	})
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return false, ctxErr
		}
		st := status.Convert(err)
		return false, &KindError{Kind: "grpc_" + strings.ToLower(snake(st.Code().String())), Err: err}
	}
	if sts := resp.GetStatuses(); len(sts) == 1 && sts[0].GetCurrentLimit() == nil {
		return false, &KindError{Kind: "no_rule", Err: fmt.Errorf("domain %q, descriptor %s: no rule of the service matches (see tollgate-lab bench --print-envoy-config)", g.domain, g.dkey)}
	}
	switch resp.GetOverallCode() {
	case rlspb.RateLimitResponse_OK:
		return true, nil
	case rlspb.RateLimitResponse_OVER_LIMIT:
		return false, nil
	}
	return false, &KindError{Kind: "grpc_bad_code", Err: fmt.Errorf("overall code %s", resp.GetOverallCode())}
}

// snake turns a gRPC code name ("DeadlineExceeded") into snake case.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Close closes the connection.
func (g *GRPC) Close() error { return g.conn.Close() }

// EnvoyConfig returns an Envoy descriptor config (package config) with the
// rule a GRPC target's descriptors match: in domain, key descriptorKey
// (any value, each value its own counter), limit. Serve it with
// `tollgate serve --grpc-listen … --envoy-config FILE`.
func EnvoyConfig(domain, descriptorKey string, limit tollgate.Limit) string {
	if domain == "" {
		domain = DefaultDomain
	}
	if descriptorKey == "" {
		descriptorKey = DefaultDescriptorKey
	}
	return fmt.Sprintf(`# The rule that tollgate-lab bench --grpc checks against: every value of
# descriptor key %[2]q in domain %[1]q is a key of its own.
domain: %[1]s
descriptors:
  - key: %[2]s
    rate_limit:
      name: bench
      requests_per_unit: %[3]d
      window: %[4]s
      algorithm: %[5]s
`, domain, descriptorKey, limit.Units, shortDuration(limit.Window), limit.Algorithm)
}
