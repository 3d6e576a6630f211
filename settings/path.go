package settings

import "path/filepath"

func isAbs(p string) bool { return filepath.IsAbs(p) }

func joinPath(dir, p string) string { return filepath.Join(dir, p) }
