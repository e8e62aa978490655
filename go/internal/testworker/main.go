// Command testworker is the worker program of the package's tests, written with the
// package's own worker side (roadrunner.Worker). It speaks protocol V2 when started with
// "-protocol 2" (else V1) and answers each task by its context:
//
//	!pid               context "pid", body = its pid in decimal
//	!error             a job error whose message is the body
//	!sleep:MS          sleeps MS milliseconds, then echoes
//	!stop              asks to be replaced (the task runs on another worker)
//	!stop-if:PID       asks to be replaced if its pid is PID, else answers context "pid",
//	                   body = its pid
//	!crash             writes "crash requested" to stderr and exits 3 without answering
//	!stderr:TEXT       writes TEXT to stderr (through fmt.Println: stdout goes to stderr), echoes
//	!stream:N          (V2) N chunks (context "chunk", body BODY-i), then "last", BODY-end
//	!stream-until-stopped  (V2) chunks until the host stops the stream, then writes
//	                   "stopped: <is ErrCancelled>" to stderr
//	!chunk-v1          tries SendChunk (V1: refused), answers with the error's sentinel
//	!receive-twice     calls Receive before answering (refused), answers with the sentinel
//	anything else      echoes context and body
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"roadrunner"
)

func main() {
	protocol := flag.Int("protocol", 1, "1 or 2")
	relay := flag.String("relay", "", "the relay (default: $RR_RELAY, else pipes)")
	flag.Parse()
	w, err := roadrunner.NewWorker(*relay, *protocol)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testworker:", err)
		os.Exit(1)
	}
	defer w.Close()
	for {
		task, ok, err := w.Receive()
		if err != nil {
			fmt.Fprintln(os.Stderr, "testworker: receive:", err)
			os.Exit(1)
		}
		if !ok {
			return
		}
		if err := answer(w, task); err != nil {
			fmt.Fprintln(os.Stderr, "testworker: answer:", err)
			os.Exit(1)
		}
	}
}

// sentinelName names the sentinel err matches.
func sentinelName(err error) string {
	for name, s := range map[string]error{
		"ErrState": roadrunner.ErrState, "ErrInvalidArgument": roadrunner.ErrInvalidArgument,
		"ErrWorker": roadrunner.ErrWorker, "ErrCancelled": roadrunner.ErrCancelled,
	} {
		if errors.Is(err, s) {
			return name
		}
	}
	return fmt.Sprintf("unexpected %v", err)
}

func answer(w *roadrunner.Worker, task roadrunner.Payload) error {
	command := string(task.Context)
	if !strings.HasPrefix(command, "!") {
		return w.Respond(task.Context, task.Body)
	}
	name, arg, _ := strings.Cut(command[1:], ":")
	switch name {
	case "pid":
		return w.Respond([]byte("pid"), []byte(strconv.Itoa(os.Getpid())))
	case "error":
		return w.Error(task.Body)
	case "sleep":
		n, _ := strconv.Atoi(arg)
		time.Sleep(time.Duration(n) * time.Millisecond)
		return w.Respond(task.Context, task.Body)
	case "stop":
		return w.Stop()
	case "stop-if":
		if arg == strconv.Itoa(os.Getpid()) {
			return w.Stop()
		}
		return w.Respond([]byte("pid"), []byte(strconv.Itoa(os.Getpid())))
	case "crash":
		fmt.Fprintln(os.Stderr, "crash requested")
		os.Exit(3)
	case "stderr":
		fmt.Println(arg) // stdout was pointed at stderr by NewWorker (over pipes)
		return w.Respond(task.Context, task.Body)
	case "stream":
		n, _ := strconv.Atoi(arg)
		for i := 0; i < n; i++ {
			if err := w.SendChunk([]byte("chunk"), []byte(fmt.Sprintf("%s-%d", task.Body, i))); err != nil {
				return err
			}
		}
		return w.Respond([]byte("last"), []byte(fmt.Sprintf("%s-end", task.Body)))
	case "stream-until-stopped":
		for {
			err := w.SendChunk([]byte("chunk"), task.Body)
			if err != nil {
				fmt.Fprintf(os.Stderr, "stopped: %v\n", errors.Is(err, roadrunner.ErrCancelled))
				if errors.Is(err, roadrunner.ErrCancelled) {
					return nil
				}
				return err
			}
			time.Sleep(time.Millisecond)
		}
	case "chunk-v1":
		err := w.SendChunk([]byte("chunk"), nil)
		return w.Respond([]byte("chunk-v1"), []byte(sentinelName(err)))
	case "receive-twice":
		_, _, err := w.Receive()
		return w.Respond([]byte("receive-twice"), []byte(sentinelName(err)))
	}
	return w.Error([]byte("unknown command " + command))
}
