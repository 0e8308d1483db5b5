//go:build unix && !linux

package chaos

import "syscall"

// childAttr puts member processes in their own process group; without
// Linux's parent-death signal, an aborted run may leave them running.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
