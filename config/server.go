package config

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate/settings"
)

// Server returns the file's server section: the settings of `tollgate
// serve` it sets (package settings), checked, with relative paths resolved
// against the file's directory (Load) or kept as they are (Parse); nil when
// it has none. Its keys are the settings' flag names with underscores:
//
//	server:
//	  listen: 127.0.0.1:8080              # HTTP API, HOST:PORT
//	  grpc_listen: 127.0.0.1:8081         # Envoy RLS v3 over gRPC, HOST:PORT
//	  envoy_config: envoy/                # Envoy descriptor configs, a file or directory (see LoadEnvoy)
//	  redis: 10.0.0.5:6379                # standalone Redis; or
//	  redis_cluster: [10.0.0.5:7000, 10.0.0.6:7000]  # Redis Cluster seed nodes
//	  redis_password_file: redis.pass     # first line: the password or access key
//	  redis_tls_server_name: cache.example.com  # verify certificates against this name
//	  redis_address_map: {10.0.0.5:6379: redis.example.com:6379}  # announced → reachable
//	  check_timeout: 100ms                # longest wait for the store per check
//	  local_cache_size: 100000            # denials answered locally (see store/overlimit)
//
// and so on for every setting but config itself. A zero number (or
// duration) that the file may not set is an error: the file sets only what
// it means to change. Only the syntax and the settings' rules are checked
// here; whether an address can be listened on or reached is for the server.
func (c *Config) Server() settings.File {
	if c == nil {
		return nil
	}
	return slices.Clone(c.server)
}

// serverOf checks the server section node of src, whose node tree is root.
func serverOf(src source, root *yaml.Node, node yaml.Node) (settings.File, error) {
	if node.Kind == 0 || (node.Kind == yaml.ScalarNode && node.Tag == "!!null") {
		return nil, nil
	}
	if node.Kind != yaml.MappingNode {
		return nil, errorAt(src.name, node.Line, "server: want a mapping of settings")
	}
	var file settings.File
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], node.Content[i+1]
		fv := settings.FileValue{Key: k.Value, Line: v.Line}
		switch v.Kind {
		case yaml.ScalarNode:
			fv.Value = v.Value
		case yaml.SequenceNode:
			items := make([]string, len(v.Content))
			for j, it := range v.Content {
				if it.Kind != yaml.ScalarNode {
					return nil, errorAt(src.name, it.Line, "server: %s: want a list of values", k.Value)
				}
				items[j] = it.Value
				fv.ItemLines = append(fv.ItemLines, it.Line)
			}
			fv.Value = strings.Join(items, ",")
		case yaml.MappingNode:
			var pairs []string
			for j := 0; j+1 < len(v.Content); j += 2 {
				pairs = append(pairs, v.Content[j].Value+"="+v.Content[j+1].Value)
			}
			slices.Sort(pairs)
			fv.Value = strings.Join(pairs, ",")
		default:
			return nil, errorAt(src.name, v.Line, "server: %s: want a value", k.Value)
		}
		if slices.ContainsFunc(file, func(f settings.FileValue) bool { return f.Key == fv.Key }) {
			return nil, errorAt(src.name, k.Line, "server: mapping key %q already defined", k.Value)
		}
		file = append(file, fv)
	}
	dir := ""
	if src.name != "" {
		dir = filepath.Dir(src.name)
	}
	checked, err := settings.CheckFile(file, dir)
	if fe, ok := err.(*settings.FileError); ok {
		line := file.Line(fe.Key, fe.Item)
		if strings.HasPrefix(fe.Msg, "unknown setting") {
			return nil, errorAt(src.name, line, "unknown field %q in server", fe.Key)
		}
		return nil, errorAt(src.name, line, "%s", fe.Error())
	}
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return checked, nil
}
