package roadrunner

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// goWorkerPath is the test worker written with this package (internal/testworker), built
// by TestMain.
var goWorkerPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "roadrunner-go-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	goWorkerPath = filepath.Join(dir, "testworker")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		goTool = p
	}
	build := exec.Command(goTool, "build", "-o", goWorkerPath, "./internal/testworker")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the Go test worker:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// quote quotes a path for a Config.Command (split like a shell would).
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// rustWorker is the command of the library's test worker (docs/test-worker.md):
// $RR_TEST_WORKER, else ../target/release/rr-test-worker; args are appended.
func rustWorker(t *testing.T, args ...string) string {
	t.Helper()
	p := os.Getenv("RR_TEST_WORKER")
	if p == "" {
		p, _ = filepath.Abs("../target/release/rr-test-worker")
	}
	if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("test worker %q not found or not executable (set RR_TEST_WORKER): %v", p, err)
	}
	return strings.Join(append([]string{quote(p)}, args...), " ")
}

// goWorker is the command of the Go test worker; args are appended.
func goWorker(args ...string) string {
	return strings.Join(append([]string{quote(goWorkerPath)}, args...), " ")
}

// children lists the processes whose parent is this process, zombies included.
func children() map[int]string {
	out := map[int]string{}
	me := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == me {
			out[pid] = fields[0]
		}
	}
	return out
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testServer is a Server under test: it remembers every worker pid it has seen, and at
// cleanup closes the server and checks that none of them is left, that this process has
// no child left, and that no goroutine of the test is left.
type testServer struct {
	*Server
	t    *testing.T
	mu   sync.Mutex
	seen map[int64]bool
}

// newTestServer makes (and, when start, starts) a server; it is closed at cleanup.
func newTestServer(t *testing.T, cfg Config, start bool) *testServer {
	t.Helper()
	if c := children(); len(c) != 0 {
		t.Fatalf("child processes exist before the test: %v", c)
	}
	goroutines := runtime.NumGoroutine()
	handles := atomic.LoadInt64(&liveHandles)
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: s, t: t, seen: map[int64]bool{}}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if n := atomic.LoadInt64(&liveHandles); n != handles {
			t.Errorf("%d listener handles left after Close, %d before", n, handles)
		}
		ts.mu.Lock()
		seen := ts.seen
		ts.mu.Unlock()
		for pid := range seen {
			if err := syscall.Kill(int(pid), 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("worker %d is still there after Close (kill 0: %v)", pid, err)
			}
		}
		if c := children(); len(c) != 0 {
			t.Errorf("child processes left after Close (pid: state): %v", c)
		}
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > goroutines {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("%d goroutines after Close, %d before the server:\n%s", runtime.NumGoroutine(),
					goroutines, buf[:runtime.Stack(buf, true)])
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	if start {
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		ts.pids() // the first workers are checked at cleanup too
	}
	return ts
}

// pids is the set of the current workers' pids (remembered for the cleanup's check).
func (ts *testServer) pids() map[int64]bool {
	ts.t.Helper()
	infos, err := ts.Workers()
	if err != nil {
		ts.t.Fatal(err)
	}
	out := map[int64]bool{}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, w := range infos {
		out[w.Pid] = true
		ts.seen[w.Pid] = true
	}
	return out
}

// remember adds a pid learnt otherwise (e.g. from a task's answer).
func (ts *testServer) remember(pid int64) {
	ts.mu.Lock()
	ts.seen[pid] = true
	ts.mu.Unlock()
}

// onlyWorking waits until the pool's only worker is running a task.
func (ts *testServer) awaitState(want WorkerState) {
	ts.t.Helper()
	waitFor(ts.t, "a worker in state "+want.String(), 10*time.Second, func() bool {
		infos, err := ts.Workers()
		if err != nil {
			return false
		}
		for _, w := range infos {
			if w.State == want {
				return true
			}
		}
		return false
	})
}

func keys(m map[int64]bool) []int64 {
	out := make([]int64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// eventLog collects the events of a server.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) find(match func(Event) bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if match(e) {
			return true
		}
	}
	return false
}

func (l *eventLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
