package testcluster

import "syscall"

// sysProcAttr makes the kernel SIGKILL a node when the test binary exits,
// even if it panics or is killed before Stop runs, so no node outlives its
// test. (The signal is tied to the OS thread that started the process; Go
// keeps threads alive unless a goroutine exits while locked to one, which
// test code does not do.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
