package roadrunner

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func v2Config(t *testing.T, workers int) Config {
	return Config{Command: rustWorker(t), NumWorkers: workers, Protocol: ProtocolV2,
		Env: map[string]string{"RR_TEST_PROTOCOL": "2"}, StreamTimeout: 2 * time.Second}
}

// readAll reads a stream to its end: the bodies of its chunks, and the error that ended it.
func readAll(st *Stream) ([]string, error) {
	var bodies []string
	for {
		chunk, ok, err := st.Next()
		if err != nil || !ok {
			return bodies, err
		}
		bodies = append(bodies, string(chunk.Body))
	}
}

func TestStream(t *testing.T) {
	s := newTestServer(t, v2Config(t, 1), true)
	for _, c := range contexts {
		ctx, cancel := c.ctx()
		st, err := s.Stream(ctx, []byte("!stream:7"), []byte(c.name))
		if err != nil {
			t.Fatal(err)
		}
		bodies, err := readAll(st)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want := []string{}
		for _, i := range "0123456" {
			want = append(want, c.name+"-"+string(i))
		}
		want = append(want, c.name+"-end")
		if strings.Join(bodies, ",") != strings.Join(want, ",") {
			t.Fatalf("%s: chunks %q, want %q", c.name, bodies, want)
		}
		// After the end: no more chunks, no error.
		if _, ok, err := st.Next(); ok || err != nil {
			t.Fatalf("%s: Next after the end: %v %v", c.name, ok, err)
		}
		st.Close()
		if _, _, err := st.Next(); !errors.Is(err, ErrState) {
			t.Fatalf("%s: Next after Close: want ErrState, got %v", c.name, err)
		}
		cancel()
	}
	// A stream that ends with a job error gives its chunks, then the *JobError.
	st, err := s.Stream(context.Background(), []byte("!stream-error:2"), []byte("bad"))
	if err != nil {
		t.Fatal(err)
	}
	bodies, err := readAll(st)
	st.Close()
	var je *JobError
	if len(bodies) != 2 || !errors.As(err, &je) || string(je.Data) != "bad" {
		t.Fatalf("stream-error: chunks %q, error %v", bodies, err)
	}
	// Exec joins a streamed answer.
	got, err := s.Exec(context.Background(), []byte("!stream:2"), []byte("x"))
	if err != nil || string(got.Body) != "x-0x-1x-end" {
		t.Fatalf("exec of a stream: %q %v", got.Body, err)
	}
}

func TestStreamCancelledByContext(t *testing.T) {
	s := newTestServer(t, v2Config(t, 1), true)
	log := &eventLog{}
	if err := s.Listen(log.add); err != nil {
		t.Fatal(err)
	}
	before := s.pids()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := s.Stream(ctx, []byte("!stream-until-stopped"), []byte("tick"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if chunk, ok, err := st.Next(); !ok || err != nil || string(chunk.Body) != "tick" {
			t.Fatalf("chunk %d: %q %v %v", i, chunk.Body, ok, err)
		}
	}
	cancel()
	_, ok, err := st.Next()
	if ok || !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after the cancel: %v %v", ok, err)
	}
	// The worker was asked to stop the stream, and did (it says so on stderr); it stays.
	waitFor(t, "the worker's word that the host stopped the stream", 10*time.Second, func() bool {
		return log.find(func(e Event) bool {
			return e.Type == EventWorkerStderr && strings.Contains(e.Message, "stream stopped by the host")
		})
	})
	st.Close()
	if now := s.pids(); len(now) != 1 || !now[keys(before)[0]] {
		t.Fatalf("a stopped stream replaced its worker: %v -> %v", before, now)
	}
	if got, err := s.Exec(context.Background(), []byte("after"), []byte("cancel")); err != nil || string(got.Body) != "cancel" {
		t.Fatalf("after the cancel: %v %v", got, err)
	}
	if stats, err := s.Stats(); err != nil || stats.TasksCancelled != 1 {
		t.Fatalf("stats: %+v %v", stats, err)
	}
}

// A Next waiting for a chunk that does not come returns when its context is done. The
// stream cannot be cancelled while the library waits in it (see Stream): ExecTTL ends the
// task, whose worker is replaced.
func TestStreamNextInterruptedByDeadline(t *testing.T) {
	cfg := v2Config(t, 1)
	cfg.ExecTTL = time.Second
	s := newTestServer(t, cfg, true)
	before := s.pids()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer scancel()
	st, err := s.Stream(sctx, []byte("!stream-hang"), []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	if chunk, ok, err := st.Next(); !ok || err != nil || string(chunk.Body) != "one" {
		t.Fatalf("first chunk: %q %v %v", chunk.Body, ok, err)
	}
	start := time.Now()
	_, ok, err := st.Next()
	if ok || !errors.Is(err, ErrCancelled) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next past the deadline: %v %v", ok, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Next returned %v after the deadline", d)
	}
	st.Close()
	waitFor(t, "the hung stream's worker replaced", 10*time.Second, func() bool {
		now := s.pids()
		return len(now) == 1 && !now[keys(before)[0]]
	})
	if got, err := s.Exec(ctx, []byte("after"), nil); err != nil || string(got.Context) != "after" {
		t.Fatalf("after: %v %v", got, err)
	}
}

// A V1 answer is a stream of one chunk.
func TestStreamOfV1Worker(t *testing.T) {
	s := newTestServer(t, Config{Command: rustWorker(t), NumWorkers: 1}, true)
	st, err := s.Stream(context.Background(), []byte("v1"), []byte("whole"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bodies, err := readAll(st)
	if err != nil || len(bodies) != 1 || bodies[0] != "whole" {
		t.Fatalf("%q %v", bodies, err)
	}
}

// Close frees the streams left open.
func TestCloseWithOpenStream(t *testing.T) {
	s := newTestServer(t, v2Config(t, 1), true)
	s.pids()
	st, err := s.Stream(context.Background(), []byte("!stream-until-stopped"), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := st.Next(); !ok || err != nil {
		t.Fatalf("%v %v", ok, err)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close with an open stream took %v", d)
	}
	if _, _, err := st.Next(); !errors.Is(err, ErrState) {
		t.Fatalf("Next of a stream of a closed server: %v", err)
	}
	st.Close() // a second Close does nothing
}

// Close ends a stream a Next is waiting in: the stop kills its worker after DestroyTimeout.
func TestCloseWithStreamInNext(t *testing.T) {
	cfg := v2Config(t, 1)
	cfg.DestroyTimeout = 200 * time.Millisecond
	s := newTestServer(t, cfg, true)
	s.pids()
	st, err := s.Stream(context.Background(), []byte("!stream-hang"), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := st.Next(); !ok || err != nil {
		t.Fatalf("%v %v", ok, err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := st.Next()
		done <- err
	}()
	waitFor(t, "the Next waiting in the library", 10*time.Second, func() bool {
		if st.mu.TryLock() {
			st.mu.Unlock()
			return false
		}
		return true
	})
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if err := <-done; !errors.Is(err, ErrWorker) {
		t.Fatalf("the Next in progress at Close: want ErrWorker, got %v", err)
	}
}

// A Stream still waiting for a worker returns when its context is done; the stream it
// opens later (here on the worker freed at cleanup) is closed at once.
func TestStreamOpenInterruptedByDeadline(t *testing.T) {
	s := newTestServer(t, v2Config(t, 1), true)
	occupy(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	st, err := s.Stream(ctx, []byte("!stream:3"), []byte("late"))
	if st != nil || !errors.Is(err, ErrCancelled) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want ErrCancelled wrapping context.DeadlineExceeded, got %v %v", st, err)
	}
	if d := time.Since(start); d < 190*time.Millisecond || d > 3*time.Second {
		t.Fatalf("a 200ms deadline returned after %v", d)
	}
	waitFor(t, "the abandoned stream waiting for a worker", 10*time.Second, func() bool {
		stats, err := s.Stats()
		return err == nil && stats.Waiting == 1
	})
}
