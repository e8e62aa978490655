package roadrunner

// The elastic pool's settings, status export and per-worker control.

/*
#include <stdlib.h>
#include <stdint.h>
#include <stdbool.h>
#include "rr.h"
*/
import "C"

import (
	"encoding/json"
	"strings"
	"unsafe"
)

// applyElastic sets the elastic-pool fields of c on cfg.
func applyElastic(cfg *C.rr_config, c *Config) error {
	if c.MaxWorkers != 0 {
		if c.NumWorkers == 0 {
			C.rr_config_set_num_workers(cfg, 0) // an elastic pool with no floor: on demand
		}
		C.rr_config_set_max_workers(cfg, C.uint64_t(c.MaxWorkers))
	}
	if c.SpawnRate != 0 {
		C.rr_config_set_spawn_rate(cfg, C.uint64_t(c.SpawnRate))
	}
	if c.ScaleAfter != 0 {
		C.rr_config_set_scale_after_ms(cfg, ms(c.ScaleAfter))
	}
	if c.ScaleIdle != 0 {
		C.rr_config_set_scale_idle_ms(cfg, ms(c.ScaleIdle))
	}
	if c.Name != "" {
		name := C.CString(c.Name)
		defer C.free(unsafe.Pointer(name))
		var cerr *C.rr_error
		if err := check("config", C.rr_config_set_name(cfg, name, &cerr), cerr); err != nil {
			return asConfigError(err, "Name")
		}
	}
	return nil
}

// takeString copies a string the library gave and frees it with rr_string_free.
func takeString(p *C.char) string {
	defer C.rr_string_free(p)
	return C.GoString(p)
}

// Status describes the pool and every worker, as the library's status JSON decoded: keys
// name, protocol, relay, workers_min, workers_max, waiting, counters (an object) and workers
// (a list of objects with pid, state, state_name, num_execs, created_unix_ms, rss_bytes and
// task_ms, null when idle). Numbers are json.Number. ErrState when the server is not started.
func (s *Server) Status() (map[string]any, error) {
	p, err := s.enter("status")
	if err != nil {
		return nil, err
	}
	defer s.leave()
	var out *C.char
	var cerr *C.rr_error
	if err := check("status", C.rr_server_status_json(p, &out, &cerr), cerr); err != nil {
		return nil, err
	}
	text := takeString(out)
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var status map[string]any
	if err := dec.Decode(&status); err != nil {
		return nil, &Error{Op: "status", Status: StatusInternal, Message: "the library's status is not a JSON object", Err: err}
	}
	return status, nil
}

// Metrics gives the server's metrics as OpenMetrics text (ending "# EOF\n"), the pool's
// name as label pool. ErrState when the server is not started.
func (s *Server) Metrics() (string, error) {
	p, err := s.enter("metrics")
	if err != nil {
		return "", err
	}
	defer s.leave()
	var out *C.char
	var cerr *C.rr_error
	if err := check("metrics", C.rr_server_metrics(p, &out, &cerr), cerr); err != nil {
		return "", err
	}
	return takeString(out), nil
}

// RemoveWorker stops the worker pid after its task (kill false) or kills it at once (kill
// true; its task fails with ErrWorker); the pool replaces it. ErrInvalidArgument when pid is
// not a worker of this server.
func (s *Server) RemoveWorker(pid int64, kill bool) error {
	return s.call("remove worker", func(p *C.rr_server, e **C.rr_error) C.rr_status {
		return C.rr_server_remove_worker(p, C.int64_t(pid), C.bool(kill), e)
	})
}
