/* tests.h: the test functions, run by main.c in this order. */
#ifndef RR_C_TESTS_TESTS_H
#define RR_C_TESTS_TESTS_H

/* test_basics.c: strings, version, NULL and invalid arguments, config errors */
void test_version(void);
void test_status_str(void);
void test_worker_state_str(void);
void test_free_null(void);
void test_null_arguments_config(void);
void test_null_arguments_server(void);
void test_null_arguments_worker_side(void);
void test_invalid_utf8(void);
void test_config_errors(void);

/* test_exec.c: tasks and the statuses they can end with */
void test_echo(void);
void test_job_error(void);
void test_worker_error_crash(void);
void test_worker_error_protocol(void);
void test_stop_request_bounded(void);
void test_timeout(void);
void test_exec_ttl(void);
void test_queue_full(void);
void test_spawn_errors(void);
void test_state_errors(void);
void test_max_jobs_one(void);
void test_env_and_dir(void);
void test_workers_snapshot(void);
void test_relays(void);

/* test_events.c: event callbacks */
void test_events_lifecycle(void);
void test_events_crash_and_stderr(void);
void test_callback_replacement(void);

/* test_concurrency.c: many threads */
void test_parallel_exec(void);
void test_free_during_exec(void);
void test_reconfigure_under_load(void);

/* test_worker_side.c: rr_worker_* against a server written here, and the C example worker */
void test_worker_side_protocol(void);
void test_worker_side_env_relay(void);
void test_c_worker(void);

/* test_signals.c: SIGPIPE and the signal masks of the host's threads */
void test_host_calls_leave_the_signal_mask_alone(void);
void test_a_write_to_a_dying_worker_raises_no_sigpipe(void);
void test_worker_side_write_to_a_gone_host_is_an_error(void);

/* test_v2.c: protocol V2 and streamed answers */
void test_v2_settings(void);
void test_v2_tasks_and_streams(void);
void test_v2_c_worker(void);

/* test_status.c: the elastic pool, status export and per-worker control */
void test_status_arguments(void);
void test_config_differs(void);
void test_status_json_and_metrics(void);
void test_remove_worker(void);

/* test_queue.c: the completion queue (rr_exec_submit, rr_queue_*) */
void test_queue_null_arguments(void);
void test_queue_submit_not_started(void);
void test_queue_relays(void);
void test_queue_fd_poll(void);
void test_queue_job_and_worker_errors(void);
void test_queue_allocate_timeout(void);
void test_queue_max_queue(void);
void test_queue_cancel(void);
void test_queue_free_with_outstanding_tasks(void);
void test_queue_server_free_with_waiting_tasks(void);

/* test_fork.c: a host that forks */
void test_fork_child_leaves_the_server_alone(void);

#endif
