package rrcgo

// The completion queue (rr_queue_*, rr_exec_submit) seen from Go: a Queue owns one
// rr_queue and a dispatcher goroutine that takes its completions with rr_queue_next
// (with a short timeout, so that Close can stop it) and hands each to the channel of its
// task, found by tag. Tags are the Queue's own (a counter); nothing of Go is stored in C:
// the library only ever sees the tag, an integer.

/*
#include <stdint.h>
#include <stddef.h>
#include "rr.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ErrQueueClosed is returned for a task whose queue was closed before its completion came.
var ErrQueueClosed = errors.New("rrcgo: the queue was closed")

// Completion is a copy of one rr_completion (its payload and error are freed): the tag,
// the task's status, and the answer (Status == StatusOK) or the error (an *Error).
type Completion struct {
	Tag           uint64
	Status        uint32
	Context, Body []byte
	Err           error
}

// CancelledError is returned by Submit when its context is done before the task's
// completion: the task was cancelled with rr_queue_cancel. Unwraps to the context's error
// (context.Canceled or context.DeadlineExceeded). Completion is the completion that came
// after the cancel (RR_STATUS_CANCELLED, unless the task finished first), nil if none came
// within CancelWait.
type CancelledError struct {
	Tag        uint64
	Cause      error
	Completion *Completion
}

func (e *CancelledError) Error() string {
	return fmt.Sprintf("rrcgo: task %d cancelled: %v", e.Tag, e.Cause)
}

func (e *CancelledError) Unwrap() error { return e.Cause }

// CancelWait bounds how long Submit waits, after rr_queue_cancel, for the cancelled task's
// completion (which the library posts at once).
const CancelWait = 10 * time.Second

// Queue is rr_queue with its dispatcher goroutine. Submit and Cancel may be called from
// any goroutine; Close waits for the Submit and Cancel calls in progress, stops the
// dispatcher, then frees the queue.
type Queue struct {
	p      *C.rr_queue
	pollMs int64

	life   sync.RWMutex // held shared by C calls on p, exclusively by Close
	closed bool

	mu      sync.Mutex
	nextTag uint64
	pending map[uint64]chan Completion // buffered (1): the dispatcher never blocks

	stopping   int32
	stopped    chan struct{}
	unexpected int64 // completions whose tag had no pending task

	vmu        sync.Mutex
	violations []string // broken promises of rr_queue_next / rr_completion
}

// NewQueue is rr_queue_new, and starts the dispatcher; pollMs is the timeout of its
// rr_queue_next calls (how long Close may wait for it to notice).
func NewQueue(pollMs int64) (*Queue, error) {
	var out *C.rr_queue
	var cerr *C.rr_error
	if err := check("rr_queue_new", C.rr_queue_new(&out, &cerr), cerr); err != nil {
		return nil, err
	}
	q := &Queue{p: out, pollMs: pollMs, pending: map[uint64]chan Completion{},
		stopped: make(chan struct{})}
	go q.dispatch()
	return q, nil
}

// Fd is rr_queue_fd (-1 once closed).
func (q *Queue) Fd() int {
	q.life.RLock()
	defer q.life.RUnlock()
	if q.closed {
		return -1
	}
	return int(C.rr_queue_fd(q.p))
}

func (q *Queue) violation(format string, args ...interface{}) {
	q.vmu.Lock()
	q.violations = append(q.violations, fmt.Sprintf(format, args...))
	q.vmu.Unlock()
}

// Violations lists what the library did against its contract (none expected).
func (q *Queue) Violations() []string {
	q.vmu.Lock()
	defer q.vmu.Unlock()
	return append([]string(nil), q.violations...)
}

// Unexpected counts completions that came for no pending task (none expected).
func (q *Queue) Unexpected() int64 { return atomic.LoadInt64(&q.unexpected) }

// Pending is how many submitted tasks have not had their completion yet.
func (q *Queue) Pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

func (q *Queue) take(out *C.rr_completion) Completion {
	c := Completion{Tag: uint64(out.tag), Status: uint32(out.status)}
	if c.Status == StatusOK {
		if out.error != nil {
			C.rr_error_free(out.error)
			q.violation("task %d: OK with an error object", c.Tag)
		}
		if out.payload == nil {
			q.violation("task %d: OK without a payload", c.Tag)
			c.Err = &Error{Func: "rr_queue_next", Status: StatusInternal, Message: "OK without a payload"}
			return c
		}
		c.Context, c.Body = copyPayload(out.payload)
		return c
	}
	if out.payload != nil {
		C.rr_payload_free(out.payload)
		q.violation("task %d: status %d with a payload", c.Tag, c.Status)
	}
	if out.error == nil {
		q.violation("task %d: status %d without an error object", c.Tag, c.Status)
	} else if es := uint32(C.rr_error_status(out.error)); es != c.Status {
		q.violation("task %d: status %d, its error object says %d", c.Tag, c.Status, es)
	}
	c.Err = check(fmt.Sprintf("task %d", c.Tag), out.status, out.error)
	return c
}

func (q *Queue) dispatch() {
	defer close(q.stopped)
	for atomic.LoadInt32(&q.stopping) == 0 {
		var out C.rr_completion
		st := C.rr_queue_next(q.p, C.int64_t(q.pollMs), &out, nil)
		if st == C.RR_STATUS_TIMEOUT {
			continue
		}
		if st != C.RR_STATUS_OK {
			q.violation("rr_queue_next returned %d", uint32(st))
			time.Sleep(time.Duration(q.pollMs) * time.Millisecond)
			continue
		}
		c := q.take(&out)
		q.mu.Lock()
		ch, ok := q.pending[c.Tag]
		delete(q.pending, c.Tag)
		q.mu.Unlock()
		if !ok {
			atomic.AddInt64(&q.unexpected, 1)
			continue
		}
		ch <- c
	}
}

// SubmitAsync is rr_exec_submit: the task's tag, and the channel its Completion comes on
// (closed without one if the queue is closed first). A task refused at submission
// (e.g. RR_STATUS_STATE) returns the error and has no channel.
func (q *Queue) SubmitAsync(s *Server, context, body []byte) (uint64, <-chan Completion, error) {
	q.life.RLock()
	defer q.life.RUnlock()
	if q.closed {
		return 0, nil, ErrQueueClosed
	}
	ch := make(chan Completion, 1)
	q.mu.Lock()
	q.nextTag++
	tag := q.nextTag
	q.pending[tag] = ch // before the submit: the completion may come at once
	q.mu.Unlock()
	var cerr *C.rr_error
	st := C.rr_exec_submit(s.p, q.p, bufPtr(context), C.size_t(len(context)), bufPtr(body),
		C.size_t(len(body)), C.uint64_t(tag), &cerr)
	if err := check("rr_exec_submit", st, cerr); err != nil {
		q.mu.Lock()
		delete(q.pending, tag)
		q.mu.Unlock()
		return 0, nil, err
	}
	return tag, ch, nil
}

// Submit runs one task through the queue and waits for its answer, or for ctx: when ctx
// is done first, the task is cancelled (rr_queue_cancel) and a *CancelledError wrapping
// ctx.Err() is returned.
func (q *Queue) Submit(ctx context.Context, s *Server, context, body []byte) ([]byte, []byte, error) {
	tag, ch, err := q.SubmitAsync(s, context, body)
	if err != nil {
		return nil, nil, err
	}
	select {
	case c, ok := <-ch:
		if !ok {
			return nil, nil, ErrQueueClosed
		}
		return c.Context, c.Body, c.Err
	case <-ctx.Done():
	}
	ce := &CancelledError{Tag: tag, Cause: ctx.Err()}
	if err := q.Cancel(tag); err != nil {
		return nil, nil, fmt.Errorf("%v; rr_queue_cancel: %w", ce, err)
	}
	timer := time.NewTimer(CancelWait)
	defer timer.Stop()
	select {
	case c, ok := <-ch:
		if ok {
			ce.Completion = &c
		}
	case <-timer.C:
	}
	return nil, nil, ce
}

// Cancel is rr_queue_cancel.
func (q *Queue) Cancel(tag uint64) error {
	q.life.RLock()
	defer q.life.RUnlock()
	if q.closed {
		return nil
	}
	var cerr *C.rr_error
	return check("rr_queue_cancel", C.rr_queue_cancel(q.p, C.uint64_t(tag), &cerr), cerr)
}

// Close stops the dispatcher (waiting for it), then rr_queue_free: outstanding tasks are
// cancelled and their channels closed. Safe to call twice.
func (q *Queue) Close() {
	q.life.Lock()
	if q.closed {
		q.life.Unlock()
		return
	}
	q.closed = true
	q.life.Unlock()
	atomic.StoreInt32(&q.stopping, 1)
	<-q.stopped
	// No C call on p is in progress (Submit and Cancel check closed under life), and the
	// dispatcher is gone: rr_queue_free races with nothing.
	C.rr_queue_free(q.p)
	q.p = nil
	q.mu.Lock()
	for tag, ch := range q.pending {
		close(ch)
		delete(q.pending, tag)
	}
	q.mu.Unlock()
}
