// Command echo-worker is a worker written in Go: it answers every task with its context and
// its body in upper case. Run it from a server: Config{Command: "/path/to/echo-worker"}.
package main

import (
	"bytes"
	"log"

	"roadrunner"
)

func main() {
	w, err := roadrunner.NewWorker("", roadrunner.ProtocolV1) // RR_RELAY from the server, else pipes
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
		if err := w.Respond(task.Context, bytes.ToUpper(task.Body)); err != nil {
			log.Fatal(err)
		}
	}
}
