package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// service is one service process, started again after each kill.
type service struct {
	name string // "usage#1"
	bin  string
	args []string
	addr string // its HTTP address
	logs string // directory of its log files
	// group labels its lag metrics; "" for a service whose stalls are
	// not measured.
	group string

	starts  int
	rebinds int // restarts on a new address because the old one was taken
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process exited
	err     error         // its exit status, once done
	log     *os.File
}

// start starts the process, logging to <logs>/<name>.<n>.log.
func (s *service) start() error {
	s.starts++
	f, err := os.Create(filepath.Join(s.logs, fmt.Sprintf("%s.%d.log", strings.ReplaceAll(s.name, "#", ""), s.starts)))
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, append(s.args, "-http", s.addr)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting %s: %w", s.name, err)
	}
	s.cmd, s.log, s.done = cmd, f, make(chan struct{})
	go func() {
		s.err = cmd.Wait()
		f.Close()
		close(s.done)
	}()
	return nil
}

func (s *service) running() bool {
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// kill SIGKILLs the process and waits for it.
func (s *service) kill() {
	if !s.running() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// stop sends SIGTERM and waits up to timeout for a clean exit. A process
// that does not exit in time gets SIGQUIT, which makes a Go program write
// its goroutines to its log, then SIGKILL, and is reported.
func (s *service) stop(timeout time.Duration) error {
	if !s.running() {
		if s.done == nil {
			return nil
		}
		return s.exitError()
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return s.exitError()
	case <-time.After(timeout):
	}
	_ = s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.kill()
	}
	return fmt.Errorf("%s did not stop within %v of SIGTERM; its goroutines are in %s", s.name, timeout, s.log.Name())
}

func (s *service) exitError() error {
	if s.err != nil {
		return fmt.Errorf("%s exited with %v; last log lines:\n%s", s.name, s.err, s.tail())
	}
	return nil
}

// tail returns the end of the current log file.
func (s *service) tail() string {
	if s.log == nil {
		return ""
	}
	b, err := os.ReadFile(s.log.Name())
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-8):], "\n")
}

// url returns the URL of a path of the service's HTTP server.
func (s *service) url(path string) string { return "http://" + s.addr + path }

// waitReady waits until /readyz answers 200, failing early if the process
// exits.
func (s *service) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		code, _, err := get(rctx, s.url("/readyz"))
		cancel()
		if err == nil && code == http.StatusOK && s.running() {
			return nil
		}
		select {
		case <-s.done:
			if tail := s.tail(); !strings.Contains(tail, "address already in use") || s.rebinds >= 3 {
				return fmt.Errorf("%s exited while starting: %v; last log lines:\n%s", s.name, s.err, tail)
			}
			// Another process took the port after freeAddr let it go.
			s.rebinds++
			addr, err := freeAddr()
			if err != nil {
				return err
			}
			s.addr = addr
			if err := s.start(); err != nil {
				return err
			}
			continue
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v; last log lines:\n%s", s.name, timeout, s.tail())
		}
	}
}

// get returns the status and body of a GET, which ctx bounds.
func get(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// getJSON decodes the JSON body of a GET that must answer 200.
func getJSON(ctx context.Context, url string, v any) error {
	code, b, err := get(ctx, url)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", url, code, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, v)
}

// freeAddr returns a loopback address with a port that was free a moment
// ago, for a child's HTTP server.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// services are the binaries the demo runs.
var services = []string{"producer", "current", "usage", "query", "alerts"}

// build compiles the services into dir with the go command.
func build(ctx context.Context, dir string, race bool) error {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		// go run passes its GOROOT on to the program it runs.
		root := os.Getenv("GOROOT")
		if root == "" {
			return fmt.Errorf("finding the go command to build the services: %w", err)
		}
		goCmd = filepath.Join(root, "bin", "go")
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if race {
		args = append(args, "-race")
	}
	for _, s := range services {
		args = append(args, "github.com/kconsumer/kconsumer/examples/"+s)
	}
	cmd := exec.CommandContext(ctx, goCmd, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("building the services (run the demo inside the examples module, or pass -bin): %v\n%s", err, out)
	}
	return nil
}

// binaries checks that dir holds every service binary.
func binaries(dir string) error {
	var missing []string
	for _, s := range services {
		if _, err := os.Stat(filepath.Join(dir, s)); err != nil {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return errors.New("missing service binaries in " + dir + ": " + strings.Join(missing, ", "))
	}
	return nil
}
