// Package roadrunner runs a pool of long-lived worker processes and feeds them tasks: a Go
// binding (cgo) of libroadrunner's C interface, include/rr.h.
//
// # Host side
//
// A Server is made from a Config (every setting of the pool, durations as time.Duration),
// started, given tasks, and closed:
//
//	srv, err := roadrunner.NewServer(roadrunner.Config{Command: "php worker.php", NumWorkers: 4})
//	if err != nil { ... }
//	defer srv.Close()
//	if err := srv.Start(); err != nil { ... }
//	answer, err := srv.Exec(ctx, []byte(`{"id":1}`), body)
//
// Exec with a context that can be done (a deadline, a cancel function) goes through a
// completion queue of the Server (rr_exec_submit, one dispatcher goroutine per Server that
// polls the queue's descriptor): when ctx is done first, the task is cancelled with
// rr_queue_cancel (a task still waiting for a worker never runs; a running one has its worker
// killed and replaced) and Exec returns an error that matches both ErrCancelled and ctx.Err()
// (context.Canceled or context.DeadlineExceeded) with errors.Is. With a context that is never
// done (context.Background()), Exec calls rr_exec on the caller's goroutine: no hop to the
// dispatcher.
//
// Stream runs a task whose answer comes in chunks (protocol V2 workers); Workers and Stats
// take snapshots; Listen delivers the pool's events; Reset and Reconfigure replace the
// workers. Every method may be called from any goroutine; Close ends the Server (and its open
// streams) and waits until no worker process, goroutine or callback of it is left.
//
// # Errors
//
// Errors are values. A worker that answers a task with an error gives a *JobError, whose Data
// holds the worker's bytes (errors.Is(err, ErrJob) holds too). Every other failure is an
// *Error carrying the library's status and message; match it with errors.Is against the
// sentinels ErrWorker, ErrNoFreeWorker, ErrConfig, ErrSpawn, ErrState, ErrExecTTL,
// ErrQueueFull, ErrCancelled, ErrInvalidArgument and ErrInternal.
//
// # Worker side
//
// A worker program written in Go makes a Worker (NewWorker), then loops on Receive and answers
// each task with Respond, Error or Stop (protocol V2 workers may stream chunks with SendChunk
// first), until Receive says the server asked it to stop.
//
// # Building
//
// The package links with -lroadrunner and includes rr.h. With the library installed where
// the C compiler looks by default (/usr/local, /usr) nothing needs setting; elsewhere, point
// cgo at it, e.g. with the installed pkg-config file:
//
//	CGO_CFLAGS="$(pkg-config --cflags roadrunner)" CGO_LDFLAGS="$(pkg-config --libs roadrunner)" go build
//
// or, for a build tree, CGO_CFLAGS=-I<repo>/include and
// CGO_LDFLAGS="-L<repo>/target/release -Wl,-rpath,<repo>/target/release".
//
// The module (path roadrunner) is not on a module proxy: a program outside go/ requires it
// and points it at this directory of a checkout, in the program's own module:
//
//	go mod edit -require roadrunner@v0.0.0 -replace roadrunner=<repo>/go
//
// then imports "roadrunner" and builds with the cgo settings above (a directory replacement
// needs no go.sum line). Keep the checkout's go/ and the library it links with from the
// same commit: the package is compiled against that rr.h.
//
// Status (the pool and its workers, from the library's JSON), Metrics (OpenMetrics text)
// and RemoveWorker observe and steer a running pool; MaxWorkers, SpawnRate, ScaleAfter and
// ScaleIdle make the pool elastic, and Name names it in both.
package roadrunner
