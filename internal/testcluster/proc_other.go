//go:build !linux

package testcluster

import "syscall"

// sysProcAttr: only Linux has a parent-death signal; elsewhere a node left
// behind by a crashed test binary must be killed by hand.
func sysProcAttr() *syscall.SysProcAttr { return nil }
