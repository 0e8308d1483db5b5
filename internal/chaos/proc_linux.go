package chaos

import "syscall"

// childAttr makes the kernel kill a member process when the test process
// dies, so that an aborted run leaves no members behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
