package service

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/tollgate/tollgate/server/httpapi"
)

// maxTokenFileSize is the largest token file read: 1 MiB.
const maxTokenFileSize = 1 << 20

// LoadTokens reads the token file at path ("" reads none) for the flag
// named flag and returns its tokens' secrets, without their scopes, and
// warns when others than the owner may read it. Tools that only need a
// token to send use it; the service uses LoadScopedTokens.
func LoadTokens(path, flag string, logger *slog.Logger) ([]string, error) {
	toks, err := LoadScopedTokens(path, flag, httpapi.AdminScope(), logger)
	if err != nil {
		return nil, err
	}
	var secrets []string
	for _, t := range toks {
		secrets = append(secrets, t.Secret)
	}
	return secrets, nil
}

// LoadScopedTokens reads the token file at path ("" reads none) for the
// flag named flag, each token with its scope over base (the scope of a
// bare token of that file; see readTokens), and warns when others than the
// owner may read it.
func LoadScopedTokens(path, flag string, base httpapi.Scope, logger *slog.Logger) ([]httpapi.Token, error) {
	if path == "" {
		return nil, nil
	}
	toks, perm, err := readTokens(path, base)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if perm&0o077 != 0 {
		logger.Warn("token file is readable by others than its owner",
			slog.String("file", path), slog.String("mode", perm.String()))
	}
	return toks, nil
}

// ErrTokenFile is wrapped by the errors of a malformed token file.
var ErrTokenFile = errors.New("invalid token file")

// tokenFileError is a malformed token file: its message, wrapping
// ErrTokenFile and the cause, if any.
type tokenFileError struct {
	msg   string
	cause error
}

func (e *tokenFileError) Error() string   { return e.msg }
func (e *tokenFileError) Unwrap() []error { return []error{ErrTokenFile, e.cause} }

func badTokens(cause error, format string, args ...any) error {
	return &tokenFileError{msg: fmt.Sprintf(format, args...), cause: cause}
}

// readTokens reads a token file: one token a line, surrounding blanks
// trimmed; empty lines and lines starting with '#' are skipped. A token must
// not contain blanks or control characters, and the file must hold at least
// one (an empty file would silently turn authentication off). A token may
// be followed, after blanks, by scope fields (httpapi.ParseScope) that
// narrow base; a bare token gets base:
//
//	tok-acme   policies=acme-* inline=false ops=check
//
// It returns the file's permission bits too. Errors name the file and
// line, never a token.
func readTokens(path string, base httpapi.Scope) ([]httpapi.Token, os.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFileSize+1))
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", path, err)
	}
	toks, err := parseTokens(path, data, base)
	if err != nil {
		return nil, 0, err
	}
	return toks, fi.Mode().Perm(), nil
}

// parseTokens parses the content of the token file called path.
func parseTokens(path string, data []byte, base httpapi.Scope) ([]httpapi.Token, error) {
	if len(data) > maxTokenFileSize {
		return nil, badTokens(nil, "%s: file larger than %d bytes", path, maxTokenFileSize)
	}
	var toks []httpapi.Token
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxTokenFileSize+1)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' })
		for _, f := range fields {
			if strings.IndexFunc(f, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
				return nil, badTokens(nil, "%s:%d: a token must not contain blanks or control characters", path, n)
			}
		}
		scope, err := httpapi.ParseScope(fields[1:], base)
		if err != nil {
			return nil, badTokens(err, "%s:%d: %v", path, n, err)
		}
		toks = append(toks, httpapi.Token{Secret: fields[0], Scope: scope})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(toks) == 0 {
		return nil, badTokens(nil, "%s: no tokens (one a line; '#' starts a comment)", path)
	}
	return toks, nil
}
