// Command hello starts two workers and sends them one task: go run ./example/hello WORKER-COMMAND
package main

import (
	"context"
	"fmt"
	"os"

	"roadrunner"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: hello WORKER-COMMAND")
		os.Exit(2)
	}
	srv, err := roadrunner.NewServer(roadrunner.Config{Command: os.Args[1], NumWorkers: 2})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		panic(err)
	}
	answer, err := srv.Exec(context.Background(), []byte("hello"), []byte("world"))
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s %s\n", answer.Context, answer.Body)
}
