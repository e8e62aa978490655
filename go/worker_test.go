package roadrunner

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The worker side, through the Go test worker (internal/testworker) run by a server.

func TestWorkerSideV1(t *testing.T) {
	s := newTestServer(t, Config{Command: goWorker(), NumWorkers: 2}, false)
	log := &eventLog{}
	if err := s.Listen(log.add); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	// Echo, from many goroutines.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			ctx, cancel := contexts[g%2].ctx()
			defer cancel()
			for i := 0; i < 20; i++ {
				body := bytes.Repeat([]byte{byte(g), byte(i)}, g*i)
				got, err := s.Exec(ctx, []byte("go"), body)
				if err != nil || string(got.Context) != "go" || !bytes.Equal(got.Body, body) {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("echo through the Go worker: %v", err)
	}
	// Error: a *JobError with the worker's bytes.
	_, err := s.Exec(context.Background(), []byte("!error"), []byte("go \xff says no"))
	var je *JobError
	if !errors.As(err, &je) || string(je.Data) != "go \xff says no" {
		t.Fatalf("job error from the Go worker: %v", err)
	}
	// The worker side's own errors, seen by the worker and sent back as its answer.
	for command, want := range map[string]string{"!chunk-v1": "ErrInvalidArgument", "!receive-twice": "ErrState"} {
		got, err := s.Exec(context.Background(), []byte(command), nil)
		if err != nil || string(got.Body) != want {
			t.Fatalf("%s: the worker saw %q (%v), want %s", command, got.Body, err, want)
		}
	}
	// Stdout of a Go worker goes to stderr, not into the relay.
	if _, err := s.Exec(context.Background(), []byte("!stderr:printed-by-go"), nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the printed line as a stderr event", 10*time.Second, func() bool {
		return log.find(func(e Event) bool { return e.Type == EventWorkerStderr && e.Message == "printed-by-go" })
	})
	// Crash: ErrWorker, the worker's stderr in the message.
	if _, err := s.Exec(context.Background(), []byte("!crash"), nil); !errors.Is(err, ErrWorker) ||
		!strings.Contains(err.Error(), "crash requested") {
		t.Fatalf("crash of the Go worker: %v", err)
	}
}

func TestWorkerSideV2Stream(t *testing.T) {
	s := newTestServer(t, Config{Command: goWorker("-protocol", "2"), NumWorkers: 1, Protocol: ProtocolV2}, false)
	log := &eventLog{}
	if err := s.Listen(log.add); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stream(context.Background(), []byte("!stream:12"), []byte("g"))
	if err != nil {
		t.Fatal(err)
	}
	bodies, err := readAll(st)
	st.Close()
	if err != nil || len(bodies) != 13 || bodies[0] != "g-0" || bodies[11] != "g-11" || bodies[12] != "g-end" {
		t.Fatalf("stream from the Go worker: %q %v", bodies, err)
	}
	// The host stops a stream: SendChunk says ErrCancelled on the worker side.
	ctx, cancel := context.WithCancel(context.Background())
	st, err = s.Stream(ctx, []byte("!stream-until-stopped"), []byte("t"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := st.Next(); !ok || err != nil {
		t.Fatalf("%v %v", ok, err)
	}
	cancel()
	waitFor(t, "the Go worker seeing ErrCancelled", 10*time.Second, func() bool {
		return log.find(func(e Event) bool { return e.Type == EventWorkerStderr && e.Message == "stopped: true" })
	})
	st.Close()
	got, err := s.Exec(context.Background(), []byte("v2"), []byte("after"))
	if err != nil || string(got.Body) != "after" {
		t.Fatalf("after the stopped stream: %v %v", got, err)
	}
	// A V1 Go worker on a V2 pool fails its handshake.
	bad := Config{Command: goWorker("-protocol", "1"), NumWorkers: 1, Protocol: ProtocolV2}
	if err := s.Reconfigure(bad); !errors.Is(err, ErrSpawn) {
		t.Fatalf("V1 worker on a V2 pool: %v", err)
	}
}

// The worker side over a socket relay.
func TestWorkerSideUnixRelay(t *testing.T) {
	relay := "unix://" + t.TempDir() + "/rr.sock"
	s := newTestServer(t, Config{Command: goWorker(), Relay: relay, NumWorkers: 2}, true)
	got, err := s.Exec(context.Background(), []byte("unix"), []byte("socket"))
	if err != nil || string(got.Body) != "socket" {
		t.Fatalf("%v %v", got, err)
	}
}

func TestNewWorkerErrors(t *testing.T) {
	if _, err := NewWorker("carrier-pigeon://x", ProtocolV1); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad relay: %v", err)
	}
	if _, err := NewWorker("pipes", 3); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("protocol 3: %v", err)
	}
	if _, err := NewWorker("unix://"+t.TempDir()+"/nobody.sock", ProtocolV1); !errors.Is(err, ErrWorker) {
		t.Fatalf("nobody listening: %v", err)
	}
}

// Stop: the worker asks to be replaced; its task runs on another worker (with one worker in
// the pool: on its replacement).
func TestWorkerSideStop(t *testing.T) {
	s := newTestServer(t, Config{Command: goWorker(), NumWorkers: 1}, true)
	pidOf := func() int64 {
		got, err := s.Exec(context.Background(), []byte("!pid"), nil)
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.ParseInt(string(got.Body), 10, 64)
		s.remember(pid)
		return pid
	}
	stopping := pidOf()
	got, err := s.Exec(context.Background(), []byte("!stop-if:"+strconv.FormatInt(stopping, 10)), nil)
	if err != nil {
		t.Fatalf("a task whose worker asked to stop: %v", err)
	}
	other, _ := strconv.ParseInt(string(got.Body), 10, 64)
	s.remember(other)
	if other == stopping || other == 0 {
		t.Fatalf("the task rerouted from %d was answered by %d", stopping, other)
	}
	waitFor(t, "the worker that asked to stop replaced", 10*time.Second, func() bool {
		now := s.pids()
		return len(now) == 1 && !now[stopping] && now[other]
	})
	if st, err := s.Stats(); err != nil || st.RetiredStopRequested != 1 {
		t.Fatalf("stats after a stop request: %+v %v", st, err)
	}
}
