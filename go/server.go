package roadrunner

/*
#include <stdint.h>
#include <stddef.h>
#include "rr.h"
*/
import "C"

import (
	"context"
	"fmt"
	"sync"
	"time"
	"unsafe"
)

// Payload is a context and a body: a worker's answer, a chunk of a streamed answer, or, on
// the worker side, a task. Both are copies in Go memory.
type Payload struct {
	Context []byte
	Body    []byte
	// Codec of the answer (protocol V2): the codec bits of its frame, 0 when the worker set
	// none. CodecRaw with protocol V1 and for tasks on the worker side.
	Codec Codec
}

// takePayload copies p into Go memory and frees it.
func takePayload(p *C.rr_payload) Payload {
	defer C.rr_payload_free(p)
	var n C.size_t
	ctx := goBytes(C.rr_payload_context(p, &n), n)
	body := goBytes(C.rr_payload_body(p, &n), n)
	return Payload{Context: ctx, Body: body, Codec: Codec(C.rr_payload_codec(p))}
}

// Server is a pool of worker processes (rr_server). Every method may be called from any
// goroutine, at the same time as the others; an event callback (Listen) may call its
// Server's methods too, except Stop, Close and Listen.
type Server struct {
	// life is held shared by every C call on p but rr_server_listen, and exclusively by
	// Close to take p away: no call starts on p once Close has begun freeing it.
	life sync.RWMutex
	p    *C.rr_server

	closeOnce sync.Once
	closed    chan struct{} // closed when Close begins

	// listenMu serializes Listen, and is held by Listen across rr_server_listen instead of
	// life (that call waits for a running callback, which may itself wait for life behind
	// Close); Close takes it after taking p away, before freeing p.
	listenMu sync.Mutex

	qmu sync.Mutex
	q   *completionQueue // made by the first Exec with a context that can be done

	smu     sync.Mutex
	streams map[*Stream]struct{} // open streams, closed by Close before the server is freed
}

// NewServer makes a server from cfg. It is not started: no process runs until Start. An
// invalid setting gives an error matching ErrConfig that names it.
func NewServer(cfg Config) (*Server, error) {
	c, err := cfg.build()
	if err != nil {
		return nil, err
	}
	defer C.rr_config_free(c)
	var out *C.rr_server
	var cerr *C.rr_error
	if err := check("new server", C.rr_server_new(c, &out, &cerr), cerr); err != nil {
		return nil, err
	}
	return &Server{p: out, closed: make(chan struct{}), streams: map[*Stream]struct{}{}}, nil
}

// enter gives the server's handle for one C call, or ErrState once it is closed; leave
// must follow.
func (s *Server) enter(op string) (*C.rr_server, error) {
	s.life.RLock()
	if s.p == nil {
		s.life.RUnlock()
		return nil, errClosed(op)
	}
	return s.p, nil
}

func (s *Server) leave() { s.life.RUnlock() }

func (s *Server) call(op string, f func(*C.rr_server, **C.rr_error) C.rr_status) error {
	p, err := s.enter(op)
	if err != nil {
		return err
	}
	defer s.leave()
	var cerr *C.rr_error
	return check(op, f(p, &cerr), cerr)
}

// Start starts the workers and waits until each has answered the handshake (each may take
// up to Config.RelayTimeout). ErrSpawn when one failed (nothing is left running; the message
// holds its stderr); ErrState when the server is already started.
func (s *Server) Start() error {
	return s.call("start", func(p *C.rr_server, e **C.rr_error) C.rr_status { return C.rr_server_start(p, e) })
}

// Stop stops the server: callers waiting for a worker fail with ErrState, running tasks may
// finish for up to Config.DestroyTimeout, then every worker is stopped. Blocks until done
// (about twice DestroyTimeout at worst). The server may be started again. ErrState when it
// is not started.
func (s *Server) Stop() error {
	return s.call("stop", func(p *C.rr_server, e **C.rr_error) C.rr_status { return C.rr_server_stop(p, e) })
}

// Reset replaces every worker (new ones are started first, then swapped in); tasks running
// on the old ones finish. ErrState when the server is not running.
func (s *Server) Reset() error {
	return s.call("reset", func(p *C.rr_server, e **C.rr_error) C.rr_status { return C.rr_server_reset(p, e) })
}

// Reconfigure replaces the pool with one built from cfg, as Reset does; Relay,
// RelayTimeout and Protocol cannot change. ErrConfig for an invalid setting, ErrState when
// the server is not running, ErrSpawn when the new workers could not start (the old pool
// then keeps running).
func (s *Server) Reconfigure(cfg Config) error {
	c, err := cfg.build()
	if err != nil {
		return err
	}
	defer C.rr_config_free(c)
	return s.call("reconfigure", func(p *C.rr_server, e **C.rr_error) C.rr_status {
		return C.rr_server_reconfigure(p, c, e)
	})
}

// Close ends the server: it closes its open streams (cancelling them), stops it (as Stop:
// running tasks may finish for up to Config.DestroyTimeout; so may a stream a Next is
// waiting in), waits for the calls in progress, frees it, and ends its goroutines. After it
// returns no worker process it started is left, and no event callback runs; every method
// then fails with ErrState. Safe to call more than once (later calls wait for the first).
// Must not be called from an event callback of this server. Returns nil. A Server that is
// not closed keeps its workers (and, once Exec had a cancellable context, a goroutine).
func (s *Server) Close() error {
	s.closeOnce.Do(s.close)
	return nil
}

// openStreams lists the streams not closed yet.
func (s *Server) openStreams() []*Stream {
	s.smu.Lock()
	defer s.smu.Unlock()
	open := make([]*Stream, 0, len(s.streams))
	for st := range s.streams {
		open = append(open, st)
	}
	return open
}

func (s *Server) close() {
	close(s.closed)
	// 0. Streams that no Next holds are cancelled now: a stop would wait destroy_timeout
	// for them.
	for _, st := range s.openStreams() {
		st.tryClose()
	}
	// 1. Stop, alongside the calls in progress: callers waiting for a worker fail at
	// once, running tasks finish or are killed after destroy_timeout, and so every rr_exec
	// in progress returns. (ErrState when it was not started: nothing to stop.)
	_ = s.Stop()
	// 2. Wait for the calls in progress, and let none start: they find p nil.
	s.life.Lock()
	p := s.p
	s.p = nil
	s.life.Unlock()
	// 3. Streams must be freed before their server (the stop ended those a Next held: it
	// killed their workers after destroy_timeout).
	for _, st := range s.openStreams() {
		st.Close()
	}
	// 4. Wait for a Listen in rr_server_listen (it holds listenMu, not life); a later
	// Listen finds p nil.
	s.listenMu.Lock()
	// 5. Frees the server: the queue's outstanding tasks complete (they are the server's),
	// the event thread ends and the listener's handle is released.
	C.rr_server_free(p)
	s.listenMu.Unlock()
	// 6. Then the queue: its dispatcher delivers what came, and stops.
	s.qmu.Lock()
	q := s.q
	s.qmu.Unlock()
	if q != nil {
		q.close()
	}
}

// Exec runs one task: it sends context and body to a free worker and returns its answer.
// It waits up to Config.AllocateTimeout for a free worker, then for the answer (up to
// Config.ExecTTL when set).
//
// When ctx is done before the answer, the task is cancelled: a task still waiting for a
// worker never runs, a running one has its worker killed (and replaced). Exec then returns
// an *Error that matches ErrCancelled and ctx.Err() (context.Canceled or
// context.DeadlineExceeded) with errors.Is; if the answer came before the cancel took
// effect, Exec returns it. With a ctx that is never done (context.Background()), Exec blocks
// in rr_exec on the calling goroutine; otherwise the task goes through the server's
// completion queue.
//
// Errors: *JobError; or an *Error matching ErrWorker, ErrNoFreeWorker, ErrExecTTL,
// ErrQueueFull, ErrState (not started, stopped or closed) or ErrCancelled.
func (s *Server) Exec(ctx context.Context, context, body []byte) (Payload, error) {
	if ctx.Done() == nil {
		return s.execBlocking(context, body)
	}
	if err := ctx.Err(); err != nil {
		return Payload{}, &Error{Op: "exec", Status: StatusCancelled, Message: "the context was done before the task was sent", Err: err}
	}
	q, err := s.queue()
	if err != nil {
		return Payload{}, err
	}
	tag, ch, err := q.submit(s, context, body)
	if err != nil {
		return Payload{}, err
	}
	select {
	case c, ok := <-ch:
		if !ok {
			return Payload{}, errClosed("exec")
		}
		return c.payload, c.err
	case <-ctx.Done():
	}
	q.cancel(tag)
	// The completion comes at once: CANCELLED, or the outcome of a task that finished first.
	c, ok := <-ch
	if !ok || c.status == StatusCancelled {
		return Payload{}, &Error{Op: "exec", Status: StatusCancelled, Message: "the task was cancelled: its context is done", Err: ctx.Err()}
	}
	return c.payload, c.err
}

func (s *Server) execBlocking(context, body []byte) (Payload, error) {
	p, err := s.enter("exec")
	if err != nil {
		return Payload{}, err
	}
	defer s.leave()
	var out *C.rr_payload
	var cerr *C.rr_error
	st := C.rr_exec(p, bufPtr(context), C.size_t(len(context)), bufPtr(body), C.size_t(len(body)), &out, &cerr)
	if err := check("exec", st, cerr); err != nil {
		return Payload{}, err
	}
	return takePayload(out), nil
}

// queue gives the server's completion queue, made (with its dispatcher) at the first call.
func (s *Server) queue() (*completionQueue, error) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	select {
	case <-s.closed:
		return nil, errClosed("exec")
	default:
	}
	if s.q == nil {
		q, err := newCompletionQueue()
		if err != nil {
			return nil, err
		}
		s.q = q
	}
	return s.q, nil
}

// WorkerState is the state of a worker (RR_WORKER_STATE_*).
type WorkerState int32

// The worker states of rr.h.
const (
	WorkerInactive  WorkerState = C.RR_WORKER_STATE_INACTIVE  // started, handshake not done
	WorkerReady     WorkerState = C.RR_WORKER_STATE_READY     // waiting for a task
	WorkerWorking   WorkerState = C.RR_WORKER_STATE_WORKING   // running a task
	WorkerStreaming WorkerState = C.RR_WORKER_STATE_STREAMING // streaming an answer
	WorkerStopping  WorkerState = C.RR_WORKER_STATE_STOPPING  // being stopped
	WorkerStopped   WorkerState = C.RR_WORKER_STATE_STOPPED   // stopped and gone
	WorkerErrored   WorkerState = C.RR_WORKER_STATE_ERRORED   // failed, being retired
)

// String is the state's lower-case name ("ready", "working", ...).
func (w WorkerState) String() string { return C.GoString(C.rr_worker_state_str(C.int32_t(w))) }

// WorkerInfo is a snapshot of one worker.
type WorkerInfo struct {
	Pid      int64
	State    WorkerState
	NumExecs uint64    // tasks it has run
	Created  time.Time // when it was started
	RSSBytes uint64    // resident memory, 0 where unknown
}

// Workers takes a snapshot of the current workers. ErrState when the server is not started.
func (s *Server) Workers() ([]WorkerInfo, error) {
	p, err := s.enter("workers")
	if err != nil {
		return nil, err
	}
	defer s.leave()
	var arr *C.rr_worker_info
	var n C.size_t
	var cerr *C.rr_error
	if err := check("workers", C.rr_server_workers(p, &arr, &n, &cerr), cerr); err != nil {
		return nil, err
	}
	defer C.rr_worker_info_free(arr, n)
	out := make([]WorkerInfo, 0, int(n))
	if n > 0 {
		for _, w := range unsafe.Slice(arr, int(n)) {
			out = append(out, WorkerInfo{
				Pid:      int64(w.pid),
				State:    WorkerState(w.state),
				NumExecs: uint64(w.num_execs),
				Created:  time.UnixMilli(int64(w.created_unix_ms)),
				RSSBytes: uint64(w.rss_bytes),
			})
		}
	}
	return out, nil
}

// Stats is a snapshot of a server's counters. Every field but Waiting and Workers counts
// from the server's creation, across Stop/Start, Reset and Reconfigure.
type Stats struct {
	TasksDone            uint64 // tasks a worker answered (with an answer or a job error)
	JobErrors            uint64 // tasks answered with a job error
	WorkerErrors         uint64 // tasks whose worker failed (exec_ttl included)
	ExecTTLKills         uint64 // tasks killed for running past exec_ttl
	Timeouts             uint64 // callers that got no free worker in time
	QueueFull            uint64 // callers refused because max_queue callers waited
	Waiting              uint64 // callers waiting for a worker now (not a counter)
	Workers              uint64 // workers in the current pool now (not a counter)
	RetiredMaxJobs       uint64
	RetiredTTL           uint64
	RetiredIdleTTL       uint64
	RetiredMaxMemory     uint64
	RetiredStopRequested uint64
	RetiredFailed        uint64
	RetiredDied          uint64
	TasksCancelled       uint64 // tasks cancelled by their caller (0 with a library older than 0.2)
	// Worker processes started: the first ones, replacements and an elastic pool's growth
	// (0 with a library older than 0.2).
	WorkersSpawned uint64
	RetiredShrink  uint64 // extra workers of an elastic pool retired after ScaleIdle (0 before 0.2)
	RetiredRemoved uint64 // workers removed by RemoveWorker (0 with a library older than 0.2)
}

// Stats reads the server's counters. ErrState when the server is not started.
func (s *Server) Stats() (Stats, error) {
	p, err := s.enter("stats")
	if err != nil {
		return Stats{}, err
	}
	defer s.leave()
	var c C.rr_pool_stats
	c.size = C.size_t(unsafe.Sizeof(c))
	var cerr *C.rr_error
	if err := check("stats", C.rr_server_stats(p, &c, &cerr), cerr); err != nil {
		return Stats{}, err
	}
	st := Stats{
		TasksDone:            uint64(c.tasks_done),
		JobErrors:            uint64(c.job_errors),
		WorkerErrors:         uint64(c.worker_errors),
		ExecTTLKills:         uint64(c.exec_ttl_kills),
		Timeouts:             uint64(c.timeouts),
		QueueFull:            uint64(c.queue_full),
		Waiting:              uint64(c.waiting),
		Workers:              uint64(c.workers),
		RetiredMaxJobs:       uint64(c.retired_max_jobs),
		RetiredTTL:           uint64(c.retired_ttl),
		RetiredIdleTTL:       uint64(c.retired_idle_ttl),
		RetiredMaxMemory:     uint64(c.retired_max_memory),
		RetiredStopRequested: uint64(c.retired_stop_requested),
		RetiredFailed:        uint64(c.retired_failed),
		RetiredDied:          uint64(c.retired_died),
	}
	// The fields added in 0.2: an older library fills fewer bytes (c.size).
	filled := func(offset, size uintptr) bool { return uintptr(c.size) >= offset+size }
	if filled(unsafe.Offsetof(c.tasks_cancelled), unsafe.Sizeof(c.tasks_cancelled)) {
		st.TasksCancelled = uint64(c.tasks_cancelled)
	}
	if filled(unsafe.Offsetof(c.workers_spawned), unsafe.Sizeof(c.workers_spawned)) {
		st.WorkersSpawned = uint64(c.workers_spawned)
	}
	if filled(unsafe.Offsetof(c.retired_shrink), unsafe.Sizeof(c.retired_shrink)) {
		st.RetiredShrink = uint64(c.retired_shrink)
	}
	if filled(unsafe.Offsetof(c.retired_removed), unsafe.Sizeof(c.retired_removed)) {
		st.RetiredRemoved = uint64(c.retired_removed)
	}
	return st, nil
}

// Version is the version of the loaded library, "MAJOR.MINOR.PATCH".
func Version() string { return C.GoString(C.rr_version()) }

// HeaderVersion is the version of the rr.h this package was compiled with.
func HeaderVersion() string {
	return fmt.Sprintf("%d.%d.%d", C.RR_VERSION_MAJOR, C.RR_VERSION_MINOR, C.RR_VERSION_PATCH)
}
