// Package rrcgo is a small cgo wrapper of libroadrunner's C interface (include/rr.h),
// written the way a Go host would use it (STYLE.md sections 5 and 6):
//   - input buffers are passed as a pointer to the slice's first byte (nil when empty:
//     &b[0] panics on an empty slice) with their length; the library copies them;
//   - output buffers are copied with C.GoBytes and then released with rr_payload_free
//     (never C.free: they belong to the library's heap);
//   - the event callback is an exported Go function, the userdata a runtime/cgo Handle,
//     deleted when the library calls userdata_free.
//
// Build with CGO_CFLAGS=-I<repo>/include and
// CGO_LDFLAGS="-L<repo>/target/release -lroadrunner -Wl,-rpath,<repo>/target/release".
package rrcgo

/*
#include <stdint.h>
#include <stddef.h>
#include "rr.h"

// Defined in callback.go (exported from Go).
extern void goEventCallback(void *userdata, rr_event *event);
extern void goUserdataFree(void *userdata);

static rr_status rr_go_listen(rr_server *s, uintptr_t handle, rr_error **err_out) {
	return rr_server_listen(s, (rr_event_callback)goEventCallback, (void *)handle,
	                        goUserdataFree, err_out);
}
*/
import "C"

import (
	"fmt"
	"runtime/cgo"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Status codes (values from the header, so a renamed constant fails the build).
const (
	StatusOK              = uint32(C.RR_STATUS_OK)
	StatusJobError        = uint32(C.RR_STATUS_JOB_ERROR)
	StatusWorkerError     = uint32(C.RR_STATUS_WORKER_ERROR)
	StatusTimeout         = uint32(C.RR_STATUS_TIMEOUT)
	StatusConfig          = uint32(C.RR_STATUS_CONFIG)
	StatusSpawn           = uint32(C.RR_STATUS_SPAWN)
	StatusState           = uint32(C.RR_STATUS_STATE)
	StatusNullArgument    = uint32(C.RR_STATUS_NULL_ARGUMENT)
	StatusInvalidArgument = uint32(C.RR_STATUS_INVALID_ARGUMENT)
	StatusInternal        = uint32(C.RR_STATUS_INTERNAL)
	StatusCancelled       = uint32(C.RR_STATUS_CANCELLED)
)

// Protocols.
const (
	ProtocolV1 = uint32(C.RR_PROTOCOL_V1)
	ProtocolV2 = uint32(C.RR_PROTOCOL_V2)
)

// Event types.
const (
	EventWorkerConstruct = int32(C.RR_EVENT_WORKER_CONSTRUCT)
	EventWorkerDestruct  = int32(C.RR_EVENT_WORKER_DESTRUCT)
	EventWorkerKill      = int32(C.RR_EVENT_WORKER_KILL)
	EventServerStart     = int32(C.RR_EVENT_SERVER_START)
	EventServerStop      = int32(C.RR_EVENT_SERVER_STOP)
)

// Worker states.
const (
	WorkerStateReady   = int32(C.RR_WORKER_STATE_READY)
	WorkerStateWorking = int32(C.RR_WORKER_STATE_WORKING)
)

// Error is a failed call: the status, the message and the data (a job error's payload).
type Error struct {
	Func    string
	Status  uint32
	Message string
	Data    []byte
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s (%d): %s", e.Func, StatusString(e.Status), e.Status, e.Message)
}

// StatusString is rr_status_str.
func StatusString(s uint32) string {
	p := C.rr_status_str(C.rr_status(s))
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

// Version is rr_version.
func Version() string { return C.GoString(C.rr_version()) }

// VersionNumbers are RR_VERSION_MAJOR/MINOR/PATCH of the header.
func VersionNumbers() (int, int, int) {
	return int(C.RR_VERSION_MAJOR), int(C.RR_VERSION_MINOR), int(C.RR_VERSION_PATCH)
}

func check(fn string, st C.rr_status, cerr *C.rr_error) error {
	if st == C.RR_STATUS_OK {
		if cerr != nil {
			C.rr_error_free(cerr)
			return &Error{Func: fn, Status: StatusInternal, Message: "OK returned with an error object"}
		}
		return nil
	}
	e := &Error{Func: fn, Status: uint32(st)}
	if cerr == nil {
		e.Message = "(no error object) " + StatusString(uint32(st))
		return e
	}
	defer C.rr_error_free(cerr)
	if es := uint32(C.rr_error_status(cerr)); es != e.Status {
		e.Message = fmt.Sprintf("(error object status %d differs) ", es)
	}
	if m := C.rr_error_message(cerr); m != nil {
		e.Message += C.GoString(m)
	}
	var n C.size_t
	d := C.rr_error_data(cerr, &n)
	e.Data = C.GoBytes(unsafe.Pointer(d), C.int(n))
	return e
}

func cstr(s string) *C.char { return C.CString(s) } // caller frees with freeCString

func bufPtr(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0]))
}

// Config is rr_config.
type Config struct{ p *C.rr_config }

// NewConfig is rr_config_new.
func NewConfig(command, relay string) (*Config, error) {
	cc, cr := cstr(command), cstr(relay)
	defer freeCString(cc)
	defer freeCString(cr)
	var out *C.rr_config
	var cerr *C.rr_error
	if err := check("rr_config_new", C.rr_config_new(cc, cr, &out, &cerr), cerr); err != nil {
		return nil, err
	}
	return &Config{p: out}, nil
}

func (c *Config) SetNumWorkers(n uint64) { C.rr_config_set_num_workers(c.p, C.uint64_t(n)) }
func (c *Config) SetMaxJobs(n uint64)    { C.rr_config_set_max_jobs(c.p, C.uint64_t(n)) }
func (c *Config) SetAllocateTimeoutMs(ms uint64) {
	C.rr_config_set_allocate_timeout_ms(c.p, C.uint64_t(ms))
}

// SetEnv is rr_config_set_env.
func (c *Config) SetEnv(key, value string) error {
	ck, cv := cstr(key), cstr(value)
	defer freeCString(ck)
	defer freeCString(cv)
	var cerr *C.rr_error
	return check("rr_config_set_env", C.rr_config_set_env(c.p, ck, cv, &cerr), cerr)
}

// SetProtocol is rr_config_set_protocol.
func (c *Config) SetProtocol(protocol uint32) error {
	var cerr *C.rr_error
	return check("rr_config_set_protocol", C.rr_config_set_protocol(c.p, C.uint32_t(protocol), &cerr), cerr)
}

// Free is rr_config_free.
func (c *Config) Free() {
	C.rr_config_free(c.p)
	c.p = nil
}

// Server is rr_server.
type Server struct{ p *C.rr_server }

// NewServer is rr_server_new.
func NewServer(c *Config) (*Server, error) {
	var out *C.rr_server
	var cerr *C.rr_error
	if err := check("rr_server_new", C.rr_server_new(c.p, &out, &cerr), cerr); err != nil {
		return nil, err
	}
	return &Server{p: out}, nil
}

func (s *Server) Start() error {
	var cerr *C.rr_error
	return check("rr_server_start", C.rr_server_start(s.p, &cerr), cerr)
}

func (s *Server) Stop() error {
	var cerr *C.rr_error
	return check("rr_server_stop", C.rr_server_stop(s.p, &cerr), cerr)
}

func (s *Server) Reset() error {
	var cerr *C.rr_error
	return check("rr_server_reset", C.rr_server_reset(s.p, &cerr), cerr)
}

// Free is rr_server_free: after it returns, no callback runs.
func (s *Server) Free() {
	C.rr_server_free(s.p)
	s.p = nil
}

// Exec is rr_exec: the answer's context and body, copied into Go memory.
func (s *Server) Exec(context, body []byte) ([]byte, []byte, error) {
	var out *C.rr_payload
	var cerr *C.rr_error
	st := C.rr_exec(s.p, bufPtr(context), C.size_t(len(context)), bufPtr(body),
		C.size_t(len(body)), &out, &cerr)
	if err := check("rr_exec", st, cerr); err != nil {
		return nil, nil, err
	}
	if out == nil {
		return nil, nil, &Error{Func: "rr_exec", Status: StatusInternal, Message: "OK without a payload"}
	}
	defer C.rr_payload_free(out)
	var n C.size_t
	p := C.rr_payload_context(out, &n)
	ctx := C.GoBytes(unsafe.Pointer(p), C.int(n))
	p = C.rr_payload_body(out, &n)
	b := C.GoBytes(unsafe.Pointer(p), C.int(n))
	return ctx, b, nil
}

// copyPayload copies a payload's context and body into Go memory and frees it.
func copyPayload(out *C.rr_payload) ([]byte, []byte) {
	defer C.rr_payload_free(out)
	var n C.size_t
	p := C.rr_payload_context(out, &n)
	ctx := C.GoBytes(unsafe.Pointer(p), C.int(n))
	p = C.rr_payload_body(out, &n)
	return ctx, C.GoBytes(unsafe.Pointer(p), C.int(n))
}

// Stream is rr_stream: the chunks of one streamed answer.
type Stream struct{ p *C.rr_stream }

// ExecStream is rr_exec_stream.
func (s *Server) ExecStream(context, body []byte) (*Stream, error) {
	var out *C.rr_stream
	var cerr *C.rr_error
	st := C.rr_exec_stream(s.p, bufPtr(context), C.size_t(len(context)), bufPtr(body),
		C.size_t(len(body)), &out, &cerr)
	if err := check("rr_exec_stream", st, cerr); err != nil {
		return nil, err
	}
	return &Stream{p: out}, nil
}

// Next is rr_stream_next: the next chunk, or ok == false after the last one.
func (st *Stream) Next() (context, body []byte, ok bool, err error) {
	var out *C.rr_payload
	var cerr *C.rr_error
	if err := check("rr_stream_next", C.rr_stream_next(st.p, &out, &cerr), cerr); err != nil {
		return nil, nil, false, err
	}
	if out == nil {
		return nil, nil, false, nil
	}
	context, body = copyPayload(out)
	return context, body, true, nil
}

// Cancel is rr_stream_cancel.
func (st *Stream) Cancel() error {
	var cerr *C.rr_error
	return check("rr_stream_cancel", C.rr_stream_cancel(st.p, &cerr), cerr)
}

// Free is rr_stream_free.
func (st *Stream) Free() {
	C.rr_stream_free(st.p)
	st.p = nil
}

// WorkerInfo is a copy of rr_worker_info.
type WorkerInfo struct {
	Pid           int64
	State         int32
	NumExecs      uint64
	CreatedUnixMs int64
	RssBytes      uint64
}

// Workers is rr_server_workers (copied, then released with rr_worker_info_free).
func (s *Server) Workers() ([]WorkerInfo, error) {
	var arr *C.rr_worker_info
	var n C.size_t
	var cerr *C.rr_error
	if err := check("rr_server_workers", C.rr_server_workers(s.p, &arr, &n, &cerr), cerr); err != nil {
		return nil, err
	}
	defer C.rr_worker_info_free(arr, n)
	out := make([]WorkerInfo, 0, int(n))
	if n > 0 {
		for _, w := range unsafe.Slice(arr, int(n)) {
			out = append(out, WorkerInfo{int64(w.pid), int32(w.state), uint64(w.num_execs),
				int64(w.created_unix_ms), uint64(w.rss_bytes)})
		}
	}
	return out, nil
}

// Event is a copy of an rr_event (the C event is only borrowed for the callback).
type Event struct {
	Type       int32
	Pid        int64
	Message    string
	HasMessage bool
}

// Listener collects events; the library reaches it through a cgo.Handle.
type Listener struct {
	mu            sync.Mutex
	events        []Event
	inCallback    int32
	maxConcurrent int32
	freed         int32
}

// Events returns a copy of the events received so far.
func (l *Listener) Events() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}

// Freed is how many times userdata_free ran for this listener.
func (l *Listener) Freed() int32 { return atomic.LoadInt32(&l.freed) }

// MaxConcurrent is the largest number of callbacks seen running at once.
func (l *Listener) MaxConcurrent() int32 { return atomic.LoadInt32(&l.maxConcurrent) }

var liveHandles int64

// LiveHandles is how many listener handles exist (created by Listen, not yet deleted by
// userdata_free).
func LiveHandles() int64 { return atomic.LoadInt64(&liveHandles) }

// Listen is rr_server_listen with l as the userdata.
func (s *Server) Listen(l *Listener) error {
	h := cgo.NewHandle(l)
	atomic.AddInt64(&liveHandles, 1)
	var cerr *C.rr_error
	if err := check("rr_server_listen", C.rr_go_listen(s.p, C.uintptr_t(h), &cerr), cerr); err != nil {
		// On failure the library did not take the userdata.
		h.Delete()
		atomic.AddInt64(&liveHandles, -1)
		return err
	}
	return nil
}

// Unlisten is rr_server_listen with a NULL callback.
func (s *Server) Unlisten() error {
	var cerr *C.rr_error
	return check("rr_server_listen", C.rr_server_listen(s.p, nil, nil, nil, &cerr), cerr)
}
