package rrcgo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// newQueue makes a Queue closed at cleanup (before the servers made earlier are freed),
// and checks at the end that no goroutine is left: not the dispatcher, not a Submit.
func newQueue(t *testing.T) *Queue {
	t.Helper()
	q, err := NewQueue(20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		q.Close()
		if v := q.Violations(); len(v) != 0 {
			t.Errorf("the library broke the queue's contract: %v", v)
		}
		if n := q.Unexpected(); n != 0 {
			t.Errorf("%d completions came for no pending task", n)
		}
	})
	return q
}

// noGoroutineLeft is registered before the server and the queue: it runs after they are
// freed and waits for the goroutine count to fall back to where it was.
func noGoroutineLeft(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("%d goroutines left, %d before the test:\n%s", runtime.NumGoroutine(),
					before, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

func pids(t *testing.T, s *Server) map[int64]bool {
	t.Helper()
	infos, err := s.Workers()
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]bool{}
	for _, w := range infos {
		out[w.Pid] = true
	}
	return out
}

// cancelledCompletion checks that err is a *CancelledError wrapping want, whose task
// completed with RR_STATUS_CANCELLED.
func cancelledCompletion(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("want an error wrapping %v, got %v", want, err)
	}
	var ce *CancelledError
	if !errors.As(err, &ce) {
		t.Fatalf("want a *CancelledError, got %T %v", err, err)
	}
	c := ce.Completion
	if c == nil {
		t.Fatalf("no completion came for task %d after rr_queue_cancel", ce.Tag)
	}
	if c.Tag != ce.Tag || c.Status != StatusCancelled || statusOf(c.Err) != StatusCancelled ||
		c.Context != nil || c.Body != nil {
		t.Fatalf("completion after the cancel: %+v (err %v)", *c, c.Err)
	}
	if !strings.Contains(c.Err.Error(), "cancel") {
		t.Fatalf("cancelled task's message: %v", c.Err)
	}
}

// serves runs n concurrent tasks through q and checks every answer.
func serves(t *testing.T, q *Queue, s *Server, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, body := []byte(fmt.Sprintf("after-%d", i)), []byte(strings.Repeat("b", i))
			c, b, err := q.Submit(context.Background(), s, ctx, body)
			if err != nil || !bytes.Equal(c, ctx) || !bytes.Equal(b, body) {
				errs <- fmt.Errorf("task %d: %q %q %v", i, c, b, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestQueueConcurrentSubmits(t *testing.T) {
	noChildrenLeft(t)
	noGoroutineLeft(t)
	s := newServer(t, testWorker(t), 3, true, nil)
	q := newQueue(t)
	if fd := q.Fd(); fd < 0 {
		t.Fatalf("rr_queue_fd = %d", fd)
	}
	before := pids(t, s)
	const tasks = 300
	var wg sync.WaitGroup
	errs := make(chan error, tasks)
	for i := 0; i < tasks; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx := []byte(fmt.Sprintf("task-%d", i))
			if i%25 == 0 {
				ctx = []byte(fmt.Sprintf("!sleep:%d", i%7))
			}
			body := bytes.Repeat([]byte{byte(i), 0, 0xff}, i%513)
			c, b, err := q.Submit(context.Background(), s, ctx, body)
			if err != nil || !bytes.Equal(c, ctx) || !bytes.Equal(b, body) {
				errs <- fmt.Errorf("task %d: got %q / %d bytes, %v", i, c, len(b), err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := q.Pending(); n != 0 {
		t.Fatalf("%d tasks still pending", n)
	}
	infos, err := s.Workers()
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, w := range infos {
		total += w.NumExecs
		if !before[w.Pid] {
			t.Errorf("worker %d was not there before the tasks (%v)", w.Pid, before)
		}
	}
	if len(infos) != 3 || total != tasks {
		t.Fatalf("%d workers ran %d tasks, want 3 and %d", len(infos), total, tasks)
	}
}

func TestQueueContextDeadlineCancelsTheTask(t *testing.T) {
	noChildrenLeft(t)
	noGoroutineLeft(t)
	s := newServer(t, testWorker(t), 2, true, nil)
	q := newQueue(t)
	before := pids(t, s)

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := q.Submit(ctx, s, []byte("!hang"), []byte("forever"))
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("Submit returned %v after its deadline", d)
	}
	cancelledCompletion(t, err, context.DeadlineExceeded)

	// The pool serves on, while the hung worker is replaced.
	serves(t, q, s, 50)
	waitFor(t, "the cancelled worker replaced and reaped", 10*time.Second, func() bool {
		return len(pids(t, s)) == 2 && len(children()) == 2
	})
	kept := 0
	for pid := range pids(t, s) {
		if before[pid] {
			kept++
		}
	}
	if kept != 1 {
		t.Fatalf("workers before %v, after %v: want exactly one replaced", before, pids(t, s))
	}
	serves(t, q, s, 10)
}

func TestQueueContextCancelOfARunningAndAWaitingTask(t *testing.T) {
	noChildrenLeft(t)
	noGoroutineLeft(t)
	s := newServer(t, testWorker(t), 1, true, nil)
	q := newQueue(t)
	before := pids(t, s)

	type result struct {
		err error
		at  time.Time
	}
	run := func(ctx context.Context, c string) <-chan result {
		out := make(chan result, 1)
		go func() {
			_, _, err := q.Submit(ctx, s, []byte(c), nil)
			out <- result{err, time.Now()}
		}()
		return out
	}
	ctxRunning, cancelRunning := context.WithCancel(context.Background())
	defer cancelRunning()
	running := run(ctxRunning, "!sleep:5000")
	waitFor(t, "the task running", 5*time.Second, func() bool {
		infos, err := s.Workers()
		return err == nil && len(infos) == 1 && infos[0].State == WorkerStateWorking
	})
	ctxWaiting, cancelWaiting := context.WithCancel(context.Background())
	defer cancelWaiting()
	waiting := run(ctxWaiting, "never runs")
	waitFor(t, "the second task submitted", 5*time.Second, func() bool { return q.Pending() == 2 })

	// The waiting one first: it never runs, and its worker is not touched.
	cancelWaiting()
	r := <-waiting
	cancelledCompletion(t, r.err, context.Canceled)
	if p := pids(t, s); len(p) != 1 || !before[firstKey(p)] {
		t.Fatalf("cancelling a waiting task changed the workers: %v -> %v", before, p)
	}
	select {
	case r := <-running:
		t.Fatalf("the running task ended: %v", r.err)
	default:
	}

	// Then the running one: its worker is killed and replaced.
	at := time.Now()
	cancelRunning()
	r = <-running
	if d := r.at.Sub(at); d > 4*time.Second {
		t.Fatalf("Submit returned %v after its cancel", d)
	}
	cancelledCompletion(t, r.err, context.Canceled)
	_, pid, err := q.Submit(context.Background(), s, []byte("!pid"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := strconv.ParseInt(string(pid), 10, 64); err != nil || before[n] {
		t.Fatalf("the cancelled task's worker %s still serves", pid)
	}
	serves(t, q, s, 20)
}

func firstKey(m map[int64]bool) int64 {
	for k := range m {
		return k
	}
	return 0
}

func TestQueueJobAndWorkerErrors(t *testing.T) {
	noChildrenLeft(t)
	noGoroutineLeft(t)
	s := newServer(t, testWorker(t), 2, true, nil)
	q := newQueue(t)
	msg := []byte("go job \x00 says no")
	_, _, err := q.Submit(context.Background(), s, []byte("!error"), msg)
	var e *Error
	if !errors.As(err, &e) || e.Status != StatusJobError {
		t.Fatalf("want a job error, got %v", err)
	}
	if !bytes.Equal(e.Data, msg) || !strings.Contains(e.Message, "go job") || strings.HasPrefix(e.Message, "(") {
		t.Fatalf("job error: data %q, message %q", e.Data, e.Message)
	}
	_, _, err = q.Submit(context.Background(), s, []byte("!crash"), nil)
	if statusOf(err) != StatusWorkerError || !strings.Contains(err.Error(), "crash requested") {
		t.Fatalf("crash: want RR_STATUS_WORKER_ERROR with the worker's stderr, got %v", err)
	}
	serves(t, q, s, 20)
}

func TestQueueSubmitRefusedPostsNothing(t *testing.T) {
	noChildrenLeft(t)
	noGoroutineLeft(t)
	s := newServer(t, testWorker(t), 1, false, nil)
	q := newQueue(t)
	if _, _, err := q.Submit(context.Background(), s, []byte("a"), []byte("b")); statusOf(err) != StatusState {
		t.Fatalf("submit before start: want RR_STATUS_STATE, got %v", err)
	}
	time.Sleep(50 * time.Millisecond) // two polls of the dispatcher
	if q.Pending() != 0 || q.Unexpected() != 0 {
		t.Fatalf("a refused task left %d pending, %d completions", q.Pending(), q.Unexpected())
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	serves(t, q, s, 5)
}

func TestQueueCloseWithOutstandingTasks(t *testing.T) {
	noChildrenLeft(t)
	noGoroutineLeft(t)
	s := newServer(t, testWorker(t), 2, true, nil)
	q, err := NewQueue(20)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	errs := make(chan error, 3)
	for i, c := range []string{"!hang", "!sleep:5000", "waits in line"} {
		c := c
		go func() {
			_, _, err := q.Submit(context.Background(), s, []byte(c), nil)
			errs <- err
		}()
		// One after the other: the last one must find both workers busy.
		waitFor(t, fmt.Sprintf("task %q submitted", c), 5*time.Second, func() bool { return q.Pending() == i+1 })
	}
	start := time.Now()
	q.Close()
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("Close took %v", d)
	}
	for i := 0; i < 3; i++ {
		if err := <-errs; !errors.Is(err, ErrQueueClosed) {
			t.Fatalf("a task of a closed queue: %v", err)
		}
	}
	if _, _, err := q.Submit(context.Background(), s, []byte("late"), nil); !errors.Is(err, ErrQueueClosed) {
		t.Fatalf("submit after close: %v", err)
	}
	if q.Fd() != -1 || len(q.Violations()) != 0 || q.Unexpected() != 0 {
		t.Fatalf("fd %d, violations %v, unexpected %d", q.Fd(), q.Violations(), q.Unexpected())
	}
	// The two killed workers are replaced, and the pool serves rr_exec and a new queue.
	if c, b, err := s.Exec([]byte("x"), []byte("y")); err != nil || string(c) != "x" || string(b) != "y" {
		t.Fatalf("exec after close: %q %q %v", c, b, err)
	}
	waitFor(t, "the killed workers replaced and reaped", 10*time.Second, func() bool {
		return len(pids(t, s)) == 2 && len(children()) == 2
	})
	serves(t, newQueue(t), s, 10)
}
