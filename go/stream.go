package roadrunner

/*
#include <stdint.h>
#include <stddef.h>
#include "rr.h"
*/
import "C"

import (
	"context"
	"sync"
)

// Stream is the answer to one task, chunk by chunk as the worker sends them (protocol V2
// workers stream; any other answer is a stream of one chunk). While it is open its worker
// runs no other task: read it to the end or Close it. Its methods may be called from any
// goroutine.
type Stream struct {
	srv *Server
	ctx context.Context

	mu       sync.Mutex // serializes the C calls on p (an rr_stream is not synchronized)
	p        *C.rr_stream
	finished bool  // the last chunk was read, or the task failed or was cancelled
	err      error // what Next gives once finished by a failure or a cancel

	closeOnce sync.Once
	closing   chan struct{} // closed by Close: ends the goroutine that watches ctx
}

// Stream runs one task like Exec and gives its answer as a Stream. It waits for the
// answer's first frame (up to Config.AllocateTimeout for a free worker, then the worker).
// When ctx is done, before or after Stream returns, the task is cancelled: the worker is
// asked to stop sending (and killed if it does not within Config.StreamTimeout), and Stream
// or Next return an *Error matching ErrCancelled and ctx.Err(). The Stream must be closed
// (Close) once done with.
//
// A limit of the C interface: an rr_stream is not synchronized, so a stream cannot be
// cancelled while the library waits in it for a chunk. A Next waiting for a chunk returns
// as soon as ctx is done, but the cancel (and a Close) then waits for that chunk, or for the
// task's failure: set Config.ExecTTL to bound a worker that stops sending.
func (s *Server) Stream(ctx context.Context, context, body []byte) (*Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, cancelledError("stream", err)
	}
	if ctx.Done() == nil {
		return s.openStream(ctx, context, body)
	}
	type opened struct {
		st  *Stream
		err error
	}
	res := make(chan opened) // unbuffered: a stream is handed over only to a caller still waiting
	abandoned := make(chan struct{})
	go func() {
		st, err := s.openStream(ctx, context, body)
		select {
		case res <- opened{st, err}:
		case <-abandoned:
			if st != nil {
				st.Close()
			}
		}
	}()
	select {
	case r := <-res:
		return r.st, r.err
	case <-ctx.Done():
		close(abandoned)
		return nil, cancelledError("stream", ctx.Err())
	}
}

func cancelledError(op string, cause error) error {
	return &Error{Op: op, Status: StatusCancelled, Message: "the task was cancelled: its context is done", Err: cause}
}

func (s *Server) openStream(ctx context.Context, context, body []byte) (*Stream, error) {
	p, err := s.enter("stream")
	if err != nil {
		return nil, err
	}
	defer s.leave()
	var out *C.rr_stream
	var cerr *C.rr_error
	status := C.rr_exec_stream(p, bufPtr(context), C.size_t(len(context)), bufPtr(body), C.size_t(len(body)), &out, &cerr)
	if err := check("stream", status, cerr); err != nil {
		return nil, err
	}
	st := &Stream{srv: s, ctx: ctx, p: out, closing: make(chan struct{})}
	// Registered while the server is held: Close, which frees the streams it finds after
	// taking the server, finds this one.
	s.smu.Lock()
	s.streams[st] = struct{}{}
	s.smu.Unlock()
	if ctx.Done() != nil {
		go st.watch()
	}
	return st, nil
}

// watch cancels the stream when its context is done first.
func (st *Stream) watch() {
	select {
	case <-st.ctx.Done():
		st.mu.Lock()
		st.cancelLocked(st.ctx.Err())
		st.mu.Unlock()
	case <-st.closing:
	}
}

// cancelLocked asks the worker to stop an unfinished stream (rr_stream_cancel: blocks until
// the worker ended it, at most stream_timeout).
func (st *Stream) cancelLocked(cause error) {
	if st.p == nil || st.finished {
		return
	}
	_ = C.rr_stream_cancel(st.p, nil) // fails only for a NULL stream
	st.finished = true
	st.err = cancelledError("stream", cause)
}

type chunkResult struct {
	chunk Payload
	ok    bool
	err   error
}

// Next gives the next chunk, waiting for it: ok is false after the last chunk (with a nil
// error). An error ends the stream: a *JobError when the worker ended it with an error, an
// *Error matching ErrWorker or ErrExecTTL when its worker failed, ErrCancelled when ctx was
// done, ErrState once the stream is closed.
func (st *Stream) Next() (chunk Payload, ok bool, err error) {
	if st.ctx.Done() == nil {
		r := st.next()
		return r.chunk, r.ok, r.err
	}
	if err := st.ctx.Err(); err != nil {
		return Payload{}, false, cancelledError("stream", err)
	}
	res := make(chan chunkResult, 1)
	go func() { res <- st.next() }()
	select {
	case r := <-res:
		return r.chunk, r.ok, r.err
	case <-st.ctx.Done():
		// The watcher cancels the stream once the rr_stream_next in progress returns.
		return Payload{}, false, cancelledError("stream", st.ctx.Err())
	}
}

func (st *Stream) next() chunkResult {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.p == nil {
		return chunkResult{err: errorf("stream", StatusState, "the stream was closed")}
	}
	if st.finished {
		return chunkResult{err: st.err}
	}
	var out *C.rr_payload
	var cerr *C.rr_error
	if err := check("stream", C.rr_stream_next(st.p, &out, &cerr), cerr); err != nil {
		st.finished, st.err = true, err
		return chunkResult{err: err}
	}
	if out == nil {
		st.finished = true
		return chunkResult{}
	}
	return chunkResult{chunk: takePayload(out), ok: true}
}

// Close releases the stream; an unfinished one is cancelled first (which waits up to
// Config.StreamTimeout for the worker to end it). Safe to call more than once. Returns nil.
func (st *Stream) Close() error {
	st.closeOnce.Do(func() { close(st.closing) })
	st.mu.Lock()
	st.freeLocked()
	st.mu.Unlock()
	return nil
}

// tryClose closes the stream unless a call holds it (a Next waiting in the library).
func (st *Stream) tryClose() {
	if st.mu.TryLock() {
		st.closeOnce.Do(func() { close(st.closing) })
		st.freeLocked()
		st.mu.Unlock()
	}
}

func (st *Stream) freeLocked() {
	if st.p == nil {
		return
	}
	C.rr_stream_free(st.p)
	st.p = nil
	st.srv.smu.Lock()
	delete(st.srv.streams, st)
	st.srv.smu.Unlock()
}
