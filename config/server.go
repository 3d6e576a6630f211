package config

import (
	"net"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Server holds the settings of `tollgate serve` from a policy file's
// optional server section:
//
//	server:
//	  listen: 127.0.0.1:8080              # HTTP API, HOST:PORT
//	  grpc_listen: 127.0.0.1:8081         # Envoy RLS v3 over gRPC, HOST:PORT
//	  envoy_config: envoy/                # Envoy descriptor configs, a file or directory (see LoadEnvoy)
//	  redis: 10.0.0.5:6379                # standalone Redis; or
//	  redis_cluster: [10.0.0.5:7000, 10.0.0.6:7000]  # Redis Cluster seed nodes
//	  redis_username: tollgate            # Redis ACL user
//	  redis_password_file: redis.pass     # first line: the password or access key
//	  redis_tls: true                     # TLS to Redis (implied by the redis_tls_* keys)
//	  redis_tls_ca_file: ca.pem           # CAs of the servers' certificates
//	  redis_tls_cert_file: client.pem     # client certificate, with redis_tls_key_file
//	  redis_tls_key_file: client.key
//	  redis_tls_server_name: cache.example.com  # verify certificates against this name
//	  redis_tls_insecure_skip_verify: false     # never in production
//	  redis_address_map: {10.0.0.5:6379: redis.example.com:6379}  # announced → reachable
//	  redis_dial_timeout: 5s              # Redis store tuning (redis.Options)
//	  redis_conn_timeout: 2s
//	  redis_attempt_timeout: 1s
//	  redis_retries: 2                    # negative: none
//	  redis_conns_per_node: 2
//	  redis_wait_replicas: 1              # WAIT for replicas after each write
//	  check_timeout: 100ms                # longest wait for the store per check
//	  shutdown_timeout: 10s               # longest drain on SIGTERM
//	  reload_interval: 5s                 # how often to look for config changes
//	  api_token_file: api-tokens.txt      # bearer tokens for /v1/*
//	  admin_token_file: admin-tokens.txt  # bearer tokens that may also reset
//	  log_level: info                     # debug, info, warn or error
//	  local_cache_size: 100000            # denials answered locally (see store/overlimit)
//	  local_cache_max_age: 10s            # longest one denial is answered locally
//
// A zero field was not set in the file, so a flag, an environment variable
// or the default applies; the file cannot set a zero value. Durations are Go
// durations and must be positive, and so must local_cache_size (0, which
// turns the cache off, can come from a flag or the environment only). A
// relative path is relative to the directory of the file (Load), or kept as
// is (Parse). Only the syntax is
// checked here (addresses are HOST:PORT, redis and redis_cluster exclusive);
// whether an address can be listened on or reached is for the server.
type Server struct {
	Listen       string
	GRPCListen   string
	EnvoyConfig  string
	Redis        string
	RedisCluster []string
	CheckTimeout time.Duration

	// Redis authentication and TLS, as the --redis-* flags.
	RedisUsername, RedisPasswordFile                        string
	RedisTLS, RedisTLSInsecureSkipVerify                    bool
	RedisTLSCAFile, RedisTLSCertFile, RedisTLSKeyFile       string
	RedisTLSServerName                                      string
	RedisAddressMap                                         map[string]string
	RedisDialTimeout, RedisConnTimeout, RedisAttemptTimeout time.Duration
	RedisRetries, RedisConnsPerNode, RedisWaitReplicas      int

	ShutdownTimeout time.Duration
	ReloadInterval  time.Duration
	APITokenFile    string
	AdminTokenFile  string
	LogLevel        string

	// LocalCacheSize and LocalCacheMaxAge size the local over-limit cache
	// (store/overlimit): how many denials it keeps, and how long at most it
	// answers one.
	LocalCacheSize   int
	LocalCacheMaxAge time.Duration
}

// Server returns the file's server section; the zero Server when it has
// none.
func (c *Config) Server() Server {
	if c == nil {
		return Server{}
	}
	s := c.server
	s.RedisCluster = append([]string(nil), s.RedisCluster...)
	if len(s.RedisCluster) == 0 {
		s.RedisCluster = nil
	}
	return s
}

type serverYAML struct {
	Listen       string   `yaml:"listen"`
	GRPCListen   string   `yaml:"grpc_listen"`
	EnvoyConfig  string   `yaml:"envoy_config"`
	Redis        string   `yaml:"redis"`
	RedisCluster []string `yaml:"redis_cluster"`

	RedisUsername              string `yaml:"redis_username"`
	RedisPasswordFile          string `yaml:"redis_password_file"`
	RedisTLS                   bool   `yaml:"redis_tls"`
	RedisTLSCAFile             string `yaml:"redis_tls_ca_file"`
	RedisTLSCertFile           string `yaml:"redis_tls_cert_file"`
	RedisTLSKeyFile            string `yaml:"redis_tls_key_file"`
	RedisTLSServerName         string `yaml:"redis_tls_server_name"`
	RedisTLSInsecureSkipVerify bool   `yaml:"redis_tls_insecure_skip_verify"`

	RedisAddressMap     map[string]string `yaml:"redis_address_map"`
	RedisDialTimeout    string            `yaml:"redis_dial_timeout"`
	RedisConnTimeout    string            `yaml:"redis_conn_timeout"`
	RedisAttemptTimeout string            `yaml:"redis_attempt_timeout"`
	RedisRetries        int               `yaml:"redis_retries"`
	RedisConnsPerNode   int               `yaml:"redis_conns_per_node"`
	RedisWaitReplicas   int               `yaml:"redis_wait_replicas"`
	CheckTimeout        string            `yaml:"check_timeout"`
	ShutdownTimeout     string            `yaml:"shutdown_timeout"`
	ReloadInterval      string            `yaml:"reload_interval"`
	APITokenFile        string            `yaml:"api_token_file"`
	AdminTokenFile      string            `yaml:"admin_token_file"`
	LogLevel            string            `yaml:"log_level"`

	// The local over-limit cache; a pointer, to tell 0 from absent.
	LocalCacheSize   *int   `yaml:"local_cache_size"`
	LocalCacheMaxAge string `yaml:"local_cache_max_age"`
}

// serverOf validates the server section s of src, whose node tree is root.
func serverOf(src source, root *yaml.Node, s serverYAML) (Server, error) {
	at := func(field string, format string, args ...any) error {
		return errorAt(src.name, lineOf(root, "server", field), "server: "+format, args...)
	}
	out := Server{
		Listen:                     s.Listen,
		GRPCListen:                 s.GRPCListen,
		Redis:                      s.Redis,
		RedisCluster:               s.RedisCluster,
		LogLevel:                   s.LogLevel,
		RedisUsername:              s.RedisUsername,
		RedisTLS:                   s.RedisTLS,
		RedisTLSServerName:         s.RedisTLSServerName,
		RedisTLSInsecureSkipVerify: s.RedisTLSInsecureSkipVerify,
		RedisAddressMap:            s.RedisAddressMap,
		RedisRetries:               s.RedisRetries,
		RedisConnsPerNode:          s.RedisConnsPerNode,
		RedisWaitReplicas:          s.RedisWaitReplicas,
	}
	for from, to := range s.RedisAddressMap {
		if !hostPort(from) || !hostPort(to) {
			return Server{}, at("redis_address_map", "redis_address_map %q: %q: want HOST:PORT: HOST:PORT", from, to)
		}
	}
	if s.RedisConnsPerNode < 0 || s.RedisWaitReplicas < 0 {
		return Server{}, at("redis_conns_per_node", "redis_conns_per_node and redis_wait_replicas cannot be negative")
	}
	for _, a := range []struct{ field, addr string }{{"listen", s.Listen}, {"grpc_listen", s.GRPCListen}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return Server{}, at(a.field, "%s %q: want HOST:PORT", a.field, a.addr)
		}
	}
	if s.Redis != "" && len(s.RedisCluster) > 0 {
		return Server{}, at("redis_cluster", "redis and redis_cluster are mutually exclusive")
	}
	if s.Redis != "" && !hostPort(s.Redis) {
		return Server{}, at("redis", "redis %q: want HOST:PORT", s.Redis)
	}
	for i, a := range s.RedisCluster {
		if !hostPort(a) {
			return Server{}, errorAt(src.name, lineOf(root, "server", "redis_cluster", i),
				"server: redis_cluster node %q: want HOST:PORT", a)
		}
	}
	for _, d := range []struct {
		field string
		value string
		out   *time.Duration
	}{
		{"check_timeout", s.CheckTimeout, &out.CheckTimeout},
		{"shutdown_timeout", s.ShutdownTimeout, &out.ShutdownTimeout},
		{"reload_interval", s.ReloadInterval, &out.ReloadInterval},
		{"local_cache_max_age", s.LocalCacheMaxAge, &out.LocalCacheMaxAge},
		{"redis_dial_timeout", s.RedisDialTimeout, &out.RedisDialTimeout},
		{"redis_conn_timeout", s.RedisConnTimeout, &out.RedisConnTimeout},
		{"redis_attempt_timeout", s.RedisAttemptTimeout, &out.RedisAttemptTimeout},
	} {
		if d.value == "" {
			continue
		}
		v, err := time.ParseDuration(d.value)
		if err != nil {
			return Server{}, at(d.field, "%s %q is not a Go duration such as \"100ms\"", d.field, d.value)
		}
		if v <= 0 {
			return Server{}, at(d.field, "%s %s: must be positive", d.field, v)
		}
		*d.out = v
	}
	if s.LocalCacheSize != nil {
		if *s.LocalCacheSize <= 0 {
			return Server{}, at("local_cache_size", "local_cache_size %d: must be positive (turn the cache off with --local-cache-size 0)", *s.LocalCacheSize)
		}
		out.LocalCacheSize = *s.LocalCacheSize
	}
	switch strings.ToLower(s.LogLevel) {
	case "", "debug", "info", "warn", "error":
	default:
		return Server{}, at("log_level", "unknown log_level %q (want debug, info, warn or error)", s.LogLevel)
	}
	dir := ""
	if src.name != "" {
		dir = filepath.Dir(src.name)
	}
	out.EnvoyConfig = relativeTo(dir, s.EnvoyConfig)
	out.APITokenFile = relativeTo(dir, s.APITokenFile)
	out.AdminTokenFile = relativeTo(dir, s.AdminTokenFile)
	out.RedisPasswordFile = relativeTo(dir, s.RedisPasswordFile)
	out.RedisTLSCAFile = relativeTo(dir, s.RedisTLSCAFile)
	out.RedisTLSCertFile = relativeTo(dir, s.RedisTLSCertFile)
	out.RedisTLSKeyFile = relativeTo(dir, s.RedisTLSKeyFile)
	return out, nil
}

// hostPort reports whether addr is HOST:PORT with neither part empty.
func hostPort(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	return err == nil && host != "" && port != ""
}

// relativeTo resolves a relative path against dir ("" leaves it as is).
func relativeTo(dir, path string) string {
	if path == "" || dir == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}
