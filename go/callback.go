package roadrunner

// Only the functions exported to C: a file with //export may have only declarations in its
// preamble (it is copied into _cgo_export.h).

/*
#include "rr.h"
*/
import "C"

import (
	"runtime/cgo"
	"sync/atomic"
	"unsafe"
)

// liveHandles counts the listeners' handles the library holds (a check for the tests: each
// is deleted by userdata_free, when replaced or when the server is freed).
var liveHandles int64

//export rrGoEvent
func rrGoEvent(userdata unsafe.Pointer, event *C.rr_event) {
	fn := cgo.Handle(uintptr(userdata)).Value().(func(Event))
	ev := Event{Type: EventType(C.rr_event_type(event)), Pid: int64(C.rr_event_pid(event))}
	if m := C.rr_event_message(event); m != nil {
		ev.Message = C.GoString(m)
	}
	fn(ev)
}

//export rrGoEventFree
func rrGoEventFree(userdata unsafe.Pointer) {
	cgo.Handle(uintptr(userdata)).Delete()
	atomic.AddInt64(&liveHandles, -1)
}
