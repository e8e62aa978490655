package rrcgo

// This file only holds the functions exported to C: a file with //export may have only
// declarations in its preamble (it is copied into _cgo_export.h).

/*
#include "rr.h"
*/
import "C"

import (
	"runtime/cgo"
	"sync/atomic"
	"unsafe"
)

var badUserdataFree int64

// BadUserdataFree counts userdata_free calls for a handle already deleted (a double free).
func BadUserdataFree() int64 { return atomic.LoadInt64(&badUserdataFree) }

//export goEventCallback
func goEventCallback(userdata unsafe.Pointer, event *C.rr_event) {
	l := cgo.Handle(uintptr(userdata)).Value().(*Listener)
	n := atomic.AddInt32(&l.inCallback, 1)
	defer atomic.AddInt32(&l.inCallback, -1)
	for {
		m := atomic.LoadInt32(&l.maxConcurrent)
		if n <= m || atomic.CompareAndSwapInt32(&l.maxConcurrent, m, n) {
			break
		}
	}
	ev := Event{Type: int32(C.rr_event_type(event)), Pid: int64(C.rr_event_pid(event))}
	if msg := C.rr_event_message(event); msg != nil {
		ev.Message, ev.HasMessage = C.GoString(msg), true
	}
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

//export goUserdataFree
func goUserdataFree(userdata unsafe.Pointer) {
	defer func() {
		if recover() != nil { // cgo.Handle.Value panics on a deleted handle
			atomic.AddInt64(&badUserdataFree, 1)
		}
	}()
	h := cgo.Handle(uintptr(userdata))
	l := h.Value().(*Listener)
	atomic.AddInt32(&l.freed, 1)
	h.Delete()
	atomic.AddInt64(&liveHandles, -1)
}
