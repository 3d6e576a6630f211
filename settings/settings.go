// Package settings is the one model of the settings of `tollgate serve`:
// typed groups whose fields document their zero values, one Validate, and
// one table (Fields) that binds every setting to a command-line flag, an
// environment variable and a key of the config file's server section, from
// the field's tags:
//
//	CheckTimeout time.Duration `flag:"check-timeout" usage:"…"`
//
// binds --check-timeout, TOLLGATE_CHECK_TIMEOUT and check_timeout. Adding a
// setting is adding a field, with its tags and doc, to a group, and a line
// to its test: nothing else. Command line wins over the environment, which
// wins over the file, which wins over Default.
//
// Tags: flag (the name; required), usage (the flag's help; a `word` in
// backquotes names its value), path (a file path: in the config file,
// relative to the file's directory), file:"-" (not in the file), file:
// "positive" (the file may only set a positive number: its zero means
// unset) and hint (added to that error).
package settings

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"
)

// Settings is every setting of `tollgate serve`. The zero Settings is not
// valid (it has no listen address); start from Default.
type Settings struct {
	// Config is the YAML file of policies, whose server section may set
	// the other settings; "" means none. Command line and environment
	// only.
	Config string "flag:\"config\" file:\"-\" path:\"true\" usage:\"YAML `file` with policies and an optional server section; reloaded on change\""
	HTTP   HTTP
	GRPC   GRPC
	Redis  Redis
	TLS    TLS
	Listen ListenTLS
	Check  Check
	Cache  Cache
	Memory Memory
	Log    Log
}

// HTTP is the HTTP API's listener and tokens.
type HTTP struct {
	// Listen is the HOST:PORT to serve HTTP on; port 0 picks a free one.
	// It must not be empty.
	Listen string "flag:\"listen\" usage:\"`HOST:PORT` to serve HTTP on (port 0 picks a free one)\""
	// APITokenFile, when not empty, holds the bearer tokens that /v1/*
	// requests need, one a line; "" means none needed.
	APITokenFile string "flag:\"api-token-file\" path:\"true\" usage:\"`file` of bearer tokens (one a line) that /v1/* requests need\""
	// AdminTokenFile, when not empty, holds the tokens that may also call
	// /v1/reset; "" means none.
	AdminTokenFile string "flag:\"admin-token-file\" path:\"true\" usage:\"`file` of bearer tokens that may also call /v1/reset\""
	// InlineLimits allows inline limits ("limit", "limits") in requests;
	// false makes the service policies-only: every request must name a
	// policy of --config (403 otherwise). Default true.
	InlineLimits bool `flag:"inline-limits" usage:"allow inline limits in requests; false: callers may only name the policies of --config"`
	// H2C also serves HTTP/2 without TLS (h2c, with prior knowledge)
	// beside HTTP/1.1, so that a gateway can send many checks over one
	// connection at once; false serves HTTP/1.1 only there. Default true.
	// With TLS, HTTP/2 is negotiated as usual.
	H2C bool `flag:"http-h2c" usage:"also serve HTTP/2 without TLS (h2c, prior knowledge) beside HTTP/1.1"`
	// MaxBatchChecks is the most checks of one POST /v1/batch; it must be
	// positive. Default DefaultMaxBatchChecks.
	MaxBatchChecks int `flag:"http-max-batch-checks" usage:"most checks of one POST /v1/batch request (more is 400 too_many_checks)"`
}

// GRPC is the Envoy rate limit service's listener and rules.
type GRPC struct {
	// Listen, when not empty, is the HOST:PORT to serve the Envoy rate
	// limit service on; it needs EnvoyConfig. "" means no gRPC.
	Listen string "flag:\"grpc-listen\" usage:\"`HOST:PORT` to serve the Envoy rate limit service (gRPC) on; needs --envoy-config\""
	// EnvoyConfig is the file or directory of Envoy descriptor configs;
	// it needs Listen.
	EnvoyConfig string "flag:\"envoy-config\" path:\"true\" usage:\"Envoy ratelimit descriptor configs, a `file or directory`; reloaded on change\""
	// MaxRecvBytes is the largest request message accepted; it must be
	// positive. Default DefaultGRPCMaxRecvBytes.
	MaxRecvBytes int `flag:"grpc-max-recv-bytes" usage:"largest gRPC request message accepted, in bytes (larger: RESOURCE_EXHAUSTED)"`
	// MaxConcurrentStreams bounds the calls in flight on one connection;
	// it must be positive. Default DefaultGRPCMaxConcurrentStreams.
	MaxConcurrentStreams int `flag:"grpc-max-concurrent-streams" usage:"most gRPC calls in flight on one connection"`
	// KeepaliveMinTime is the shortest interval between a client's
	// keepalive pings; a client that pings more often is disconnected
	// (GOAWAY). It must be positive. Default DefaultGRPCKeepaliveMinTime.
	KeepaliveMinTime time.Duration `flag:"grpc-keepalive-min-time" usage:"shortest interval allowed between a gRPC client's keepalive pings; more often closes the connection"`
	// Reflection serves gRPC server reflection; default off.
	Reflection bool `flag:"grpc-reflection" usage:"serve gRPC server reflection (for grpcurl); off by default, as it shows the API to any client"`
	// MaxDescriptors is the most descriptors one rate limit request may
	// carry (more: INVALID_ARGUMENT); it must be positive. Default
	// rls.DefaultMaxDescriptors (64).
	MaxDescriptors int `flag:"grpc-max-descriptors" usage:"most descriptors in one rate limit request (more: INVALID_ARGUMENT)"`
}

// Redis selects and tunes the store: the memory store when Addr and
// Cluster are both empty.
type Redis struct {
	// Addr is a standalone Redis HOST:PORT.
	Addr string "flag:\"redis\" usage:\"standalone Redis `HOST:PORT` (default: in-memory store)\""
	// Cluster are Redis Cluster seed nodes, HOST:PORT each.
	Cluster []string "flag:\"redis-cluster\" usage:\"Redis Cluster seed nodes, `HOST:PORT[,HOST:PORT...]`\""
	// Username is the Redis ACL user; "" means the default user.
	Username string "flag:\"redis-username\" usage:\"Redis ACL `user` (default: the default user)\""
	// PasswordFile's first line is the password or access key, read again
	// for every new connection; "" means no AUTH.
	PasswordFile string "flag:\"redis-password-file\" path:\"true\" usage:\"`file` whose first line is the Redis password or access key\""
	// AddressMap maps node addresses the Cluster announces to where this
	// service reaches them; nil means as announced.
	AddressMap map[string]string "flag:\"redis-address-map\" usage:\"announced Redis node addresses and where to reach them, `IP:PORT=HOST:PORT,...` (NAT, private endpoints)\""
	// DialTimeout, ConnTimeout and AttemptTimeout tune the store
	// (redis.Options); 0 means its defaults (5s, 2s, 1s).
	DialTimeout    time.Duration `flag:"redis-dial-timeout" file:"positive" usage:"bound on connecting to a Redis node (default 5s)"`
	ConnTimeout    time.Duration `flag:"redis-conn-timeout" file:"positive" usage:"a connection without any reply this long is closed and dialed again (default 2s)"`
	AttemptTimeout time.Duration `flag:"redis-attempt-timeout" file:"positive" usage:"bound on one attempt of a call, within the check's deadline (default 1s)"`
	// Retries of a call that failed transiently; 0 means the store's
	// default (2), negative none.
	Retries int `flag:"redis-retries" usage:"retries of a call that failed transiently, within its deadline (default 2; negative: none)"`
	// ConnsPerNode is how many connections to keep to each node; 0 means
	// the client's default.
	ConnsPerNode int `flag:"redis-conns-per-node" usage:"connections to each Redis node, rounded up to a power of two (default: the client's)"`
	// WaitReplicas is how many replicas each write waits for (WAIT); 0
	// means none.
	WaitReplicas int `flag:"redis-wait-replicas" usage:"replicas each write waits for (Redis WAIT, up to 100ms); 0: none"`
}

// Kind names the store: "memory", "redis" or "redis-cluster".
func (r Redis) Kind() string {
	switch {
	case r.Addr != "":
		return "redis"
	case len(r.Cluster) > 0:
		return "redis-cluster"
	}
	return "memory"
}

// TLS is how the store reaches Redis over TLS. It is on when Enabled or
// any other field is set.
type TLS struct {
	// Enabled turns TLS on; the other fields imply it.
	Enabled bool `flag:"redis-tls" usage:"connect to Redis over TLS (implied by the other --redis-tls flags)"`
	// CAFile holds the CAs that sign the servers' certificates; "" means
	// the system's roots.
	CAFile string "flag:\"redis-tls-ca-file\" path:\"true\" usage:\"PEM `file` of the CAs that sign the Redis servers' certificates (default: the system's roots)\""
	// CertFile and KeyFile are a client certificate and its key; "" means
	// none.
	CertFile string "flag:\"redis-tls-cert-file\" path:\"true\" usage:\"PEM client certificate `file`, for servers that require one (with --redis-tls-key-file)\""
	KeyFile  string "flag:\"redis-tls-key-file\" path:\"true\" usage:\"PEM `file` of the client certificate's key\""
	// ServerName is the name to verify certificates against; "" means the
	// host dialed.
	ServerName string "flag:\"redis-tls-server-name\" usage:\"`name` to verify the servers' certificates against (default: the host dialed; set it when a cluster redirects to raw IPs)\""
	// InsecureSkipVerify accepts any certificate; never in production.
	InsecureSkipVerify bool `flag:"redis-tls-insecure-skip-verify" usage:"accept any server certificate (never in production)"`
}

// On reports whether TLS is on.
func (t TLS) On() bool { return t != TLS{} }

// ListenTLS is TLS, and mutual TLS, on the service's own listeners. The
// certificate, key and client CAs apply to both the HTTP and the gRPC
// listener unless the GRPC* fields give the gRPC listener its own. Every
// file is read again when it changes (checked at most once a second, on a
// new connection), so a renewed certificate applies without a restart.
type ListenTLS struct {
	// CertFile and KeyFile are the listeners' certificate (chain) and key,
	// PEM; both or neither. "" means plain TCP.
	CertFile string "flag:\"tls-cert-file\" path:\"true\" usage:\"PEM certificate `file` (chain) to serve HTTP, and gRPC unless --grpc-tls-cert-file, over TLS (with --tls-key-file)\""
	KeyFile  string "flag:\"tls-key-file\" path:\"true\" usage:\"PEM `file` of the listeners' TLS key\""
	// ClientCAFile, when set, holds the CAs that sign client certificates,
	// which every connection must then present (mutual TLS); "" means no
	// client certificates. It needs CertFile.
	ClientCAFile string "flag:\"tls-client-ca-file\" path:\"true\" usage:\"PEM `file` of the CAs of client certificates: every client must present one (mutual TLS)\""
	// GRPCCertFile, GRPCKeyFile and GRPCClientCAFile, when set, replace
	// the three above on the gRPC listener.
	GRPCCertFile     string "flag:\"grpc-tls-cert-file\" path:\"true\" usage:\"PEM certificate `file` for the gRPC listener only (default: --tls-cert-file)\""
	GRPCKeyFile      string "flag:\"grpc-tls-key-file\" path:\"true\" usage:\"PEM key `file` for the gRPC listener only (default: --tls-key-file)\""
	GRPCClientCAFile string "flag:\"grpc-tls-client-ca-file\" path:\"true\" usage:\"PEM `file` of the client CAs of the gRPC listener only (default: --tls-client-ca-file)\""
}

// HTTPFiles returns the HTTP listener's certificate, key and client CA
// files; cert "" means plain TCP.
func (l ListenTLS) HTTPFiles() (cert, key, clientCA string) {
	return l.CertFile, l.KeyFile, l.ClientCAFile
}

// GRPCFiles returns the gRPC listener's certificate, key and client CA
// files: its own where set, else the shared ones; cert "" means plain TCP.
func (l ListenTLS) GRPCFiles() (cert, key, clientCA string) {
	cert, key, clientCA = l.CertFile, l.KeyFile, l.ClientCAFile
	if l.GRPCCertFile != "" || l.GRPCKeyFile != "" {
		cert, key = l.GRPCCertFile, l.GRPCKeyFile
	}
	if l.GRPCClientCAFile != "" {
		clientCA = l.GRPCClientCAFile
	}
	return cert, key, clientCA
}

func (l ListenTLS) validate() *Error {
	pairs := []struct{ cert, key, ca, certFlag, keyFlag, caFlag string }{
		{l.CertFile, l.KeyFile, l.ClientCAFile, "tls-cert-file", "tls-key-file", "tls-client-ca-file"},
		{l.GRPCCertFile, l.GRPCKeyFile, "", "grpc-tls-cert-file", "grpc-tls-key-file", ""},
	}
	for _, p := range pairs {
		switch {
		case p.cert != "" && p.key == "":
			return needs(fieldError(p.certFlag, -1, "%s needs %s", setting(p.certFlag), setting(p.keyFlag)))
		case p.key != "" && p.cert == "":
			return needs(fieldError(p.keyFlag, -1, "%s needs %s", setting(p.keyFlag), setting(p.certFlag)))
		case p.ca != "" && p.cert == "":
			return needs(fieldError(p.caFlag, -1, "%s needs %s (mutual TLS is TLS)", setting(p.caFlag), setting(p.certFlag)))
		}
	}
	if _, _, ca := l.GRPCFiles(); l.GRPCClientCAFile != "" && l.GRPCCertFile == "" && l.CertFile == "" {
		return needs(fieldError("grpc-tls-client-ca-file", -1, "%s %s needs a certificate (%s or %s)", setting("grpc-tls-client-ca-file"), ca, setting("tls-cert-file"), setting("grpc-tls-cert-file")))
	}
	return nil
}

// Check bounds each check and sets the service's timing.
type Check struct {
	// Timeout bounds each store call of a check; past it the check fails
	// as unavailable and the failure mode applies. It must be positive.
	Timeout time.Duration `flag:"check-timeout" usage:"how long a check may wait for the store before the policy's failure mode applies"`
	// ReloadInterval is how often the config files are polled for
	// changes; it must be positive.
	ReloadInterval time.Duration `flag:"reload-interval" usage:"how often to look for changes to --config and --envoy-config"`
	// ShutdownTimeout bounds how long in-flight requests may run on
	// shutdown; it must be positive.
	ShutdownTimeout time.Duration `flag:"shutdown-timeout" usage:"how long to let in-flight requests finish on shutdown"`
}

// Cache sizes the local over-limit cache (store/overlimit).
type Cache struct {
	// Size is how many denials it keeps; 0 turns it off.
	Size int `flag:"local-cache-size" file:"positive" hint:"turn the cache off with --local-cache-size 0" usage:"how many denied keys to answer locally until their Retry-After, sparing the store (0 turns the cache off)"`
	// MaxAge is the longest it answers one denial; 0 means until the
	// denial's RetryAfter.
	MaxAge time.Duration `flag:"local-cache-max-age" file:"positive" usage:"longest the local cache answers one denial: bounds how long a refund or reset through another instance goes unseen (0: until Retry-After)"`
}

// Memory bounds the in-process memory stores: the store when no Redis is
// set, and the fail_local fallback.
type Memory struct {
	// MaxKeys caps the keys each memory store holds (memory.Options.
	// MaxKeys); past it the keys nearest their reset are evicted, their
	// usage forgotten. It must be positive. Default DefaultMemoryMaxKeys.
	MaxKeys int `flag:"memory-max-keys" usage:"most keys each in-process store (the memory store, the fail_local fallback) holds; past it the keys nearest their reset are forgotten"`
}

func (m Memory) validate() *Error {
	if m.MaxKeys <= 0 {
		return fieldError("memory-max-keys", -1, "%s %d: must be positive", setting("memory-max-keys"), m.MaxKeys)
	}
	return nil
}

// Log sets the logging.
type Log struct {
	// Level is debug, info, warn or error, in any case; "" is invalid.
	Level string "flag:\"log-level\" usage:\"log `level`: debug, info, warn or error\""
}

// Defaults of the settings whose zero value is not usable.
const (
	DefaultListen = "127.0.0.1:8080"
	// DefaultMaxBatchChecks is httpapi.DefaultMaxBatchChecks.
	DefaultMaxBatchChecks  = 100
	DefaultCheckTimeout    = 100 * time.Millisecond
	DefaultReloadInterval  = 5 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
	DefaultCacheSize       = 100_000
	DefaultCacheMaxAge     = 10 * time.Second
	DefaultLogLevel        = "info"
	// DefaultGRPCMaxRecvBytes is 64 KiB: an Envoy request of the
	// most descriptors is a few KiB.
	DefaultGRPCMaxRecvBytes         = 64 << 10
	DefaultGRPCMaxConcurrentStreams = 1000
	DefaultGRPCKeepaliveMinTime     = 10 * time.Second
	DefaultGRPCMaxDescriptors       = 64
	// DefaultMemoryMaxKeys is memory.DefaultMaxKeys: under 350 MiB of
	// keys with one limit each (see store/memory).
	DefaultMemoryMaxKeys    = 500_000
	EnvPrefix               = "TOLLGATE_"
	errMutuallyExclusiveFmt = "%s and %s are mutually exclusive"
)

// Default returns the defaults: the settings of `tollgate serve` with no
// flag, variable or file.
func Default() Settings {
	return Settings{
		HTTP: HTTP{Listen: DefaultListen, InlineLimits: true, H2C: true, MaxBatchChecks: DefaultMaxBatchChecks},
		GRPC: GRPC{MaxRecvBytes: DefaultGRPCMaxRecvBytes, MaxConcurrentStreams: DefaultGRPCMaxConcurrentStreams,
			KeepaliveMinTime: DefaultGRPCKeepaliveMinTime, MaxDescriptors: DefaultGRPCMaxDescriptors},
		Check:  Check{Timeout: DefaultCheckTimeout, ReloadInterval: DefaultReloadInterval, ShutdownTimeout: DefaultShutdownTimeout},
		Cache:  Cache{Size: DefaultCacheSize, MaxAge: DefaultCacheMaxAge},
		Memory: Memory{MaxKeys: DefaultMemoryMaxKeys},
		Log:    Log{Level: DefaultLogLevel},
	}
}

// An Error is an invalid setting. Its Error names settings by their flags;
// In names them as the caller asks (the config file by its keys).
type Error struct {
	// Flag is the setting at fault; Item, for a list, the index of the
	// item at fault, else -1.
	Flag string
	Item int
	// Needs: the setting wants another one set, which another source (the
	// command line, the environment) may still give.
	Needs bool
	msg   func(name func(flag string) string) string
}

func (e *Error) Error() string { return e.In(func(f string) string { return "--" + f }) }

// In renders the error with each setting named by name(flag).
func (e *Error) In(name func(flag string) string) string { return e.msg(name) }

func fieldError(flag string, item int, format string, args ...any) *Error {
	return &Error{Flag: flag, Item: item, msg: func(name func(string) string) string {
		a := make([]any, len(args))
		for i, v := range args {
			if f, ok := v.(setting); ok {
				v = name(string(f))
			}
			a[i] = v
		}
		return fmt.Sprintf(format, a...)
	}}
}

func needs(e *Error) *Error { e.Needs = true; return e }

// setting marks a format argument that names a setting by its flag.
type setting string

// Validate reports the first invalid setting, as an *Error.
func (s Settings) Validate() error {
	if e := s.validate(false); e != nil {
		return e
	}
	return nil
}

// ValidateStore reports the first invalid setting of the store's groups,
// Redis and TLS, as an *Error: for tools that use only those.
func (s Settings) ValidateStore() error {
	for _, check := range []func() *Error{s.Redis.validate, s.tlsNeedsRedis} {
		if e := check(); e != nil {
			return e
		}
	}
	return nil
}

// validate returns the first invalid setting; with partial, it passes
// settings that only want another one set (Error.Needs).
func (s Settings) validate(partial bool) *Error {
	for _, check := range []func() *Error{s.HTTP.validate, s.GRPC.validate, s.Redis.validate, s.tlsNeedsRedis, s.Listen.validate, s.Check.validate, s.Cache.validate, s.Memory.validate, s.Log.validate} {
		if e := check(); e != nil && !(partial && e.Needs) {
			return e
		}
	}
	return nil
}

func (h HTTP) validate() *Error {
	if h.Listen == "" {
		return fieldError("listen", -1, "%s is empty", setting("listen"))
	}
	if _, _, err := net.SplitHostPort(h.Listen); err != nil {
		return fieldError("listen", -1, "%s %q: want HOST:PORT", setting("listen"), h.Listen)
	}
	if h.MaxBatchChecks <= 0 {
		return fieldError("http-max-batch-checks", -1, "%s %d: must be positive", setting("http-max-batch-checks"), h.MaxBatchChecks)
	}
	return nil
}

func (g GRPC) validate() *Error {
	switch {
	case g.Listen != "" && g.EnvoyConfig == "":
		return needs(fieldError("grpc-listen", -1, "%s needs %s (the descriptor rules to serve)", setting("grpc-listen"), setting("envoy-config")))
	case g.EnvoyConfig != "" && g.Listen == "":
		return needs(fieldError("envoy-config", -1, "%s needs %s (the Envoy rate limit service serves it)", setting("envoy-config"), setting("grpc-listen")))
	case g.Listen != "":
		if _, _, err := net.SplitHostPort(g.Listen); err != nil {
			return fieldError("grpc-listen", -1, "%s %q: want HOST:PORT", setting("grpc-listen"), g.Listen)
		}
	}
	for _, n := range []struct {
		flag string
		v    int
	}{{"grpc-max-recv-bytes", g.MaxRecvBytes}, {"grpc-max-concurrent-streams", g.MaxConcurrentStreams}, {"grpc-max-descriptors", g.MaxDescriptors}} {
		if n.v <= 0 {
			return fieldError(n.flag, -1, "%s %d: must be positive", setting(n.flag), n.v)
		}
	}
	if g.KeepaliveMinTime <= 0 {
		return fieldError("grpc-keepalive-min-time", -1, "%s %s: must be positive", setting("grpc-keepalive-min-time"), g.KeepaliveMinTime)
	}
	return nil
}

func (r Redis) validate() *Error {
	if r.Addr != "" && len(r.Cluster) > 0 {
		return fieldError("redis-cluster", -1, errMutuallyExclusiveFmt, setting("redis"), setting("redis-cluster"))
	}
	if r.Addr != "" && !hostPort(r.Addr) {
		return fieldError("redis", -1, "%s %q: want HOST:PORT", setting("redis"), r.Addr)
	}
	for i, a := range r.Cluster {
		if !hostPort(a) {
			return fieldError("redis-cluster", i, "%s node %q: want HOST:PORT", setting("redis-cluster"), a)
		}
	}
	for from, to := range r.AddressMap {
		if !hostPort(from) || !hostPort(to) {
			return fieldError("redis-address-map", -1, "%s %q: %q: want HOST:PORT: HOST:PORT", setting("redis-address-map"), from, to)
		}
	}
	if r.ConnsPerNode < 0 || r.WaitReplicas < 0 {
		return fieldError("redis-conns-per-node", -1, "%s and %s cannot be negative", setting("redis-conns-per-node"), setting("redis-wait-replicas"))
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"redis-dial-timeout", r.DialTimeout}, {"redis-conn-timeout", r.ConnTimeout}, {"redis-attempt-timeout", r.AttemptTimeout}} {
		if d.v < 0 {
			return fieldError(d.flag, -1, "%s %s: must not be negative", setting(d.flag), d.v)
		}
	}
	return nil
}

func (s Settings) tlsNeedsRedis() *Error {
	if (s.TLS.On() || s.Redis.Username != "" || s.Redis.PasswordFile != "") && s.Redis.Kind() == "memory" {
		return needs(fieldError("redis-tls", -1, "%s, %s and %s need %s or %s",
			setting("redis-tls"), setting("redis-username"), setting("redis-password-file"), setting("redis"), setting("redis-cluster")))
	}
	return nil
}

func (c Check) validate() *Error {
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"check-timeout", c.Timeout}, {"shutdown-timeout", c.ShutdownTimeout}, {"reload-interval", c.ReloadInterval}} {
		if d.v <= 0 {
			return fieldError(d.flag, -1, "%s %s: must be positive", setting(d.flag), d.v)
		}
	}
	return nil
}

func (c Cache) validate() *Error {
	switch {
	case c.Size < 0:
		return fieldError("local-cache-size", -1, "%s %d: must not be negative (0 turns the cache off)", setting("local-cache-size"), c.Size)
	case c.MaxAge < 0:
		return fieldError("local-cache-max-age", -1, "%s %s: must not be negative", setting("local-cache-max-age"), c.MaxAge)
	}
	return nil
}

func (l Log) validate() *Error {
	if _, err := l.SlogLevel(); err != nil {
		return fieldError("log-level", -1, "unknown %s %q (want debug, info, warn or error)", setting("log-level"), l.Level)
	}
	return nil
}

// hostPort reports whether addr is HOST:PORT with neither part empty.
func hostPort(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	return err == nil && host != "" && port != ""
}

var errLevel = errors.New("unknown log level")

// SlogLevel returns the level for log/slog.
func (l Log) SlogLevel() (slog.Level, error) {
	switch strings.ToLower(l.Level) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%w %q", errLevel, l.Level)
}
