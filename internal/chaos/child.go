//go:build unix

package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// envMember carries a child's memberConfig, as JSON. A test binary whose
// TestMain finds it runs ChildMain instead of its tests.
const envMember = "KCONSUMER_CHAOS_MEMBER"

// IsChild reports whether the process was started as a member by Run.
func IsChild() bool { return os.Getenv(envMember) != "" }

// ChildMain runs the member described by the environment until SIGTERM,
// writing its events to stdout and its log to stderr, and returns the exit
// code: 0 once Run returned, whatever it returned (the Stopped event says),
// 2 if the member could not be set up.
func ChildMain() int {
	var cfg memberConfig
	if err := json.Unmarshal([]byte(os.Getenv(envMember)), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "chaos member: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	out := &lineWriter{w: os.Stdout}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := runMember(ctx, cfg, out.emit, log)
	text := ""
	if err != nil {
		text = err.Error()
	}
	out.emit(Event{Kind: Stopped, Time: time.Now().UnixNano(), Text: text})
	if out.err != nil {
		return 2
	}
	return 0
}

// child is a member running in a child process.
type child struct {
	log  *memberLog
	cmd  *exec.Cmd
	done chan struct{} // closed once the process exited and its events are read
	err  error         // the process's exit, once done
}

// startChild starts the test binary as a member, logging to dir.
func startChild(cfg memberConfig, ml *memberLog, dir string) (*child, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, cfg.Name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envMember+"="+string(b))
	cmd.Stderr = logf
	cmd.SysProcAttr = childAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting member %s: %w", cfg.Name, err)
	}
	c := &child{log: ml, cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer logf.Close()
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 64<<10)
		for sc.Scan() {
			e, err := ParseEvent(sc.Text())
			if err != nil {
				ml.h.problem("member %s: %v", cfg.Name, err)
				continue
			}
			ml.add(e)
		}
		if err := sc.Err(); err != nil {
			ml.h.problem("member %s: reading events: %v", cfg.Name, err)
		}
		c.err = cmd.Wait()
	}()
	return c, nil
}

// kill SIGKILLs the process and waits until its events are read.
func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
	c.log.ended(killed)
}

// pause SIGSTOPs the process for d, then SIGCONTs it, and reports whether
// the process was stopped. The pause is over when it returns.
func (c *child) pause(d time.Duration) bool {
	if c.cmd.Process.Signal(syscall.SIGSTOP) != nil {
		return false
	}
	time.Sleep(d)
	_ = c.cmd.Process.Signal(syscall.SIGCONT)
	return true
}

// termKill sends SIGTERM and, unless the process exited by then, SIGKILL
// after grace, and waits until its events are read. It reports whether
// the SIGKILL was needed. A process that exited within grace ended as
// after stop.
func (c *child) termKill(grace time.Duration) (killed bool) {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
		c.exited()
		return false
	case <-t.C:
		c.kill()
		return true
	}
}

// exited records how a process that exited by itself after SIGTERM
// ended: stopped if Run returned (exit 0), else killed, as a process that
// the SIGTERM reached before it set up its handler is.
func (c *child) exited() {
	if c.err != nil {
		c.log.ended(killed)
		return
	}
	c.log.ended(stopped)
}

// stop sends SIGTERM and waits up to timeout for the process to exit; one
// that does not is killed and the failure returned.
func (c *child) stop(timeout time.Duration) error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.kill()
		return fmt.Errorf("member %s did not stop within %v of SIGTERM", c.log.name, timeout)
	}
	if c.err != nil && c.log.empty() && terminated(c.cmd.ProcessState) {
		// SIGTERM came before the member set up its handler: it never ran.
		c.log.ended(killed)
		return nil
	}
	c.log.ended(stopped)
	if c.err != nil {
		return fmt.Errorf("member %s exited with %v", c.log.name, c.err)
	}
	return nil
}

func terminated(ps *os.ProcessState) bool {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}
