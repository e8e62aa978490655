package roadrunner

/*
#include <stdlib.h>
#include <stdint.h>
#include <stdbool.h>
#include "rr.h"
*/
import "C"

import (
	"fmt"
	"sort"
	"strings"
	"time"
	"unsafe"
)

// Protocol numbers for Config.Protocol and NewWorker.
const (
	ProtocolV1 = int(C.RR_PROTOCOL_V1) // RoadRunner 1.x workers (the default)
	ProtocolV2 = int(C.RR_PROTOCOL_V2) // RoadRunner 2.x to 2025.x workers; streamed answers
)

// Codec is the codec of protocol V2 task frames: it tells the worker how payloads are
// encoded (the library passes them through as bytes).
type Codec uint8

// The codecs of rr.h.
const (
	CodecRaw     Codec = C.RR_CODEC_RAW
	CodecJSON    Codec = C.RR_CODEC_JSON
	CodecMsgpack Codec = C.RR_CODEC_MSGPACK
	CodecGob     Codec = C.RR_CODEC_GOB
	CodecProto   Codec = C.RR_CODEC_PROTO
)

// JitterNone, as Config.JitterPercent, gives every worker exactly MaxJobs and TTL.
const JitterNone = -1

// Config holds every setting of a server and its pool. The zero value of a field keeps the
// library's default (given in each field's comment); a duration below one millisecond but
// above zero counts as one millisecond. NewServer and Reconfigure copy it.
type Config struct {
	// Command starts a worker: the program and its arguments, quoted as in a shell
	// ("php worker.php"). Required.
	Command string
	// Relay is how workers talk to the server: "pipes" (their stdin/stdout), "tcp://host:port"
	// or "unix://path". Default (""): pipes. Cannot change on Reconfigure.
	Relay string
	// Protocol is ProtocolV1 (the default, 0) or ProtocolV2. Cannot change on Reconfigure.
	Protocol int
	// Codec of V2 task frames. Default (0): CodecRaw.
	Codec Codec

	// NumWorkers is the number of worker processes. Default (0): as many as CPUs; with
	// MaxWorkers set, 0 means none kept running (workers only on demand).
	NumWorkers int
	// MaxJobs is the number of tasks after which a worker is replaced. Default (0): unlimited.
	MaxJobs int
	// MaxQueue is how many callers may wait for a free worker; one more fails with
	// ErrQueueFull. Default (0): unlimited.
	MaxQueue int
	// JitterPercent spreads each worker's MaxJobs and TTL down to this percentage below
	// the setting (0 to 100). Default (0): 10. JitterNone: no spread.
	JitterPercent int

	// AllocateTimeout is how long a task waits for a free worker (ErrNoFreeWorker after).
	// Default: 60s.
	AllocateTimeout time.Duration
	// DestroyTimeout is how long a stopping worker may take to exit before it is killed.
	// Default: 60s.
	DestroyTimeout time.Duration
	// RelayTimeout is how long a new worker may take to connect and answer the handshake.
	// Default: 60s. Cannot change on Reconfigure.
	RelayTimeout time.Duration
	// StreamTimeout is how long a cancelled stream may take to end before its worker is
	// killed. Default: 10s.
	StreamTimeout time.Duration

	// ExecTTL is the longest a task may run: its worker is then killed (ErrExecTTL).
	// Default (0): no limit.
	ExecTTL time.Duration
	// TTL is the longest a worker may live; an older one is retired between tasks.
	// Default (0): no limit.
	TTL time.Duration
	// IdleTTL retires a worker that waited for a task longer. Default (0): never.
	IdleTTL time.Duration
	// MaxMemoryBytes retires, between tasks, a worker whose resident memory is above it.
	// Default (0): no limit.
	MaxMemoryBytes uint64
	// MaxFrameBytes is the largest frame accepted from a worker. Default (0): 1 GiB.
	MaxFrameBytes uint64

	// Env adds environment variables for the workers, on top of the host's own.
	Env map[string]string
	// Dir is the workers' working directory. Default (""): the host's.
	Dir string
	// TCPAllowRemote allows a tcp:// relay on an address that is not loopback. Worker
	// relays carry no authentication: use it only on a trusted network.
	TCPAllowRemote bool
	// WorkerCPUAffinity pins each worker to one CPU.
	WorkerCPUAffinity bool
	// WorkerSchedBatch starts workers in the SCHED_BATCH scheduling class.
	WorkerSchedBatch bool

	// The elastic pool and the pool's name.

	// MaxWorkers is the ceiling of an elastic pool (NumWorkers is then the floor).
	// Default (0): a static pool of NumWorkers.
	MaxWorkers int
	// SpawnRate is the most workers added in one step. Default (0): 8.
	SpawnRate int
	// ScaleAfter: a caller waiting this long for a worker asks for more. Default: 10ms.
	ScaleAfter time.Duration
	// ScaleIdle: an extra worker idle this long is retired. Default: 10s.
	ScaleIdle time.Duration
	// Name is the pool's name in Status and Metrics (label pool). Default (""): "default".
	Name string
}

// ms converts a duration to the library's milliseconds, rounding a positive duration
// below one millisecond up to one.
func ms(d time.Duration) C.uint64_t {
	if d > 0 && d < time.Millisecond {
		return 1
	}
	return C.uint64_t(d / time.Millisecond)
}

func (c *Config) validate() error {
	for _, f := range []struct {
		name  string
		value int64
	}{
		{"NumWorkers", int64(c.NumWorkers)},
		{"MaxJobs", int64(c.MaxJobs)},
		{"MaxQueue", int64(c.MaxQueue)},
		{"MaxWorkers", int64(c.MaxWorkers)},
		{"SpawnRate", int64(c.SpawnRate)},
		{"AllocateTimeout", int64(c.AllocateTimeout)},
		{"DestroyTimeout", int64(c.DestroyTimeout)},
		{"RelayTimeout", int64(c.RelayTimeout)},
		{"StreamTimeout", int64(c.StreamTimeout)},
		{"ExecTTL", int64(c.ExecTTL)},
		{"TTL", int64(c.TTL)},
		{"IdleTTL", int64(c.IdleTTL)},
		{"ScaleAfter", int64(c.ScaleAfter)},
		{"ScaleIdle", int64(c.ScaleIdle)},
	} {
		if f.value < 0 {
			return errorf("config", StatusConfig, "%s is negative (%d)", f.name, f.value)
		}
	}
	if c.JitterPercent < JitterNone {
		return errorf("config", StatusConfig, "JitterPercent is negative (%d); use JitterNone for no spread",
			c.JitterPercent)
	}
	return c.checkNUL()
}

// checkNUL refuses a string setting with a NUL byte: C strings end at the first one, so the
// library would see it cut short.
func (c *Config) checkNUL() error {
	bad := func(field, value string) error {
		if i := strings.IndexByte(value, 0); i >= 0 {
			// The value is not quoted: an Env value may be a secret.
			return errorf("config", StatusConfig, "%s holds a NUL byte (at byte %d), which C strings cannot carry",
				field, i)
		}
		return nil
	}
	for _, f := range []struct{ name, value string }{
		{"Command", c.Command}, {"Relay", c.Relay}, {"Dir", c.Dir}, {"Name", c.Name},
	} {
		if err := bad(f.name, f.value); err != nil {
			return err
		}
	}
	keys := make([]string, 0, len(c.Env))
	for k := range c.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := bad(fmt.Sprintf("Env key %q", k), k); err != nil {
			return err
		}
		if err := bad(fmt.Sprintf("Env[%q]", k), c.Env[k]); err != nil {
			return err
		}
	}
	return nil
}

// Differs reports whether applying other to a server running c needs Stop and a new server
// (NewServer, Start) rather than Reconfigure, which ignores them: true when their Relay
// (compared as the library parses it: "pipe" and "pipes" are the same, and "" is pipes) or
// their RelayTimeout (0 being the default) differ (rr_config_differs). The command and the
// pool settings do not count. Also true when either Relay or RelayTimeout is invalid (a
// NUL byte, a negative timeout): such a config makes no server.
func (c Config) Differs(other Config) bool {
	a, err := c.relayConfig()
	if err != nil {
		return true
	}
	defer C.rr_config_free(a)
	b, err := other.relayConfig()
	if err != nil {
		return true
	}
	defer C.rr_config_free(b)
	return bool(C.rr_config_differs(a, b))
}

// relayConfig makes an rr_config holding only c's Relay and RelayTimeout (what
// rr_config_differs compares); the caller frees it with rr_config_free.
func (c *Config) relayConfig() (*C.rr_config, error) {
	if strings.IndexByte(c.Relay, 0) >= 0 || c.RelayTimeout < 0 {
		return nil, errorf("config", StatusConfig, "invalid Relay or RelayTimeout")
	}
	cfg, err := newConfig("-", c.Relay) // the command does not count
	if err != nil {
		return nil, err
	}
	if c.RelayTimeout != 0 {
		C.rr_config_set_relay_timeout_ms(cfg, ms(c.RelayTimeout))
	}
	return cfg, nil
}

// newConfig makes an rr_config of command and relay ("" for the library's default,
// pipes) with the defaults for the rest; the caller frees it with rr_config_free.
func newConfig(command, relay string) (*C.rr_config, error) {
	ccommand := C.CString(command)
	defer C.free(unsafe.Pointer(ccommand))
	var crelay *C.char
	if relay != "" {
		crelay = C.CString(relay)
		defer C.free(unsafe.Pointer(crelay))
	}
	var cfg *C.rr_config
	var cerr *C.rr_error
	if err := check("config", C.rr_config_new(ccommand, crelay, &cfg, &cerr), cerr); err != nil {
		return nil, err
	}
	return cfg, nil
}

// build makes the rr_config of c; the caller frees it with rr_config_free.
func (c *Config) build() (*C.rr_config, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	cfg, err := newConfig(c.Command, c.Relay)
	if err != nil {
		return nil, asConfigError(err, "Command or Relay")
	}
	if err := c.apply(cfg); err != nil {
		C.rr_config_free(cfg)
		return nil, err
	}
	return cfg, nil
}

// asConfigError reports a setter's failure (e.g. an invalid argument) as ErrConfig,
// naming the field.
func asConfigError(err error, field string) error {
	if e, ok := err.(*Error); ok {
		return &Error{Op: "config", Status: StatusConfig, Message: field + ": " + e.Message}
	}
	return err
}

func (c *Config) apply(cfg *C.rr_config) error {
	var cerr *C.rr_error
	if c.Protocol != 0 {
		if c.Protocol < 0 || c.Protocol > 1<<31 {
			return errorf("config", StatusConfig, "Protocol %d is not 1 or 2", c.Protocol)
		}
		st := C.rr_config_set_protocol(cfg, C.uint32_t(c.Protocol), &cerr)
		if err := check("config", st, cerr); err != nil {
			return asConfigError(err, "Protocol")
		}
	}
	if c.Codec != 0 {
		if err := check("config", C.rr_config_set_codec(cfg, C.uint8_t(c.Codec), &cerr), cerr); err != nil {
			return asConfigError(err, "Codec")
		}
	}
	if c.NumWorkers != 0 {
		C.rr_config_set_num_workers(cfg, C.uint64_t(c.NumWorkers))
	}
	if c.MaxJobs != 0 {
		C.rr_config_set_max_jobs(cfg, C.uint64_t(c.MaxJobs))
	}
	if c.MaxQueue != 0 {
		C.rr_config_set_max_queue(cfg, C.uint64_t(c.MaxQueue))
	}
	switch {
	case c.JitterPercent == JitterNone:
		C.rr_config_set_jitter_percent(cfg, 0)
	case c.JitterPercent != 0:
		C.rr_config_set_jitter_percent(cfg, C.uint64_t(c.JitterPercent))
	}
	for _, d := range []struct {
		value time.Duration
		set   func(*C.rr_config, C.uint64_t)
	}{
		{c.AllocateTimeout, func(p *C.rr_config, v C.uint64_t) { C.rr_config_set_allocate_timeout_ms(p, v) }},
		{c.DestroyTimeout, func(p *C.rr_config, v C.uint64_t) { C.rr_config_set_destroy_timeout_ms(p, v) }},
		{c.RelayTimeout, func(p *C.rr_config, v C.uint64_t) { C.rr_config_set_relay_timeout_ms(p, v) }},
		{c.StreamTimeout, func(p *C.rr_config, v C.uint64_t) { C.rr_config_set_stream_timeout_ms(p, v) }},
		{c.ExecTTL, func(p *C.rr_config, v C.uint64_t) { C.rr_config_set_exec_ttl_ms(p, v) }},
		{c.TTL, func(p *C.rr_config, v C.uint64_t) { C.rr_config_set_ttl_ms(p, v) }},
		{c.IdleTTL, func(p *C.rr_config, v C.uint64_t) { C.rr_config_set_idle_ttl_ms(p, v) }},
	} {
		if d.value != 0 {
			d.set(cfg, ms(d.value))
		}
	}
	if c.MaxMemoryBytes != 0 {
		C.rr_config_set_max_memory_bytes(cfg, C.uint64_t(c.MaxMemoryBytes))
	}
	if c.MaxFrameBytes != 0 {
		C.rr_config_set_max_frame_bytes(cfg, C.uint64_t(c.MaxFrameBytes))
	}
	C.rr_config_set_tcp_allow_remote(cfg, C.bool(c.TCPAllowRemote))
	C.rr_config_set_worker_cpu_affinity(cfg, C.bool(c.WorkerCPUAffinity))
	C.rr_config_set_worker_sched_batch(cfg, C.bool(c.WorkerSchedBatch))

	keys := make([]string, 0, len(c.Env))
	for k := range c.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := setEnv(cfg, k, c.Env[k]); err != nil {
			return asConfigError(err, "Env")
		}
	}
	if c.Dir != "" {
		dir := C.CString(c.Dir)
		defer C.free(unsafe.Pointer(dir))
		if err := check("config", C.rr_config_set_dir(cfg, dir, &cerr), cerr); err != nil {
			return asConfigError(err, "Dir")
		}
	}
	return applyElastic(cfg, c)
}

func setEnv(cfg *C.rr_config, key, value string) error {
	k, v := C.CString(key), C.CString(value)
	defer C.free(unsafe.Pointer(k))
	defer C.free(unsafe.Pointer(v))
	var cerr *C.rr_error
	return check("config", C.rr_config_set_env(cfg, k, v, &cerr), cerr)
}
