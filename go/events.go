package roadrunner

/*
#include <stdint.h>
#include "rr.h"

// Defined in callback.go (exported from Go).
extern void rrGoEvent(void *userdata, rr_event *event);
extern void rrGoEventFree(void *userdata);

static rr_status rr_go_listen(rr_server *s, uintptr_t handle, rr_error **err_out) {
	return rr_server_listen(s, (rr_event_callback)rrGoEvent, (void *)handle, rrGoEventFree, err_out);
}
*/
import "C"

import (
	"fmt"
	"runtime/cgo"
	"sync/atomic"
)

// EventType is the type of an event (an RR_EVENT_* number). New types may appear, above the
// existing ones: ignore those you do not know.
type EventType int32

// The event types of rr.h.
const (
	EventWorkerConstruct EventType = C.RR_EVENT_WORKER_CONSTRUCT // a worker started and answered the handshake
	EventWorkerDestruct  EventType = C.RR_EVENT_WORKER_DESTRUCT  // a worker was stopped and is gone
	EventWorkerKill      EventType = C.RR_EVENT_WORKER_KILL      // a worker was killed
	EventWorkerError     EventType = C.RR_EVENT_WORKER_ERROR     // a worker failed; the message says how
	EventWorkerDead      EventType = C.RR_EVENT_WORKER_DEAD      // a worker exited on its own
	EventPoolError       EventType = C.RR_EVENT_POOL_ERROR       // the pool could not keep any worker alive
	EventServerStart     EventType = C.RR_EVENT_SERVER_START     // the server started
	EventServerStop      EventType = C.RR_EVENT_SERVER_STOP      // the server stopped
	EventServerFailure   EventType = C.RR_EVENT_SERVER_FAILURE   // the server could not rebuild a failed pool
	EventPoolConstruct   EventType = C.RR_EVENT_POOL_CONSTRUCT   // a pool was built (start, reconfigure, reset)
	EventPoolDestruct    EventType = C.RR_EVENT_POOL_DESTRUCT    // a pool was stopped
	EventWorkerStderr    EventType = C.RR_EVENT_WORKER_STDERR    // a line a worker wrote to stderr
	EventWorkerExecTTL   EventType = C.RR_EVENT_WORKER_EXEC_TTL  // a task ran past exec_ttl; its worker was killed
	EventWorkerTTL       EventType = C.RR_EVENT_WORKER_TTL       // a worker lived past ttl and was retired
	EventWorkerIdleTTL   EventType = C.RR_EVENT_WORKER_IDLE_TTL  // a worker idled past idle_ttl and was retired
	EventWorkerMaxMemory EventType = C.RR_EVENT_WORKER_MAX_MEMORY
	EventWorkerMaxJobs   EventType = C.RR_EVENT_WORKER_MAX_JOBS
	EventQueueFull       EventType = C.RR_EVENT_QUEUE_FULL // a caller was refused with ErrQueueFull
	// An elastic pool starts more workers because callers waited ScaleAfter; the message says
	// how many, and the pool's size before and after. Pid -1.
	EventPoolGrow EventType = C.RR_EVENT_POOL_GROW
	// An elastic pool stopped an extra worker (Pid) that idled past ScaleIdle.
	EventPoolShrink EventType = C.RR_EVENT_POOL_SHRINK
	// Reconfigure ignored the new Config's Relay and RelayTimeout, which differ from the
	// server's (see Config.Differs); the message names both. Pid -1.
	EventReconfigureIgnored EventType = C.RR_EVENT_RECONFIGURE_IGNORED
	// A worker (Pid) left the pool because RemoveWorker asked.
	EventWorkerRemoved EventType = C.RR_EVENT_WORKER_REMOVED
)

var eventNames = map[EventType]string{
	EventWorkerConstruct: "worker construct", EventWorkerDestruct: "worker destruct",
	EventWorkerKill: "worker kill", EventWorkerError: "worker error", EventWorkerDead: "worker dead",
	EventPoolError: "pool error", EventServerStart: "server start", EventServerStop: "server stop",
	EventServerFailure: "server failure", EventPoolConstruct: "pool construct",
	EventPoolDestruct: "pool destruct", EventWorkerStderr: "worker stderr",
	EventWorkerExecTTL: "worker exec ttl", EventWorkerTTL: "worker ttl",
	EventWorkerIdleTTL: "worker idle ttl", EventWorkerMaxMemory: "worker max memory",
	EventWorkerMaxJobs: "worker max jobs", EventQueueFull: "queue full",
	EventPoolGrow: "pool grow", EventPoolShrink: "pool shrink",
	EventReconfigureIgnored: "reconfigure ignored", EventWorkerRemoved: "worker removed",
}

func (t EventType) String() string {
	if n, ok := eventNames[t]; ok {
		return n
	}
	return fmt.Sprintf("event %d", int32(t))
}

// Event is one event of a server (a copy: it may be kept).
type Event struct {
	Type    EventType
	Pid     int64  // the worker's pid, or -1 when the event is not about one worker
	Message string // an error text or a stderr line (without its newline); "" when none
}

// Listen registers fn to receive the server's events, replacing the previous function (the
// call waits until that one is not running); nil unregisters. fn runs on a thread of the
// library, one call at a time, in the order the events happened; it should return quickly
// (events queue behind it). It may call the methods of its Server (Stats, Workers, Exec...;
// they fail with ErrState once Close has begun), but not Stop, Close or Listen: those wait
// for the callback to return. As in any goroutine, a panic in fn ends the program.
func (s *Server) Listen(fn func(Event)) error {
	// Not under life: rr_server_listen waits for a running callback, which may be waiting
	// for life (a method called from fn) behind a Close waiting for life's readers. Close
	// takes listenMu before it frees p, so p stays valid until this returns.
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	p, err := s.enter("listen")
	if err != nil {
		return err
	}
	s.leave()
	var cerr *C.rr_error
	if fn == nil {
		return check("listen", C.rr_server_listen(p, nil, nil, nil, &cerr), cerr)
	}
	h := cgo.NewHandle(fn)
	atomic.AddInt64(&liveHandles, 1)
	if err := check("listen", C.rr_go_listen(p, C.uintptr_t(h), &cerr), cerr); err != nil {
		h.Delete() // on failure the library did not take the userdata
		atomic.AddInt64(&liveHandles, -1)
		return err
	}
	return nil
}
