package rrcgo

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testWorker is the Rust test worker: $RR_TEST_WORKER, else target/release/rr-test-worker.
func testWorker(t *testing.T) string {
	p := os.Getenv("RR_TEST_WORKER")
	if p == "" {
		p, _ = filepath.Abs("../../target/release/rr-test-worker")
	}
	if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("test worker %q not found or not executable (set RR_TEST_WORKER): %v", p, err)
	}
	return p
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

// waitFor polls cond until it holds or the deadline passes.
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

// noChildrenLeft is registered first in every test: it runs after the other cleanups
// (which free the servers) and fails if a child process, running or zombie, is left.
func noChildrenLeft(t *testing.T) {
	t.Helper()
	if c := children(); len(c) != 0 {
		t.Fatalf("children exist before the test: %v", c)
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			c := children()
			if len(c) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("child processes left 10s after the test (pid: state): %v", c)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

func newServer(t *testing.T, command string, workers uint64, start bool, l *Listener) *Server {
	t.Helper()
	cfg, err := NewConfig(command, "pipes")
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetNumWorkers(workers)
	s, err := NewServer(cfg)
	cfg.Free()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Free() })
	if l != nil {
		if err := s.Listen(l); err != nil {
			t.Fatal(err)
		}
	}
	if start {
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func statusOf(err error) uint32 {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return StatusOK
}

func TestVersion(t *testing.T) {
	noChildrenLeft(t)
	ma, mi, pa := VersionNumbers()
	if v := Version(); v != fmt.Sprintf("%d.%d.%d", ma, mi, pa) {
		t.Fatalf("rr_version() = %q, header says %d.%d.%d", v, ma, mi, pa)
	}
}

func TestConcurrentExec(t *testing.T) {
	noChildrenLeft(t)
	s := newServer(t, testWorker(t), 4, true, nil)
	const goroutines, tasks = 32, 200
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < tasks; i++ {
				ctx := []byte(fmt.Sprintf("g%d-t%d", g, i))
				body := bytes.Repeat([]byte{byte(g), byte(i), 0}, (g*tasks+i)%257)
				c, b, err := s.Exec(ctx, body)
				if err != nil {
					errs <- fmt.Errorf("goroutine %d task %d: %w", g, i, err)
					return
				}
				if !bytes.Equal(c, ctx) || !bytes.Equal(b, body) {
					errs <- fmt.Errorf("goroutine %d task %d: got %q / %d bytes", g, i, c, len(b))
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	infos, err := s.Workers()
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 4 {
		t.Fatalf("%d workers, want 4", len(infos))
	}
	var total uint64
	for _, w := range infos {
		total += w.NumExecs
		if w.State != WorkerStateReady {
			t.Errorf("worker %d in state %d after the tasks", w.Pid, w.State)
		}
	}
	if total != goroutines*tasks {
		t.Errorf("workers counted %d executions, want %d", total, goroutines*tasks)
	}
}

func TestEmptyAndLargeBuffers(t *testing.T) {
	noChildrenLeft(t)
	s := newServer(t, testWorker(t), 1, true, nil)
	c, b, err := s.Exec(nil, []byte{})
	if err != nil || len(c) != 0 || len(b) != 0 {
		t.Fatalf("empty task: %q %q %v", c, b, err)
	}
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 31)
	}
	c, b, err = s.Exec([]byte("big"), big)
	if err != nil || string(c) != "big" || !bytes.Equal(b, big) {
		t.Fatalf("1 MiB task: %q, %d bytes, %v", c, len(b), err)
	}
}

func TestJobError(t *testing.T) {
	noChildrenLeft(t)
	s := newServer(t, testWorker(t), 1, true, nil)
	_, pid1, err := s.Exec([]byte("!pid"), nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("go job \x00 failed")
	_, _, err = s.Exec([]byte("!error"), msg)
	var e *Error
	if !errors.As(err, &e) || e.Status != StatusJobError {
		t.Fatalf("want a job error, got %v", err)
	}
	if !bytes.Equal(e.Data, msg) {
		t.Fatalf("rr_error_data = %q, want %q", e.Data, msg)
	}
	if e.Message == "" || strings.HasPrefix(e.Message, "(") {
		t.Fatalf("bad message %q", e.Message)
	}
	_, pid2, err := s.Exec([]byte("!pid"), nil)
	if err != nil || !bytes.Equal(pid1, pid2) {
		t.Fatalf("worker not kept after a job error: %s then %s (%v)", pid1, pid2, err)
	}
}

func TestWorkerErrorAndStateError(t *testing.T) {
	noChildrenLeft(t)
	s := newServer(t, testWorker(t), 1, false, nil)
	if _, _, err := s.Exec([]byte("a"), []byte("b")); statusOf(err) != StatusState {
		t.Fatalf("exec before start: want RR_STATUS_STATE, got %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Exec([]byte("!crash"), nil); statusOf(err) != StatusWorkerError {
		t.Fatalf("crash: want RR_STATUS_WORKER_ERROR, got %v", err)
	}
	if c, b, err := s.Exec([]byte("x"), []byte("y")); err != nil || string(c) != "x" || string(b) != "y" {
		t.Fatalf("after a crash: %q %q %v", c, b, err)
	}
}

func TestEventsThroughCgoHandle(t *testing.T) {
	noChildrenLeft(t)
	handlesBefore := LiveHandles()
	l := &Listener{}
	s := newServer(t, testWorker(t), 2, true, l)
	infos, err := s.Workers()
	if err != nil || len(infos) != 2 {
		t.Fatalf("workers: %v %v", infos, err)
	}
	has := func(typ int32, pid int64) bool {
		for _, e := range l.Events() {
			if e.Type == typ && (pid == 0 || e.Pid == pid) {
				return true
			}
		}
		return false
	}
	waitFor(t, "RR_EVENT_SERVER_START", 10*time.Second, func() bool { return has(EventServerStart, 0) })
	for _, w := range infos {
		w := w
		waitFor(t, fmt.Sprintf("RR_EVENT_WORKER_CONSTRUCT for %d", w.Pid), 10*time.Second,
			func() bool { return has(EventWorkerConstruct, w.Pid) })
	}
	// A stderr line arrives as an event with its message.
	if _, _, err := s.Exec([]byte("!stderr:from-go-7781"), nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stderr event", 10*time.Second, func() bool {
		for _, e := range l.Events() {
			if e.HasMessage && strings.Contains(e.Message, "from-go-7781") {
				return true
			}
		}
		return false
	})
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "RR_EVENT_SERVER_STOP", 10*time.Second, func() bool { return has(EventServerStop, 0) })
	if m := l.MaxConcurrent(); m != 1 {
		t.Errorf("callbacks overlapped: %d at once", m)
	}
	if l.Freed() != 0 {
		t.Fatalf("userdata_free ran before the server was freed")
	}
	s.Free()
	if l.Freed() != 1 {
		t.Fatalf("userdata_free ran %d times, want 1", l.Freed())
	}
	if LiveHandles() != handlesBefore || BadUserdataFree() != 0 {
		t.Fatalf("handles: %d live (before %d), %d bad frees", LiveHandles(), handlesBefore, BadUserdataFree())
	}
}

func TestReplacingTheCallbackFreesTheOldHandle(t *testing.T) {
	noChildrenLeft(t)
	handlesBefore := LiveHandles()
	a, b := &Listener{}, &Listener{}
	s := newServer(t, testWorker(t), 1, false, a)
	if err := s.Listen(b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "userdata_free of the replaced callback", 10*time.Second, func() bool { return a.Freed() == 1 })
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "events reach the new callback", 10*time.Second, func() bool {
		for _, e := range b.Events() {
			if e.Type == EventServerStart {
				return true
			}
		}
		return false
	})
	if err := s.Unlisten(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "userdata_free of the unregistered callback", 10*time.Second, func() bool { return b.Freed() == 1 })
	s.Free()
	if a.Freed() != 1 || b.Freed() != 1 || LiveHandles() != handlesBefore || BadUserdataFree() != 0 {
		t.Fatalf("frees a=%d b=%d, live handles %d (before %d), bad frees %d",
			a.Freed(), b.Freed(), LiveHandles(), handlesBefore, BadUserdataFree())
	}
	for _, e := range a.Events() {
		if e.Type == EventServerStart {
			t.Fatalf("the replaced callback received an event after it was replaced: %+v", e)
		}
	}
}

// TestStreams runs rr_exec_stream against the test worker speaking protocol V2: the
// chunks in order, then the end; a cancelled stream says so, and its worker serves on.
func TestStreams(t *testing.T) {
	noChildrenLeft(t)
	cfg, err := NewConfig(testWorker(t), "pipes")
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetNumWorkers(1)
	if err := cfg.SetProtocol(ProtocolV2); err != nil {
		t.Fatal(err)
	}
	if err := cfg.SetProtocol(9); statusOf(err) != StatusInvalidArgument {
		t.Fatalf("protocol 9: %v", err)
	}
	if err := cfg.SetEnv("RR_TEST_PROTOCOL", "2"); err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(cfg)
	cfg.Free()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Free() })
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}

	st, err := s.ExecStream([]byte("!stream:4"), []byte("go"))
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for {
		_, body, ok, err := st.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		bodies = append(bodies, string(body))
	}
	st.Free()
	if got, want := strings.Join(bodies, ","), "go-0,go-1,go-2,go-3,go-end"; got != want {
		t.Fatalf("chunks %q, want %q", got, want)
	}

	st, err = s.ExecStream([]byte("!stream-until-stopped"), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok, err := st.Next(); !ok || err != nil {
		t.Fatalf("first chunk: %v %v", ok, err)
	}
	if err := st.Cancel(); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := st.Next(); statusOf(err) != StatusCancelled {
		t.Fatalf("after cancel: %v", err)
	}
	st.Free()
	ctx, body, err := s.Exec([]byte("after"), []byte("cancel"))
	if err != nil || string(ctx) != "after" || string(body) != "cancel" {
		t.Fatalf("after the cancel: %q %q %v", ctx, body, err)
	}
}
