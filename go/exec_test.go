package roadrunner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// contexts are the two ways Exec runs a task: rr_exec on the caller's goroutine (a context
// that is never done) and the completion queue (a context that can be done).
var contexts = []struct {
	name string
	ctx  func() (context.Context, context.CancelFunc)
}{
	{"blocking", func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
	{"queue", func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), time.Minute)
	}},
}

func TestExecEcho(t *testing.T) {
	s := newTestServer(t, Config{Command: rustWorker(t), NumWorkers: 2}, true)
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 31)
	}
	for _, c := range contexts {
		ctx, cancel := c.ctx()
		for _, task := range []Payload{
			{Context: []byte(`{"id":1}`), Body: []byte("hello \x00 world")},
			{Context: nil, Body: nil},
			{Context: []byte("big"), Body: big},
		} {
			got, err := s.Exec(ctx, task.Context, task.Body)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if !bytes.Equal(got.Context, task.Context) || !bytes.Equal(got.Body, task.Body) || got.Codec != CodecRaw {
				t.Fatalf("%s: sent %q/%d bytes, got %q/%d bytes, codec %d", c.name, task.Context, len(task.Body),
					got.Context, len(got.Body), got.Codec)
			}
		}
		cancel()
	}
	st, err := s.Stats()
	if err != nil || st.TasksDone != 6 || st.Workers != 2 {
		t.Fatalf("stats after 6 tasks: %+v %v", st, err)
	}
}

func TestExecConcurrent(t *testing.T) {
	s := newTestServer(t, Config{Command: rustWorker(t), NumWorkers: 3}, true)
	before := s.pids()
	const goroutines, tasks = 24, 60
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			ctx, cancel := contexts[g%2].ctx()
			defer cancel()
			for i := 0; i < tasks; i++ {
				head := []byte(fmt.Sprintf("g%d-t%d", g, i))
				body := bytes.Repeat([]byte{byte(g), byte(i), 0}, (g*tasks+i)%301)
				got, err := s.Exec(ctx, head, body)
				if err != nil {
					errs <- fmt.Errorf("goroutine %d task %d: %w", g, i, err)
					return
				}
				if !bytes.Equal(got.Context, head) || !bytes.Equal(got.Body, body) {
					errs <- fmt.Errorf("goroutine %d task %d: got %q / %d bytes", g, i, got.Context, len(got.Body))
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
	var total uint64
	for _, w := range infos {
		total += w.NumExecs
		if !before[w.Pid] || w.State != WorkerReady {
			t.Errorf("worker %d (state %v) was not there before, or is not ready", w.Pid, w.State)
		}
	}
	if len(infos) != 3 || total != goroutines*tasks {
		t.Fatalf("%d workers ran %d tasks, want 3 and %d", len(infos), total, goroutines*tasks)
	}
	if st, err := s.Stats(); err != nil || st.TasksDone != goroutines*tasks {
		t.Fatalf("stats: %+v %v", st, err)
	}
}

func TestJobError(t *testing.T) {
	s := newTestServer(t, Config{Command: rustWorker(t), NumWorkers: 1}, true)
	first := s.pids()
	for _, c := range contexts {
		ctx, cancel := c.ctx()
		msg := []byte("job \x00 failed in " + c.name)
		_, err := s.Exec(ctx, []byte("!error"), msg)
		cancel()
		var je *JobError
		if !errors.As(err, &je) || !errors.Is(err, ErrJob) {
			t.Fatalf("%s: want a *JobError, got %T %v", c.name, err, err)
		}
		if !bytes.Equal(je.Data, msg) || je.Message == "" {
			t.Fatalf("%s: data %q (want %q), message %q", c.name, je.Data, msg, je.Message)
		}
		for _, other := range []error{ErrWorker, ErrCancelled, ErrState} {
			if errors.Is(err, other) {
				t.Fatalf("%s: a job error matches %v", c.name, other)
			}
		}
	}
	if after := s.pids(); fmt.Sprint(keys(after)) != fmt.Sprint(keys(first)) {
		t.Fatalf("the worker was replaced after job errors: %v -> %v", first, after)
	}
	if st, err := s.Stats(); err != nil || st.JobErrors != 2 {
		t.Fatalf("stats: %+v %v", st, err)
	}
}

func TestErrWorker(t *testing.T) {
	s := newTestServer(t, Config{Command: rustWorker(t), NumWorkers: 1}, true)
	for _, c := range contexts {
		before := s.pids()
		ctx, cancel := c.ctx()
		_, err := s.Exec(ctx, []byte("!crash"), nil)
		cancel()
		var e *Error
		if !errors.Is(err, ErrWorker) || !errors.As(err, &e) || e.Status != StatusWorkerError {
			t.Fatalf("%s: want ErrWorker, got %v", c.name, err)
		}
		if !strings.Contains(err.Error(), "crash requested") {
			t.Fatalf("%s: the message lacks the worker's stderr: %v", c.name, err)
		}
		waitFor(t, "the crashed worker replaced", 10*time.Second, func() bool {
			now := s.pids()
			return len(now) == 1 && !now[keys(before)[0]]
		})
	}
	if got, err := s.Exec(context.Background(), []byte("a"), []byte("b")); err != nil || string(got.Body) != "b" {
		t.Fatalf("after the crashes: %v %v", got, err)
	}
}

// occupy runs a long task on one worker until the test ends (its context is cancelled at
// cleanup, which kills the worker), and waits until it runs.
func occupy(t *testing.T, s *testServer) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Exec(ctx, []byte("!hang"), nil)
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, ErrCancelled) {
			t.Errorf("the occupying task: want ErrCancelled, got %v", err)
		}
	})
	s.awaitState(WorkerWorking)
}

func TestErrNoFreeWorker(t *testing.T) {
	s := newTestServer(t, Config{Command: rustWorker(t), NumWorkers: 1, AllocateTimeout: 200 * time.Millisecond}, true)
	occupy(t, s)
	for _, c := range contexts {
		ctx, cancel := c.ctx()
		start := time.Now()
		_, err := s.Exec(ctx, []byte("x"), nil)
		cancel()
		if !errors.Is(err, ErrNoFreeWorker) {
			t.Fatalf("%s: want ErrNoFreeWorker, got %v", c.name, err)
		}
		if d := time.Since(start); d < 150*time.Millisecond || d > 5*time.Second {
			t.Fatalf("%s: the allocate timeout of 200ms took %v", c.name, d)
		}
	}
	if st, err := s.Stats(); err != nil || st.Timeouts != 2 {
		t.Fatalf("stats: %+v %v", st, err)
	}
}

func TestErrQueueFull(t *testing.T) {
	s := newTestServer(t, Config{Command: rustWorker(t), NumWorkers: 1, MaxQueue: 1}, true)
	occupy(t, s)
	// One caller waits for the worker (the queue's only place)...
	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan error, 1)
	go func() {
		_, err := s.Exec(ctx, []byte("waits"), nil)
		waiting <- err
	}()
	waitFor(t, "a caller waiting", 10*time.Second, func() bool {
		st, err := s.Stats()
		return err == nil && st.Waiting == 1
	})
	// ...so the next ones are refused at once.
	for _, c := range contexts {
		cctx, ccancel := c.ctx()
		_, err := s.Exec(cctx, []byte("refused"), nil)
		ccancel()
		if !errors.Is(err, ErrQueueFull) {
			t.Fatalf("%s: want ErrQueueFull, got %v", c.name, err)
		}
	}
	cancel()
	if err := <-waiting; !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("the waiting caller: want ErrCancelled and context.Canceled, got %v", err)
	}
	if st, err := s.Stats(); err != nil || st.QueueFull != 2 {
		t.Fatalf("stats: %+v %v", st, err)
	}
}

func TestErrExecTTL(t *testing.T) {
	s := newTestServer(t, Config{Command: rustWorker(t), NumWorkers: 1, ExecTTL: 200 * time.Millisecond}, true)
	for _, c := range contexts {
		before := s.pids()
		ctx, cancel := c.ctx()
		start := time.Now()
		_, err := s.Exec(ctx, []byte("!hang"), nil)
		cancel()
		if !errors.Is(err, ErrExecTTL) || errors.Is(err, ErrWorker) {
			t.Fatalf("%s: want ErrExecTTL (only), got %v", c.name, err)
		}
		if d := time.Since(start); d < 150*time.Millisecond || d > 5*time.Second {
			t.Fatalf("%s: exec_ttl of 200ms took %v", c.name, d)
		}
		waitFor(t, "the killed worker replaced", 10*time.Second, func() bool {
			now := s.pids()
			return len(now) == 1 && !now[keys(before)[0]]
		})
	}
	if st, err := s.Stats(); err != nil || st.ExecTTLKills != 2 {
		t.Fatalf("stats: %+v %v", st, err)
	}
}

func TestErrConfig(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		cfg  Config
		word string // the message names the setting
	}{
		{Config{Command: rustWorker(t), NumWorkers: -1}, "NumWorkers"},
		{Config{Command: rustWorker(t), AllocateTimeout: -time.Second}, "AllocateTimeout"},
		{Config{Command: rustWorker(t), JitterPercent: 101}, "jitter"},
		{Config{Command: rustWorker(t), Protocol: 7}, "Protocol"},
		{Config{Command: rustWorker(t), Codec: 3}, "Codec"},
		{Config{Command: rustWorker(t), Dir: dir + "/missing"}, "missing"},
		{Config{Command: rustWorker(t), Env: map[string]string{"A=B": "c"}}, "A=B"},
		{Config{Command: rustWorker(t), Relay: "carrier-pigeon://x"}, "carrier-pigeon"},
		{Config{Command: ""}, "command"},
		// A NUL byte would cut a C string short: refused, naming the field.
		{Config{Command: rustWorker(t) + "\x00 evil"}, "Command holds a NUL byte"},
		{Config{Command: rustWorker(t), Relay: "unix:///tmp/rr\x00.sock"}, "Relay holds a NUL byte"},
		{Config{Command: rustWorker(t), Env: map[string]string{"A\x00B": "c"}}, `Env key "A\x00B" holds a NUL byte`},
		{Config{Command: rustWorker(t), Env: map[string]string{"RR_A": "secret\x00tail"}}, `Env["RR_A"] holds a NUL byte`},
		{Config{Command: rustWorker(t), Dir: dir + "\x00/x"}, "Dir holds a NUL byte"},
		{Config{Command: rustWorker(t), Name: "pool\x00x"}, "Name holds a NUL byte"},
	} {
		s, err := NewServer(c.cfg)
		if err == nil {
			s.Close()
			t.Fatalf("%+v: NewServer accepted it", c.cfg)
		}
		var e *Error
		if !errors.Is(err, ErrConfig) || !errors.As(err, &e) || e.Status != StatusConfig {
			t.Fatalf("%+v: want ErrConfig, got %v", c.cfg, err)
		}
		if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(c.word)) {
			t.Errorf("the message does not name %q: %v", c.word, err)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("the message shows an Env value: %v", err)
		}
	}
	// Reconfigure refuses them too, and the pool keeps running.
	s := newTestServer(t, Config{Command: rustWorker(t), NumWorkers: 1}, true)
	if err := s.Reconfigure(Config{Command: rustWorker(t), Dir: "/tmp\x00"}); !errors.Is(err, ErrConfig) ||
		!strings.Contains(err.Error(), "Dir holds a NUL byte") {
		t.Fatalf("reconfigure with a NUL byte in Dir: %v", err)
	}
	if _, err := s.Exec(context.Background(), []byte("a"), nil); err != nil {
		t.Fatal(err)
	}
}

func TestConfigDiffers(t *testing.T) {
	sock := "unix://" + t.TempDir() + "/rr.sock"
	base := Config{Command: "php worker.php", NumWorkers: 2}
	for _, c := range []struct {
		a, b Config
		want bool
	}{
		{base, base, false},
		{base, Config{Command: "php worker.php", NumWorkers: 5}, false},                       // a pool setting
		{base, Config{Command: "other", MaxJobs: 3, Env: map[string]string{"A": "b"}}, false}, // the command
		{Config{Relay: "pipe"}, Config{Relay: "pipes"}, false},                                // as parsed
		{Config{}, Config{Relay: "pipes"}, false},                                             // "" is pipes
		{base, Config{Command: "php worker.php", Relay: sock}, true},                          // another relay
		{Config{Relay: sock}, Config{Relay: sock, NumWorkers: 9}, false},
		{Config{Relay: sock}, Config{Relay: "tcp://127.0.0.1:6001"}, true},
		{base, Config{Command: "php worker.php", RelayTimeout: 5 * time.Second}, true}, // relay timeout
		{Config{RelayTimeout: 60 * time.Second}, Config{}, false},                      // 0 is the default, 60s
		{base, Config{Relay: "pipes\x00"}, true},                                       // cannot make a server
	} {
		if got := c.a.Differs(c.b); got != c.want {
			t.Errorf("Config{Relay: %q, RelayTimeout: %v}.Differs(Config{Relay: %q, RelayTimeout: %v}) = %v, want %v",
				c.a.Relay, c.a.RelayTimeout, c.b.Relay, c.b.RelayTimeout, got, c.want)
		}
	}
}

func TestErrSpawn(t *testing.T) {
	s := newTestServer(t, Config{Command: rustWorker(t, "failboot", "go-spawn-check"), NumWorkers: 2}, false)
	err := s.Start()
	if !errors.Is(err, ErrSpawn) || errors.Is(err, ErrConfig) {
		t.Fatalf("want ErrSpawn, got %v", err)
	}
	if !strings.Contains(err.Error(), "failboot line") || !strings.Contains(err.Error(), "go-spawn-check") {
		t.Fatalf("the message lacks the worker's stderr: %v", err)
	}
	if _, err := s.Exec(context.Background(), nil, nil); !errors.Is(err, ErrState) {
		t.Fatalf("exec after a failed start: want ErrState, got %v", err)
	}
}

func TestErrState(t *testing.T) {
	s := newTestServer(t, Config{Command: rustWorker(t), NumWorkers: 1}, false)
	check := func(what string, err error) {
		t.Helper()
		var e *Error
		if !errors.Is(err, ErrState) || !errors.As(err, &e) || e.Status != StatusState {
			t.Fatalf("%s: want ErrState, got %v", what, err)
		}
	}
	for _, c := range contexts {
		ctx, cancel := c.ctx()
		_, err := s.Exec(ctx, []byte("a"), nil)
		cancel()
		check("exec before start ("+c.name+")", err)
	}
	_, err := s.Workers()
	check("workers before start", err)
	_, err = s.Stats()
	check("stats before start", err)
	check("stop before start", s.Stop())
	check("reset before start", s.Reset())
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	check("start twice", s.Start())
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err = s.Exec(context.Background(), []byte("a"), nil)
	check("exec after stop", err)
	if err := s.Start(); err != nil {
		t.Fatalf("start after stop: %v", err)
	}
	if got, err := s.Exec(context.Background(), []byte("again"), nil); err != nil || string(got.Context) != "again" {
		t.Fatalf("exec after a restart: %v %v", got, err)
	}
	s.pids()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range contexts {
		ctx, cancel := c.ctx()
		_, err := s.Exec(ctx, []byte("a"), nil)
		cancel()
		check("exec after close ("+c.name+")", err)
	}
	check("start after close", s.Start())
	_, err = s.Workers()
	check("workers after close", err)
	_, err = s.Stream(context.Background(), nil, nil)
	check("stream after close", err)
	check("listen after close", s.Listen(func(Event) {}))
	check("reconfigure after close", s.Reconfigure(Config{Command: rustWorker(t)}))
}

func TestCancelRunningTask(t *testing.T) {
	s := newTestServer(t, Config{Command: rustWorker(t), NumWorkers: 1}, true)
	before := s.pids()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Exec(ctx, []byte("!sleep:20000"), nil)
		done <- err
	}()
	s.awaitState(WorkerWorking)
	// A second task waits for the worker; cancelling it does not touch the worker.
	wctx, wcancel := context.WithCancel(context.Background())
	waiting := make(chan error, 1)
	go func() {
		_, err := s.Exec(wctx, []byte("never runs"), nil)
		waiting <- err
	}()
	waitFor(t, "a caller waiting", 10*time.Second, func() bool {
		st, err := s.Stats()
		return err == nil && st.Waiting == 1
	})
	wcancel()
	if err := <-waiting; !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("the waiting task: %v", err)
	}
	if now := s.pids(); len(now) != 1 || !now[keys(before)[0]] {
		t.Fatalf("cancelling a waiting task changed the workers: %v -> %v", before, now)
	}
	select {
	case err := <-done:
		t.Fatalf("the running task ended: %v", err)
	default:
	}
	// Now the running one: Exec returns at once, the worker is killed and replaced.
	start := time.Now()
	cancel()
	err := <-done
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Exec returned %v after its cancel", d)
	}
	var e *Error
	if !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) || !errors.As(err, &e) || e.Status != StatusCancelled {
		t.Fatalf("want ErrCancelled wrapping context.Canceled, got %v", err)
	}
	got, err := s.Exec(context.Background(), []byte("!pid"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.ParseInt(string(got.Body), 10, 64)
	s.remember(pid)
	if before[pid] || pid == 0 {
		t.Fatalf("the cancelled task's worker %d still serves (before: %v)", pid, before)
	}
	old := keys(before)[0]
	waitFor(t, "the cancelled task's worker gone", 10*time.Second, func() bool { return len(children()) == 1 && !s.pids()[old] })
	if st, err := s.Stats(); err != nil || st.TasksCancelled < 1 {
		t.Fatalf("stats: %+v %v", st, err)
	}
}

func TestContextDeadline(t *testing.T) {
	s := newTestServer(t, Config{Command: rustWorker(t), NumWorkers: 1}, true)
	before := s.pids()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Exec(ctx, []byte("!hang"), nil)
	d := time.Since(start)
	if !errors.Is(err, ErrCancelled) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want ErrCancelled wrapping context.DeadlineExceeded, got %v", err)
	}
	if d < 190*time.Millisecond || d > 3*time.Second {
		t.Fatalf("a 200ms deadline returned after %v", d)
	}
	// A context already done sends nothing.
	_, err = s.Exec(ctx, []byte("late"), nil)
	if !errors.Is(err, ErrCancelled) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("exec with a done context: %v", err)
	}
	waitFor(t, "the hung worker replaced", 10*time.Second, func() bool {
		now := s.pids()
		return len(now) == 1 && !now[keys(before)[0]]
	})
	if got, err := s.Exec(context.Background(), []byte("after"), nil); err != nil || string(got.Context) != "after" {
		t.Fatalf("after the deadline: %v %v", got, err)
	}
}

// A task that finished before its context was done keeps its answer.
func TestAnswerBeforeDeadline(t *testing.T) {
	s := newTestServer(t, Config{Command: rustWorker(t), NumWorkers: 1}, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := s.Exec(ctx, []byte("!sleep:50"), []byte("in time"))
	if err != nil || string(got.Body) != "in time" {
		t.Fatalf("%v %v", got, err)
	}
}

func TestCloseWithTasksInFlight(t *testing.T) {
	s := newTestServer(t, Config{Command: rustWorker(t), NumWorkers: 2, DestroyTimeout: 300 * time.Millisecond}, true)
	s.pids()
	results := make(chan error, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _, err := s.Exec(context.Background(), []byte("!hang"), nil); results <- err }()
	go func() { _, err := s.Exec(ctx, []byte("!hang"), nil); results <- err }()
	waitFor(t, "both workers busy", 10*time.Second, func() bool {
		infos, err := s.Workers()
		return err == nil && len(infos) == 2 && infos[0].State == WorkerWorking && infos[1].State == WorkerWorking
	})
	go func() { _, err := s.Exec(ctx, []byte("waits"), nil); results <- err }()
	waitFor(t, "a caller waiting", 10*time.Second, func() bool {
		st, err := s.Stats()
		return err == nil && st.Waiting == 1
	})
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Close took %v", d)
	}
	for i := 0; i < 3; i++ {
		if err := <-results; !errors.Is(err, ErrWorker) && !errors.Is(err, ErrState) {
			t.Errorf("a task in flight at Close: want ErrWorker or ErrState, got %v", err)
		}
	}
}
