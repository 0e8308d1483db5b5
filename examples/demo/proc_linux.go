package main

import "syscall"

// childAttr makes the kernel kill a child when the demo dies, so a killed
// demo leaves no services behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
