package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize is the largest config file read, in bytes: 4 MiB. A longer
// file is an error, so that a wrong path (a device, a log) cannot exhaust
// memory.
const MaxFileSize = 4 << 20

// source is one config file's name (as given, for messages) and content.
type source struct {
	name string
	data []byte
}

// readFile reads at most MaxFileSize bytes of the regular file at path.
func readFile(path string) (source, error) {
	f, err := os.Open(path)
	if err != nil {
		return source{}, err // *fs.PathError names the path
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return source{}, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return source{}, fmt.Errorf("%s: file larger than %d bytes", path, MaxFileSize)
	}
	return source{name: path, data: data}, nil
}

// decodeStrict decodes the one YAML document in src into v, rejecting
// unknown fields and duplicate keys, and returns the document's node tree so
// that later checks can report lines.
func decodeStrict(src source, v any) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src.data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errorAt(src.name, 0, "empty file: no YAML document")
		}
		return nil, yamlError(src.name, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlError(src.name, err)
	default:
		return nil, errorAt(src.name, extra.Line, "more than one YAML document")
	}
	var root yaml.Node
	if err := yaml.Unmarshal(src.data, &root); err != nil { // unreachable: decoded above
		return nil, yamlError(src.name, err)
	}
	return &root, nil
}

// parseError is a message rewritten from the error it wraps.
type parseError struct {
	msg string
	err error
}

func (e *parseError) Error() string { return e.msg }
func (e *parseError) Unwrap() error { return e.err }

var (
	lineRE     = regexp.MustCompile(`^line (\d+): (.*)$`)
	notFoundRE = regexp.MustCompile(`^field (.*) not found in type \S+$`)
	intoRE     = regexp.MustCompile(` into (\[\])?\*?config\.\w+$`)
)

// yamlError rewrites a yaml.v3 error as "name:line: message", dropping Go
// type names, and wraps it.
func yamlError(name string, err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	parts := make([]string, 0, len(msgs))
	for _, m := range msgs {
		line := 0
		if sub := lineRE.FindStringSubmatch(m); sub != nil {
			line, _ = strconv.Atoi(sub[1])
			m = sub[2]
		}
		if sub := notFoundRE.FindStringSubmatch(m); sub != nil {
			m = fmt.Sprintf("unknown field %q", sub[1])
		}
		if sub := intoRE.FindStringSubmatch(m); sub != nil {
			what := " into a mapping"
			if sub[1] != "" {
				what = " into a list"
			}
			m = m[:len(m)-len(sub[0])] + what
		}
		parts = append(parts, position(name, line)+m)
	}
	return &parseError{msg: strings.Join(parts, "; "), err: err}
}

// position formats a message prefix: "name:line: ", "name: ", "line N: "
// or "".
func position(name string, line int) string {
	switch {
	case name != "" && line > 0:
		return fmt.Sprintf("%s:%d: ", name, line)
	case name != "":
		return name + ": "
	case line > 0:
		return fmt.Sprintf("line %d: ", line)
	}
	return ""
}

// errorAt is fmt.Errorf with a position prefix; format may use %w.
func errorAt(name string, line int, format string, args ...any) error {
	return fmt.Errorf("%s"+format, append([]any{position(name, line)}, args...)...)
}

// lineOf returns the line of the node at path below root, where a string
// step is a mapping key and an int step a sequence index. When a step is
// missing it returns the line of the deepest node found, so a missing field
// is reported at its parent. It returns 0 for a nil root.
func lineOf(root *yaml.Node, path ...any) int {
	n := root
	if n == nil {
		return 0
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, step := range path {
		next := child(n, step)
		if next == nil {
			break
		}
		n = next
	}
	return n.Line
}

func child(n *yaml.Node, step any) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch s := step.(type) {
	case string:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == s {
				return n.Content[i+1]
			}
		}
	case int:
		if n.Kind == yaml.SequenceNode && s >= 0 && s < len(n.Content) {
			return n.Content[s]
		}
	}
	return nil
}
