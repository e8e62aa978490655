package roadrunner

/*
#cgo LDFLAGS: -lroadrunner
#include <stdint.h>
#include <stddef.h>
#include "rr.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// Status is the library's status code (rr_status): the family of a failure.
type Status uint32

// The statuses of rr.h (their values never change).
const (
	StatusOK              Status = C.RR_STATUS_OK
	StatusJobError        Status = C.RR_STATUS_JOB_ERROR
	StatusWorkerError     Status = C.RR_STATUS_WORKER_ERROR
	StatusTimeout         Status = C.RR_STATUS_TIMEOUT
	StatusConfig          Status = C.RR_STATUS_CONFIG
	StatusSpawn           Status = C.RR_STATUS_SPAWN
	StatusState           Status = C.RR_STATUS_STATE
	StatusNullArgument    Status = C.RR_STATUS_NULL_ARGUMENT
	StatusInvalidArgument Status = C.RR_STATUS_INVALID_ARGUMENT
	StatusInternal        Status = C.RR_STATUS_INTERNAL
	StatusExecTTL         Status = C.RR_STATUS_EXEC_TTL
	StatusQueueFull       Status = C.RR_STATUS_QUEUE_FULL
	StatusCancelled       Status = C.RR_STATUS_CANCELLED
)

// String is the library's short description of the status (rr_status_str), e.g. "timeout".
func (s Status) String() string { return C.GoString(C.rr_status_str(C.rr_status(s))) }

// The sentinel errors: every error of this package matches exactly one of them with
// errors.Is (a *JobError matches ErrJob, an *Error the sentinel of its Status).
var (
	// ErrJob: the worker answered the task with an error (a *JobError); it stays in the pool.
	ErrJob = errors.New("roadrunner: job error")
	// ErrWorker: the worker process failed (crash, broken protocol, killed); it was replaced.
	ErrWorker = errors.New("roadrunner: worker error")
	// ErrNoFreeWorker: no worker was free within Config.AllocateTimeout.
	ErrNoFreeWorker = errors.New("roadrunner: no free worker")
	// ErrConfig: a setting is invalid; the message names it.
	ErrConfig = errors.New("roadrunner: invalid configuration")
	// ErrSpawn: a worker could not be started, or did not connect or answer in time.
	ErrSpawn = errors.New("roadrunner: worker spawn failed")
	// ErrState: the server is not started, was stopped or closed (or the stream was closed).
	ErrState = errors.New("roadrunner: wrong state")
	// ErrExecTTL: the task ran longer than Config.ExecTTL and its worker was killed.
	ErrExecTTL = errors.New("roadrunner: task ran past exec_ttl")
	// ErrQueueFull: Config.MaxQueue callers were already waiting for a worker.
	ErrQueueFull = errors.New("roadrunner: queue full")
	// ErrCancelled: the task was cancelled before it finished (its context was done, or
	// the host stopped a stream, seen from the worker side).
	ErrCancelled = errors.New("roadrunner: cancelled")
	// ErrInvalidArgument: an argument is out of range, not valid UTF-8, or missing.
	ErrInvalidArgument = errors.New("roadrunner: invalid argument")
	// ErrInternal: a bug in the library.
	ErrInternal = errors.New("roadrunner: internal error")
)

func sentinel(s Status) error {
	switch s {
	case StatusJobError:
		return ErrJob
	case StatusWorkerError:
		return ErrWorker
	case StatusTimeout:
		return ErrNoFreeWorker
	case StatusConfig:
		return ErrConfig
	case StatusSpawn:
		return ErrSpawn
	case StatusState:
		return ErrState
	case StatusNullArgument, StatusInvalidArgument:
		return ErrInvalidArgument
	case StatusExecTTL:
		return ErrExecTTL
	case StatusQueueFull:
		return ErrQueueFull
	case StatusCancelled:
		return ErrCancelled
	default:
		return ErrInternal
	}
}

// Error is a failed call: what was called, the library's status and message. It matches
// the sentinel of its Status with errors.Is, and unwraps to Err (for a cancelled task, the
// context's error).
type Error struct {
	Op      string // what failed: "exec", "start", "new server", ...
	Status  Status
	Message string // the library's message: it names the setting, argument or worker concerned
	Err     error  // the cause, when there is one (ctx.Err() for a cancelled task)
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("roadrunner: %s: %s", e.Op, e.Status)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Err != nil {
		msg += " (" + e.Err.Error() + ")"
	}
	return msg
}

// Is reports whether target is the sentinel of e's Status.
func (e *Error) Is(target error) bool { return target == sentinel(e.Status) }

// Unwrap returns the cause (nil unless set).
func (e *Error) Unwrap() error { return e.Err }

// JobError is a task the worker answered with an error (RR_STATUS_JOB_ERROR). The worker
// stays in the pool. It matches ErrJob with errors.Is.
type JobError struct {
	Data    []byte // the error message exactly as the worker sent it (not necessarily UTF-8)
	Message string // the library's message
}

func (e *JobError) Error() string {
	return fmt.Sprintf("roadrunner: job error: %q", e.Data)
}

// Is reports whether target is ErrJob.
func (e *JobError) Is(target error) bool { return target == ErrJob }

func errorf(op string, s Status, format string, args ...interface{}) *Error {
	return &Error{Op: op, Status: s, Message: fmt.Sprintf(format, args...)}
}

// errClosed is what a call on a closed Server gets.
func errClosed(op string) error { return errorf(op, StatusState, "the server was closed") }

// check turns a status and its error object into a Go error, and frees the error object.
func check(op string, st C.rr_status, cerr *C.rr_error) error {
	if st == C.RR_STATUS_OK {
		C.rr_error_free(cerr) // never set on success; freeing NULL does nothing
		return nil
	}
	return fromC(op, Status(st), cerr)
}

// fromC builds the error of a failed call with status s from cerr (which may be NULL) and
// frees cerr.
func fromC(op string, s Status, cerr *C.rr_error) error {
	var msg string
	var data []byte
	if cerr != nil {
		if m := C.rr_error_message(cerr); m != nil {
			msg = C.GoString(m)
		}
		var n C.size_t
		data = goBytes(C.rr_error_data(cerr, &n), n)
		C.rr_error_free(cerr)
	}
	if s == StatusJobError {
		return &JobError{Data: data, Message: msg}
	}
	return &Error{Op: op, Status: s, Message: msg}
}

// goBytes copies n bytes at p into Go memory.
func goBytes(p *C.uint8_t, n C.size_t) []byte {
	out := make([]byte, int(n))
	if n > 0 && p != nil {
		copy(out, unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)))
	}
	return out
}

// bufPtr is the pointer to pass for an input buffer: NULL when it is empty (&b[0] would
// panic). The library only reads it during the call (or copies it).
func bufPtr(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0]))
}
