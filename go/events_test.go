package roadrunner

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestEvents(t *testing.T) {
	s := newTestServer(t, Config{Command: rustWorker(t), NumWorkers: 2}, false)
	log := &eventLog{}
	var inside, overlapped int32
	if err := s.Listen(func(e Event) {
		if atomic.AddInt32(&inside, 1) > 1 {
			atomic.StoreInt32(&overlapped, 1)
		}
		log.add(e)
		atomic.AddInt32(&inside, -1)
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	has := func(typ EventType, pid int64) func() bool {
		return func() bool {
			return log.find(func(e Event) bool { return e.Type == typ && (pid == 0 || e.Pid == pid) })
		}
	}
	waitFor(t, "server start", 10*time.Second, has(EventServerStart, 0))
	for pid := range s.pids() {
		waitFor(t, fmt.Sprintf("worker construct of %d", pid), 10*time.Second, has(EventWorkerConstruct, pid))
	}
	if _, err := s.Exec(context.Background(), []byte("!stderr:from-go-4242"), nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stderr line", 10*time.Second, func() bool {
		return log.find(func(e Event) bool { return e.Type == EventWorkerStderr && e.Message == "from-go-4242" })
	})
	before := s.pids()
	if _, err := s.Exec(context.Background(), []byte("!crash"), nil); err == nil {
		t.Fatal("crash: no error")
	}
	waitFor(t, "an event about the failed worker", 10*time.Second, func() bool {
		return log.find(func(e Event) bool {
			return (e.Type == EventWorkerError || e.Type == EventWorkerDead) && before[e.Pid]
		})
	})
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "server stop", 10*time.Second, has(EventServerStop, 0))
	if atomic.LoadInt32(&overlapped) != 0 {
		t.Fatal("two callbacks ran at once")
	}
	if EventServerStart.String() != "server start" || EventType(999).String() != "event 999" {
		t.Fatalf("names: %v %v", EventServerStart, EventType(999))
	}

	// Replaced: the old function receives nothing more; nil unregisters.
	second := &eventLog{}
	if err := s.Listen(second.add); err != nil {
		t.Fatal(err)
	}
	n := log.count()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "server start on the new listener", 10*time.Second, func() bool {
		return second.find(func(e Event) bool { return e.Type == EventServerStart })
	})
	if log.count() != n {
		t.Fatalf("the replaced listener received %d more events", log.count()-n)
	}
	if err := s.Listen(nil); err != nil {
		t.Fatal(err)
	}
	m := second.count()
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	s.pids()
	if second.count() != m {
		t.Fatalf("an unregistered listener received %d events", second.count()-m)
	}
}

func TestResetAndReconfigure(t *testing.T) {
	cfg := Config{Command: rustWorker(t), NumWorkers: 2}
	s := newTestServer(t, cfg, true)
	first := s.pids()
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	second := s.pids()
	if len(second) != 2 {
		t.Fatalf("%d workers after reset", len(second))
	}
	for pid := range second {
		if first[pid] {
			t.Fatalf("worker %d survived the reset (%v -> %v)", pid, first, second)
		}
	}
	// A new setting reaches the new workers.
	cfg.NumWorkers = 3
	cfg.Env = map[string]string{"RR_GO_RECONFIGURED": "yes-3"}
	if err := s.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	third := s.pids()
	if len(third) != 3 {
		t.Fatalf("%d workers after reconfigure, want 3", len(third))
	}
	for pid := range third {
		if second[pid] {
			t.Fatalf("worker %d survived the reconfigure", pid)
		}
	}
	got, err := s.Exec(context.Background(), []byte("!env:RR_GO_RECONFIGURED"), nil)
	if err != nil || string(got.Body) != "yes-3" {
		t.Fatalf("env after reconfigure: %q %v", got.Body, err)
	}
	// An invalid config is refused and the pool keeps running.
	bad := cfg
	bad.JitterPercent = 300
	if err := s.Reconfigure(bad); !errorsIs(err, ErrConfig) {
		t.Fatalf("invalid reconfigure: %v", err)
	}
	// A pool whose workers cannot start is not swapped in.
	bad = cfg
	bad.Command = rustWorker(t, "failboot")
	if err := s.Reconfigure(bad); !errorsIs(err, ErrSpawn) {
		t.Fatalf("reconfigure to failing workers: %v", err)
	}
	if now := s.pids(); fmt.Sprint(len(now)) != "3" {
		t.Fatalf("workers after refused reconfigures: %v", now)
	}
	for pid := range s.pids() {
		if !third[pid] {
			t.Fatalf("a refused reconfigure changed the workers: %v -> %v", third, s.pids())
		}
	}
	if st, err := s.Stats(); err != nil || st.Workers != 3 {
		t.Fatalf("stats: %+v %v", st, err)
	}
	// The relay is the listener's: a reconfigure ignores it, as RoadRunner's does, and
	// applies the rest.
	moved := cfg
	moved.Relay = "unix://" + t.TempDir() + "/rr.sock"
	moved.NumWorkers = 2
	if !cfg.Differs(moved) {
		t.Fatal("Differs: a new relay needs a new server")
	}
	log := &eventLog{}
	if err := s.Listen(log.add); err != nil {
		t.Fatal(err)
	}
	if err := s.Reconfigure(moved); err != nil {
		t.Fatalf("reconfigure with another relay: %v", err)
	}
	ignored := func(e Event) bool { return e.Type == EventReconfigureIgnored }
	waitFor(t, "EventReconfigureIgnored", 10*time.Second, func() bool { return log.find(ignored) })
	log.mu.Lock()
	for _, e := range log.events {
		if ignored(e) && (e.Pid != -1 || !strings.Contains(e.Message, "rr.sock")) {
			t.Errorf("EventReconfigureIgnored: pid %d (want -1), message %q (want the relays)", e.Pid, e.Message)
		}
	}
	log.mu.Unlock()
	if EventReconfigureIgnored.String() != "reconfigure ignored" {
		t.Fatalf("name: %q", EventReconfigureIgnored)
	}
	// A reconfigure with the same relay says nothing of it. Events come in order: one it
	// would emit is queued before it returns, so before the stderr line of a later task.
	same := moved
	same.Relay = "pipe"
	n := log.count()
	if err := s.Reconfigure(same); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Exec(context.Background(), []byte("!stderr:after-same-relay"), nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stderr line after the second reconfigure", 10*time.Second, func() bool {
		return log.find(func(e Event) bool { return e.Type == EventWorkerStderr && e.Message == "after-same-relay" })
	})
	log.mu.Lock()
	for _, e := range log.events[n:] {
		if ignored(e) {
			t.Errorf("EventReconfigureIgnored for a reconfigure with the same relay: %+v", e)
		}
	}
	log.mu.Unlock()
	if now := s.pids(); len(now) != 2 {
		t.Fatalf("workers after a reconfigure that ignored the relay: %v", now)
	}
	got, err = s.Exec(context.Background(), []byte("!env:RR_GO_RECONFIGURED"), nil)
	if err != nil || string(got.Body) != "yes-3" {
		t.Fatalf("exec over the kept relay: %q %v", got.Body, err)
	}
}

func TestVersionAndNames(t *testing.T) {
	if v := Version(); v != HeaderVersion() {
		t.Fatalf("library %s, header %s", v, HeaderVersion())
	}
	if StatusTimeout.String() != "timeout" || WorkerReady.String() != "ready" || WorkerState(99).String() != "unknown" {
		t.Fatalf("names: %q %q %q", StatusTimeout, WorkerReady, WorkerState(99))
	}
	// Every status maps to exactly one sentinel.
	all := []error{ErrJob, ErrWorker, ErrNoFreeWorker, ErrConfig, ErrSpawn, ErrState, ErrExecTTL,
		ErrQueueFull, ErrCancelled, ErrInvalidArgument, ErrInternal}
	for st := StatusJobError; st <= StatusCancelled; st++ {
		err := fromC("test", st, nil)
		matches := 0
		for _, s := range all {
			if errorsIs(err, s) {
				matches++
			}
		}
		if matches != 1 {
			t.Fatalf("status %v matches %d sentinels", st, matches)
		}
	}
}
