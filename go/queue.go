package roadrunner

// The completion queue behind Exec with a context: one rr_queue per Server, and one
// dispatcher goroutine that waits in poll(2) on the queue's descriptor and on a wake pipe,
// takes the completions with rr_queue_next and hands each to the channel of its task,
// found by tag. The library only ever sees the tag, an integer.

/*
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stddef.h>
#include "rr.h"

// Waits until the queue's descriptor or the wake descriptor is readable: bit 1 for the
// queue, bit 2 for the wake pipe, or -errno.
static int rr_go_wait(int qfd, int wakefd) {
	struct pollfd p[2] = {{qfd, POLLIN, 0}, {wakefd, POLLIN, 0}};
	for (;;) {
		int r = poll(p, 2, -1);
		if (r >= 0) {
			return (p[0].revents ? 1 : 0) | (p[1].revents ? 2 : 0);
		}
		if (errno != EINTR) {
			return -errno;
		}
	}
}
*/
import "C"

import (
	"sync"
	"syscall"
	"time"
)

type completion struct {
	status  Status
	payload Payload
	err     error
}

type completionQueue struct {
	// life is held shared by C calls on p from Exec (submit, cancel), exclusively by close.
	life sync.RWMutex
	p    *C.rr_queue // nil once freed

	wakeR, wakeW int // the wake pipe: close writes to it to stop the dispatcher
	stopped      chan struct{}

	mu      sync.Mutex
	nextTag uint64
	pending map[uint64]chan completion // buffered (1): the dispatcher never blocks
}

func newCompletionQueue() (*completionQueue, error) {
	var out *C.rr_queue
	var cerr *C.rr_error
	if err := check("exec", C.rr_queue_new(&out, &cerr), cerr); err != nil {
		return nil, err
	}
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		C.rr_queue_free(out)
		return nil, errorf("exec", StatusInternal, "pipe2: %v", err)
	}
	q := &completionQueue{p: out, wakeR: fds[0], wakeW: fds[1], stopped: make(chan struct{}),
		pending: map[uint64]chan completion{}}
	go q.dispatch()
	return q, nil
}

// dispatch runs until close writes to the wake pipe; it alone calls rr_queue_next.
func (q *completionQueue) dispatch() {
	defer close(q.stopped)
	fd := C.rr_queue_fd(q.p)
	for {
		q.drain()
		r := C.rr_go_wait(fd, C.int(q.wakeR))
		if r < 0 {
			// poll itself failed (not expected): do not spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if r&2 != 0 {
			q.drain()
			return
		}
	}
}

// drain takes every completion waiting now.
func (q *completionQueue) drain() {
	for {
		var out C.rr_completion
		if C.rr_queue_next(q.p, 0, &out, nil) != C.RR_STATUS_OK {
			return // RR_STATUS_TIMEOUT: none waits
		}
		c := completion{status: Status(out.status)}
		if c.status == StatusOK {
			C.rr_error_free(out.error) // NULL on success
			c.payload = takePayload(out.payload)
		} else {
			C.rr_payload_free(out.payload) // NULL on failure
			c.err = fromC("exec", c.status, out.error)
		}
		tag := uint64(out.tag)
		q.mu.Lock()
		ch := q.pending[tag]
		delete(q.pending, tag)
		q.mu.Unlock()
		if ch != nil {
			ch <- c
		}
	}
}

// submit is rr_exec_submit: the task's tag and the channel its completion comes on (closed
// without one if the queue is closed first).
func (q *completionQueue) submit(s *Server, context, body []byte) (uint64, <-chan completion, error) {
	q.life.RLock()
	defer q.life.RUnlock()
	if q.p == nil {
		return 0, nil, errClosed("exec")
	}
	ch := make(chan completion, 1)
	q.mu.Lock()
	q.nextTag++
	tag := q.nextTag
	q.pending[tag] = ch // before the submit: the completion may come at once
	q.mu.Unlock()
	p, err := s.enter("exec")
	if err == nil {
		var cerr *C.rr_error
		st := C.rr_exec_submit(p, q.p, bufPtr(context), C.size_t(len(context)), bufPtr(body),
			C.size_t(len(body)), C.uint64_t(tag), &cerr)
		s.leave()
		err = check("exec", st, cerr)
	}
	if err != nil {
		q.mu.Lock()
		delete(q.pending, tag)
		q.mu.Unlock()
		return 0, nil, err
	}
	return tag, ch, nil
}

// cancel is rr_queue_cancel: the task completes at once with RR_STATUS_CANCELLED, unless
// it already completed.
func (q *completionQueue) cancel(tag uint64) {
	q.life.RLock()
	defer q.life.RUnlock()
	if q.p != nil {
		_ = C.rr_queue_cancel(q.p, C.uint64_t(tag), nil) // fails only for a NULL queue
	}
}

// close stops the dispatcher (after it delivered what waits), frees the queue, and closes
// the channels of tasks that got no completion.
func (q *completionQueue) close() {
	q.life.Lock()
	defer q.life.Unlock()
	if q.p == nil {
		return
	}
	_, _ = syscall.Write(q.wakeW, []byte{1})
	<-q.stopped
	C.rr_queue_free(q.p) // races with nothing: the dispatcher is gone, submit/cancel wait
	q.p = nil
	syscall.Close(q.wakeR)
	syscall.Close(q.wakeW)
	q.mu.Lock()
	for tag, ch := range q.pending {
		close(ch)
		delete(q.pending, tag)
	}
	q.mu.Unlock()
}
