package roadrunner_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"roadrunner"
)

// A server of four PHP workers, one task with a deadline. (Not run: it needs PHP.)
func ExampleServer_Exec() {
	srv, err := roadrunner.NewServer(roadrunner.Config{
		Command:         "php worker.php",
		NumWorkers:      4,
		MaxJobs:         1000,
		AllocateTimeout: 5 * time.Second,
		ExecTTL:         30 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	answer, err := srv.Exec(ctx, []byte(`{"method":"GET"}`), []byte("body"))
	var jobErr *roadrunner.JobError
	switch {
	case errors.As(err, &jobErr):
		fmt.Printf("the worker said no: %s\n", jobErr.Data)
	case errors.Is(err, context.DeadlineExceeded): // also errors.Is(err, roadrunner.ErrCancelled)
		fmt.Println("no answer in time; the task was cancelled")
	case errors.Is(err, roadrunner.ErrNoFreeWorker), errors.Is(err, roadrunner.ErrQueueFull):
		fmt.Println("overloaded")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Printf("%s\n", answer.Body)
	}
}

// A streamed answer (protocol V2 workers).
func ExampleServer_Stream() {
	srv, err := roadrunner.NewServer(roadrunner.Config{Command: "php stream-worker.php", Protocol: roadrunner.ProtocolV2})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	st, err := srv.Stream(context.Background(), nil, []byte("report"))
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	for {
		chunk, ok, err := st.Next()
		if err != nil {
			log.Fatal(err)
		}
		if !ok {
			break
		}
		fmt.Printf("%s", chunk.Body)
	}
}

// The events of a server, delivered on a thread of the library.
func ExampleServer_Listen() {
	srv, err := roadrunner.NewServer(roadrunner.Config{Command: "php worker.php"})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	err = srv.Listen(func(e roadrunner.Event) {
		if e.Type == roadrunner.EventWorkerStderr {
			log.Printf("worker %d: %s", e.Pid, e.Message)
		}
	})
	if err != nil {
		log.Fatal(err)
	}
}

// A worker program in Go: answers every task with its own context and body.
func ExampleWorker() {
	w, err := roadrunner.NewWorker("", roadrunner.ProtocolV1) // $RR_RELAY, else pipes
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	for {
		task, ok, err := w.Receive()
		if err != nil {
			log.Fatal(err)
		}
		if !ok {
			return // the server asked this worker to stop
		}
		if err := w.Respond(task.Context, task.Body); err != nil {
			log.Fatal(err)
		}
	}
}
