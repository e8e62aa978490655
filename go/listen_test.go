package roadrunner

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// inCgoCall reports whether some goroutine is in a C call (state syscall) whose stack
// holds fn.
func inCgoCall(fn string) bool {
	buf := make([]byte, 1<<20)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		if strings.Contains(header, "[syscall") && strings.Contains(g, fn) {
			return true
		}
	}
	return false
}

// A callback that calls a method of its Server (Stats) while a Listen waits for it to
// return and a Close is under way: none of the three may wait for another forever.
func TestListenCloseAndCallbackCallingStats(t *testing.T) {
	handles := atomic.LoadInt64(&liveHandles)
	s, err := NewServer(Config{Command: rustWorker(t), NumWorkers: 1, DestroyTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	release := make(chan struct{})
	statsErr := make(chan error, 1)
	var once sync.Once
	if err := s.Listen(func(Event) {
		first := false
		once.Do(func() { first = true })
		if !first {
			return
		}
		close(entered)
		<-release
		_, err := s.Stats()
		statsErr <- err
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered: // the callback runs, held until release
	case <-time.After(30 * time.Second):
		t.Fatal("no event came")
	}
	// A Listen that must wait in rr_server_listen for the running callback.
	listenErr := make(chan error, 1)
	go func() { listenErr <- s.Listen(func(Event) {}) }()
	waitFor(t, "Listen waiting in rr_server_listen", 30*time.Second, func() bool { return inCgoCall("rr_go_listen") })
	// A Close, up to the point where it has taken the server away from new calls or
	// waits to (a writer on life blocks new readers).
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	waitFor(t, "Close under way", 30*time.Second, func() bool {
		if !s.life.TryRLock() {
			return true // Close holds life or waits for it
		}
		gone := s.p == nil
		s.life.RUnlock()
		return gone
	})
	close(release) // the callback now calls Stats
	select {
	case <-closed:
	case <-time.After(60 * time.Second):
		t.Fatal("deadlock: Close, Listen and the callback's Stats did not return within 60s")
	}
	if err := <-listenErr; err != nil && !errors.Is(err, ErrState) {
		t.Fatalf("Listen: %v", err)
	}
	if err := <-statsErr; !errors.Is(err, ErrState) {
		t.Fatalf("Stats in the callback during Close: want ErrState, got %v", err)
	}
	if n := atomic.LoadInt64(&liveHandles); n != handles {
		t.Fatalf("%d listener handles left after Close, %d before", n, handles)
	}
	if c := children(); len(c) != 0 {
		t.Fatalf("child processes left after Close: %v", c)
	}
}
