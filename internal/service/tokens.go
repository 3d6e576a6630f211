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
)

// maxTokenFileSize is the largest token file read: 1 MiB.
const maxTokenFileSize = 1 << 20

// LoadTokens reads the token file at path ("" reads none) for the flag
// named flag, and warns when others than the owner may read it.
func LoadTokens(path, flag string, logger *slog.Logger) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	toks, perm, err := readTokens(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if perm&0o077 != 0 {
		logger.Warn("token file is readable by others than its owner",
			slog.String("file", path), slog.String("mode", perm.String()))
	}
	return toks, nil
}

// readTokens reads a token file: one token a line, surrounding blanks
// trimmed; empty lines and lines starting with '#' are skipped. A token must
// not contain blanks or control characters, and the file must hold at least
// one (an empty file would silently turn authentication off). It returns
// the file's permission bits too. Errors name the file and line, never a
// token.
func readTokens(path string) ([]string, os.FileMode, error) {
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
	if len(data) > maxTokenFileSize {
		return nil, 0, fmt.Errorf("%s: file larger than %d bytes", path, maxTokenFileSize)
	}
	var toks []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxTokenFileSize+1)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.IndexFunc(line, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
			return nil, 0, fmt.Errorf("%s:%d: a token must not contain blanks or control characters", path, n)
		}
		toks = append(toks, line)
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", path, err)
	}
	if len(toks) == 0 {
		return nil, 0, errors.New(path + ": no tokens (one a line; '#' starts a comment)")
	}
	return toks, fi.Mode().Perm(), nil
}
