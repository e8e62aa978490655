package roadrunner

/*
#include <stdlib.h>
#include <stdint.h>
#include <stddef.h>
#include "rr.h"
*/
import "C"

import (
	"sync"
	"unsafe"
)

// Worker is the worker's end of a relay, for a worker program written in Go: make one with
// NewWorker, then loop on Receive and answer each task with Respond, Error or Stop, until
// Receive says the server asked this worker to stop. Its methods may be called from any
// goroutine, one at a time (they are serialized).
//
// Over pipes, NewWorker takes the process's stdin and stdout for the relay: stdout then goes
// to stderr (a stray fmt.Println ends up in the server's stderr capture instead of
// corrupting the frames) and stdin reads /dev/null.
type Worker struct {
	mu sync.Mutex
	p  *C.rr_worker
}

// NewWorker connects to the server through relay: "pipes", "tcp://host:port" or
// "unix://path"; "" means the environment variable RR_RELAY (which the server sets for the
// workers it starts), and pipes when it is unset. protocol is ProtocolV1 or ProtocolV2 (0:
// V1); it must match the server's Config.Protocol. Errors match ErrInvalidArgument (a bad
// relay or protocol) or ErrWorker (the connection failed).
func NewWorker(relay string, protocol int) (*Worker, error) {
	if protocol == 0 {
		protocol = ProtocolV1
	}
	if protocol < 0 || protocol > 1<<31 {
		return nil, errorf("new worker", StatusInvalidArgument, "protocol %d is not 1 or 2", protocol)
	}
	var r *C.char
	if relay != "" {
		r = C.CString(relay)
		defer C.free(unsafe.Pointer(r))
	}
	var out *C.rr_worker
	var cerr *C.rr_error
	if err := check("new worker", C.rr_worker_new_with_protocol(r, C.uint32_t(protocol), &out, &cerr), cerr); err != nil {
		return nil, err
	}
	return &Worker{p: out}, nil
}

func (w *Worker) call(op string, f func(*C.rr_worker, **C.rr_error) C.rr_status) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.p == nil {
		return errorf(op, StatusState, "the worker was closed")
	}
	var cerr *C.rr_error
	return check(op, f(w.p, &cerr), cerr)
}

// Receive waits for the next task. ok is false when the server asked this worker to stop
// (or closed the relay): the program should then Close the worker and exit. ErrState when
// the previous task was not answered; ErrWorker when the relay is broken (exit).
func (w *Worker) Receive() (task Payload, ok bool, err error) {
	var out *C.rr_payload
	err = w.call("receive", func(p *C.rr_worker, e **C.rr_error) C.rr_status { return C.rr_worker_receive(p, &out, e) })
	if err != nil || out == nil {
		return Payload{}, false, err
	}
	return takePayload(out), true, nil
}

// Respond answers the current task with context and body (with protocol V2, after chunks
// sent with SendChunk: the last part of the answer). ErrState when there is no task to
// answer; ErrWorker when the relay is broken.
func (w *Worker) Respond(context, body []byte) error {
	return w.call("respond", func(p *C.rr_worker, e **C.rr_error) C.rr_status {
		return C.rr_worker_respond(p, bufPtr(context), C.size_t(len(context)), bufPtr(body), C.size_t(len(body)), e)
	})
}

// SendChunk sends one chunk of a streamed answer (protocol V2 only; ErrInvalidArgument with
// V1); finish with Respond or Error. When the host stopped the stream, the chunk is not
// sent, the library ends the stream itself, and SendChunk returns an error matching
// ErrCancelled: the task needs no other answer, go back to Receive.
func (w *Worker) SendChunk(context, body []byte) error {
	return w.call("send chunk", func(p *C.rr_worker, e **C.rr_error) C.rr_status {
		return C.rr_worker_send_chunk(p, bufPtr(context), C.size_t(len(context)), bufPtr(body), C.size_t(len(body)), e)
	})
}

// Error answers the current task with a job error whose message is message: the host's
// Exec returns a *JobError with these bytes as its Data. This worker stays in the pool.
func (w *Worker) Error(message []byte) error {
	return w.call("error", func(p *C.rr_worker, e **C.rr_error) C.rr_status {
		return C.rr_worker_error(p, bufPtr(message), C.size_t(len(message)), e)
	})
}

// Stop answers the current task with a request to be replaced: the pool retires this worker
// and runs the same task on another one. Keep calling Receive afterwards: it then says stop.
func (w *Worker) Stop() error {
	return w.call("stop", func(p *C.rr_worker, e **C.rr_error) C.rr_status { return C.rr_worker_stop(p, e) })
}

// Close closes the relay and releases the worker. Safe to call more than once.
func (w *Worker) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	C.rr_worker_free(w.p)
	w.p = nil
}
