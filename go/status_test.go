package roadrunner

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStatusAndMetrics(t *testing.T) {
	s := newTestServer(t, Config{Command: rustWorker(t), NumWorkers: 2, Name: "go-pool"}, false)
	if _, err := s.Status(); !errors.Is(err, ErrState) {
		t.Fatalf("status before start: want ErrState, got %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := s.Exec(context.Background(), []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	status, err := s.Status()
	if err != nil {
		t.Fatal(err)
	}
	if status["name"] != "go-pool" {
		t.Fatalf("name %v in %v", status["name"], status)
	}
	for _, key := range []string{"protocol", "relay", "workers_min", "workers_max", "waiting", "counters", "workers"} {
		if _, ok := status[key]; !ok {
			t.Fatalf("status lacks %q: %v", key, status)
		}
	}
	list, ok := status["workers"].([]any)
	if !ok || len(list) != 2 {
		t.Fatalf("workers: %v", status["workers"])
	}
	pids := s.pids()
	var execs int64
	for _, w := range list {
		m := w.(map[string]any)
		pid, err := m["pid"].(json.Number).Int64()
		if err != nil || !pids[pid] {
			t.Fatalf("status worker %v is not one of %v", m, pids)
		}
		n, _ := m["num_execs"].(json.Number).Int64()
		execs += n
		if m["state_name"] != "ready" || m["task_ms"] != nil {
			t.Fatalf("an idle worker: %v", m)
		}
	}
	if execs != 3 {
		t.Fatalf("status counts %d executions, want 3", execs)
	}
	metrics, err := s.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(metrics, "# EOF\n") || !strings.Contains(metrics, `pool="go-pool"`) ||
		!strings.Contains(metrics, "rr_workers") || !strings.Contains(metrics, "rr_tasks") {
		t.Fatalf("metrics:\n%s", metrics)
	}
}

// awaitStats waits (10s at most) until f holds for the server's Stats.
func (ts *testServer) awaitStats(what string, f func(Stats) bool) {
	ts.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := ts.Stats()
		if err != nil {
			ts.t.Fatal(err)
		}
		if f(st) {
			return
		}
		if time.Now().After(deadline) {
			ts.t.Fatalf("timed out waiting for %s; stats: %+v", what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRemoveWorker(t *testing.T) {
	s := newTestServer(t, Config{Command: rustWorker(t), NumWorkers: 1}, false)
	log := &eventLog{}
	if err := s.Listen(log.add); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	s.pids()
	if st, err := s.Stats(); err != nil || st.WorkersSpawned != 1 || st.RetiredRemoved != 0 {
		t.Fatalf("stats after start (want WorkersSpawned 1, RetiredRemoved 0): %+v %v", st, err)
	}
	if err := s.RemoveWorker(1, false); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("pid 1: want ErrInvalidArgument, got %v", err)
	}
	removed := func(pid int64) func() bool {
		return func() bool {
			return log.find(func(e Event) bool { return e.Type == EventWorkerRemoved && e.Pid == pid })
		}
	}
	// Killed during its task: the task fails with ErrWorker; the worker is replaced.
	done := make(chan error, 1)
	go func() {
		_, err := s.Exec(context.Background(), []byte("!hang"), nil)
		done <- err
	}()
	s.awaitState(WorkerWorking)
	old := s.pids()
	for pid := range old {
		if err := s.RemoveWorker(pid, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; !errors.Is(err, ErrWorker) {
		t.Fatalf("the killed worker's task: %v", err)
	}
	waitFor(t, "the removed worker replaced", 10*time.Second, func() bool {
		now := s.pids()
		return len(now) == 1 && !now[keys(old)[0]]
	})
	waitFor(t, "EventWorkerRemoved of the killed worker", 10*time.Second, removed(keys(old)[0]))
	s.awaitStats("RetiredRemoved 1 and WorkersSpawned 2", func(st Stats) bool {
		return st.RetiredRemoved == 1 && st.WorkersSpawned == 2
	})
	// Stopped after its task: the task finishes.
	done2 := make(chan error, 1)
	go func() {
		_, err := s.Exec(context.Background(), []byte("!sleep:300"), nil)
		done2 <- err
	}()
	s.awaitState(WorkerWorking)
	old = s.pids()
	if err := s.RemoveWorker(keys(old)[0], false); err != nil {
		t.Fatal(err)
	}
	if err := <-done2; err != nil {
		t.Fatalf("a task whose worker was stopped after it: %v", err)
	}
	waitFor(t, "the stopped worker replaced", 10*time.Second, func() bool {
		now := s.pids()
		return len(now) == 1 && !now[keys(old)[0]]
	})
	waitFor(t, "EventWorkerRemoved of the stopped worker", 10*time.Second, removed(keys(old)[0]))
	s.awaitStats("RetiredRemoved 2 and WorkersSpawned 3", func(st Stats) bool {
		return st.RetiredRemoved == 2 && st.WorkersSpawned == 3
	})
	if EventWorkerRemoved.String() != "worker removed" {
		t.Fatalf("name: %q", EventWorkerRemoved)
	}
}

func TestElasticPool(t *testing.T) {
	s := newTestServer(t, Config{Command: rustWorker(t), NumWorkers: 1, MaxWorkers: 3, SpawnRate: 2,
		ScaleAfter: 10 * time.Millisecond, ScaleIdle: 200 * time.Millisecond}, false)
	log := &eventLog{}
	if err := s.Listen(log.add); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if n := len(s.pids()); n != 1 {
		t.Fatalf("%d workers at start, want the floor 1", n)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	most := 0
	stop := make(chan struct{})
	go func() { // watch the pool grow, never past the ceiling
		for {
			select {
			case <-stop:
				return
			default:
			}
			if infos, err := s.Workers(); err == nil {
				mu.Lock()
				if len(infos) > most {
					most = len(infos)
				}
				mu.Unlock()
				for _, w := range infos {
					s.remember(w.Pid)
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := s.Exec(context.Background(), []byte("!sleep:300"), []byte(strconv.Itoa(i))); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	close(stop)
	mu.Lock()
	grown := most
	mu.Unlock()
	if grown < 2 || grown > 3 {
		t.Fatalf("the pool grew to %d workers, want 2 to 3", grown)
	}
	waitFor(t, "the extra workers retired", 10*time.Second, func() bool { return len(s.pids()) == 1 })
	// Every extra worker was spawned by a growth and retired by a shrink: the floor's
	// worker stays.
	s.awaitStats("RetiredShrink = WorkersSpawned - 1 >= 1", func(st Stats) bool {
		return st.WorkersSpawned >= uint64(grown) && st.RetiredShrink == st.WorkersSpawned-1
	})
	waitFor(t, "EventPoolGrow (pid -1)", 10*time.Second, func() bool {
		return log.find(func(e Event) bool { return e.Type == EventPoolGrow && e.Pid == -1 && e.Message != "" })
	})
	waitFor(t, "EventPoolShrink with a worker's pid", 10*time.Second, func() bool {
		return log.find(func(e Event) bool { return e.Type == EventPoolShrink && e.Pid > 0 })
	})
	if EventPoolGrow.String() != "pool grow" || EventPoolShrink.String() != "pool shrink" {
		t.Fatalf("names: %q %q", EventPoolGrow, EventPoolShrink)
	}
	// The untagged build refuses these fields; this one takes them, and checks them.
	_, err := NewServer(Config{Command: rustWorker(t), NumWorkers: 4, MaxWorkers: 2})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("max_workers below num_workers: %v", err)
	}
}
