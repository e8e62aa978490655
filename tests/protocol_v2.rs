//! Protocol V2 (goridge 3/4 frames, RoadRunner 2.x to 2025.x workers), on every relay:
//! tasks and answers, job and worker errors, stop requests, streamed answers (joined by
//! `exec`, read chunk by chunk with `exec_stream`, cancelled, timed out), PING/PONG, and
//! a worker of the other protocol.

mod common;
use common::{pids, relay, started_with, Events, Relay};
use roadrunner::{codec, Config, ErrorKind, EventKind, Protocol, Server, WorkerState};
use std::time::{Duration, Instant};

fn v2_server(kind: Relay, workers: u64, change: impl FnOnce(&mut Config)) -> (Server, Option<tempfile::TempDir>) {
    let (relay, dir) = relay(kind);
    let server = started_with(&relay, "echo", workers, |config| {
        common::v2(config);
        change(config);
    });
    (server, dir)
}

fn tasks_answers_and_errors(kind: Relay) {
    let (server, _dir) = v2_server(kind, 2, |c| c.codec = codec::JSON);
    let answer = server.exec(br#"{"a":1}"#, b"hello").unwrap();
    assert_eq!((answer.context(), answer.body()), (&br#"{"a":1}"#[..], &b"hello"[..]));
    // The worker side answers with flags 0, as RoadRunner's PHP worker 3.4 does.
    assert_eq!(answer.codec(), 0);
    assert_eq!(server.exec(b"", b"").unwrap().body(), b"");
    let large: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    assert!(server.exec(b"ctx", &large).unwrap().body() == &large[..]);
    let error = server.exec(b"!error", b"boom").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::JobError);
    assert_eq!(error.data(), b"boom");
    // A worker that asks to be replaced: the task runs on another one.
    let before = pids(&server);
    let answer = server.exec(b"!pid", b"").unwrap();
    assert!(before.contains(&String::from_utf8_lossy(answer.body()).parse().unwrap()));
    let mut config = server.config();
    config.num_workers = 2;
    let stop = common::started_with(&config.relay.clone(), "stop-after-one", 2, |c| {
        *c = Config { command: c.command.clone(), ..config };
    });
    for i in 0..6 {
        let body = format!("rerouted {i}");
        assert_eq!(stop.exec(b"", body.as_bytes()).unwrap().body(), body.as_bytes());
    }
    assert!(stop.stats().unwrap().retired_stop_requested >= 1);
}

fn broken_answers_are_worker_errors(kind: Relay) {
    let (server, _dir) = v2_server(kind, 1, |c| c.max_frame_bytes = 1 << 20);
    for (context, words) in [
        (&b"!stdout"[..], vec!["not a frame", "CRC does not match", "junk junk"]),
        (b"!huge", vec!["4294967295 bytes", "max_frame_bytes"]),
        (b"!truncate", vec!["middle of a frame", "10 of 100 bytes"]),
        (b"!bad-options", vec!["2 options", "exactly one"]),
        (b"!bad-offset", vec!["context length (50)", "past the end"]),
        (b"!crash", vec!["exited with status 3"]),
    ] {
        let error = server.exec(context, b"x").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::WorkerError, "{error}");
        for word in words {
            assert!(error.message().contains(word), "{:?}: {word:?} not in: {error}", String::from_utf8_lossy(context));
        }
        assert!(common::wait_until(10, || server.workers().unwrap().len() == 1));
        assert_eq!(server.exec(b"", b"after").unwrap().body(), b"after");
    }
}

fn exec_joins_a_streamed_answer(kind: Relay) {
    let (server, _dir) = v2_server(kind, 1, |_| {});
    let answer = server.exec(b"!stream:12", b"s").unwrap();
    assert_eq!(answer.context(), b"chunk", "the first chunk's context");
    let expected: String = (0..12).map(|i| format!("s-{i}")).chain(["s-end".to_string()]).collect();
    assert_eq!(answer.body(), expected.as_bytes());
    // The worker pings every 5 chunks and waits for the PONG: 12 chunks went through.
    assert_eq!(server.workers().unwrap()[0].state, WorkerState::Ready);
    assert_eq!(server.exec(b"", b"next").unwrap().body(), b"next");
    let error = server.exec(b"!stream-error:3", b"failed late").unwrap_err();
    assert_eq!((error.kind(), error.data()), (ErrorKind::JobError, &b"failed late"[..]));
    assert_eq!(server.exec(b"", b"kept").unwrap().body(), b"kept", "a job error keeps the worker");
}

fn exec_stream_gives_the_chunks_in_order(kind: Relay) {
    let (server, _dir) = v2_server(kind, 1, |_| {});
    let mut stream = server.exec_stream(b"!stream:7", b"c").unwrap();
    let mut bodies = Vec::new();
    while let Some(chunk) = stream.next_chunk().unwrap() {
        bodies.push(String::from_utf8_lossy(chunk.body()).to_string());
    }
    let expected: Vec<String> = (0..7).map(|i| format!("c-{i}")).chain(["c-end".to_string()]).collect();
    assert_eq!(bodies, expected);
    assert!(stream.next_chunk().unwrap().is_none(), "after the last chunk");
    // A worker that does not stream gives a stream of one chunk.
    let mut one = server.exec_stream(b"ctx", b"whole").unwrap();
    assert_eq!(one.next_chunk().unwrap().unwrap().body(), b"whole");
    assert!(one.next_chunk().unwrap().is_none());
    // A job error is the stream's error.
    let mut failing = server.exec_stream(b"!stream-error:2", b"oops").unwrap();
    assert!(failing.next_chunk().unwrap().is_some());
    assert!(failing.next_chunk().unwrap().is_some());
    assert_eq!(failing.next_chunk().unwrap_err().kind(), ErrorKind::JobError);
}

fn a_streaming_worker_belongs_to_its_stream(kind: Relay) {
    let (server, _dir) = v2_server(kind, 1, |c| c.allocate_timeout = Duration::from_millis(300));
    let mut stream = server.exec_stream(b"!stream:3", b"mine").unwrap();
    assert_eq!(server.workers().unwrap()[0].state, WorkerState::Streaming);
    // While the stream is open, no other caller gets its worker.
    assert_eq!(server.exec(b"", b"other").unwrap_err().kind(), ErrorKind::Timeout);
    while stream.next_chunk().unwrap().is_some() {}
    assert_eq!(server.exec(b"", b"other").unwrap().body(), b"other");
}

fn a_cancelled_stream_drains_and_keeps_its_worker(kind: Relay) {
    let (server, _dir) = v2_server(kind, 1, |_| {});
    let events = Events::listen(&server);
    let pid = pids(&server)[0];
    let mut stream = server.exec_stream(b"!stream-until-stopped", b"more").unwrap();
    for _ in 0..20 {
        assert_eq!(stream.next_chunk().unwrap().unwrap().body(), b"more");
    }
    stream.cancel();
    assert_eq!(stream.next_chunk().unwrap_err().kind(), ErrorKind::Cancelled);
    events.wait_for("the worker saw the stop", |e| {
        e.kind == EventKind::WorkerStderr && e.message.as_deref() == Some("stream stopped by the host")
    });
    // The worker ended its stream as asked: it is sound and serves the next task.
    assert_eq!(server.exec(b"", b"after").unwrap().body(), b"after");
    assert_eq!(pids(&server), vec![pid]);
    assert_eq!(server.stats().unwrap().tasks_cancelled, 1);
    // Dropping an unfinished stream cancels it too.
    let mut dropped = server.exec_stream(b"!stream-until-stopped", b"x").unwrap();
    dropped.next_chunk().unwrap();
    drop(dropped);
    assert_eq!(server.exec(b"", b"again").unwrap().body(), b"again");
    assert_eq!(pids(&server), vec![pid]);
}

fn a_stream_that_will_not_stop_is_killed_after_stream_timeout(kind: Relay) {
    let (server, _dir) = v2_server(kind, 1, |c| c.stream_timeout = Duration::from_millis(300));
    let pid = pids(&server)[0];
    let mut stream = server.exec_stream(b"!stream-hang", b"one").unwrap();
    assert_eq!(stream.next_chunk().unwrap().unwrap().body(), b"one");
    let started = Instant::now();
    stream.cancel();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(10), "{took:?}");
    assert_eq!(stream.next_chunk().unwrap_err().kind(), ErrorKind::Cancelled);
    assert!(common::wait_until(10, || {
        let now = pids(&server);
        now.len() == 1 && now[0] != pid
    }));
    assert_eq!(server.exec(b"", b"replaced").unwrap().body(), b"replaced");
}

fn exec_ttl_covers_the_whole_stream(kind: Relay) {
    let (server, _dir) = v2_server(kind, 1, |c| c.exec_ttl = Duration::from_millis(300));
    let mut stream = server.exec_stream(b"!stream-hang", b"one").unwrap();
    assert!(stream.next_chunk().unwrap().is_some());
    let error = stream.next_chunk().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ExecTtl, "{error}");
    assert!(common::wait_until(10, || server.workers().unwrap().len() == 1));
    assert_eq!(server.exec(b"", b"fine").unwrap().body(), b"fine");
}

fn a_ping_on_the_last_frame_gets_its_pong_before_the_next_task(kind: Relay) {
    let (server, _dir) = v2_server(kind, 1, |_| {});
    let events = Events::listen(&server);
    let answer = server.exec(b"!ping-last", b"").unwrap();
    assert_eq!(answer.body(), b"body");
    let seen = events.wait_for("the PONG check", |e| {
        e.kind == EventKind::WorkerStderr && e.message.as_deref().is_some_and(|m| m.starts_with("pong"))
    });
    assert_eq!(seen.message.as_deref(), Some("pong received"));
    assert_eq!(server.exec(b"", b"next").unwrap().body(), b"next");
}

on_every_relay!(
    tasks_answers_and_errors,
    broken_answers_are_worker_errors,
    exec_joins_a_streamed_answer,
    exec_stream_gives_the_chunks_in_order,
    a_streaming_worker_belongs_to_its_stream,
    a_cancelled_stream_drains_and_keeps_its_worker,
    a_stream_that_will_not_stop_is_killed_after_stream_timeout,
    exec_ttl_covers_the_whole_stream,
    a_ping_on_the_last_frame_gets_its_pong_before_the_next_task,
);

/// A worker of the other protocol fails its handshake quickly, with a spawn error that
/// names both protocols.
fn a_worker_of_the_other_protocol_is_a_spawn_error(kind: Relay) {
    for (pool, worker) in [(Protocol::V2, "1"), (Protocol::V1, "2")] {
        let (relay, _dir) = relay(kind);
        let mut config = common::config(&relay, "echo", 1);
        config.protocol = pool;
        config.env.push(("RR_TEST_PROTOCOL".into(), worker.into()));
        config.relay_timeout = Duration::from_secs(30);
        let server = Server::new(config).unwrap();
        let started = Instant::now();
        let error = server.start().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Spawn, "{error}");
        assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
        let message = error.message();
        assert!(message.contains("protocol V1") && message.contains("protocol V2"), "{message}");
    }
}

on_every_relay!(a_worker_of_the_other_protocol_is_a_spawn_error);

#[test]
fn the_protocol_cannot_change_on_reconfigure() {
    common::isolated(|| {
        let server = common::started("pipes", "echo", 1);
        let mut config = server.config();
        common::v2(&mut config);
        let error = server.reconfigure(config).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.message().contains("protocol"), "{error}");
        let mut bad = server.config();
        bad.codec = 0x03;
        assert!(matches!(Server::new(bad), Err(e) if e.kind() == ErrorKind::Config));
    });
}

/// A server stopped (or dropped) while a stream is open: running streams get up to
/// destroy_timeout to end, then their workers are killed and the stop returns; the
/// stream's caller gets a worker error at its next read, not a hang.
fn a_stop_does_not_wait_forever_for_an_open_stream(kind: Relay) {
    let (server, _dir) = v2_server(kind, 1, |c| c.destroy_timeout = Duration::from_millis(300));
    let mut stream = server.exec_stream(b"!stream-until-stopped", b"x").unwrap();
    assert!(stream.next_chunk().unwrap().is_some());
    let started = Instant::now();
    server.stop().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "the stop took {:?}", started.elapsed());
    let error = loop {
        match stream.next_chunk() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream of a killed worker ended normally"),
            Err(error) => break error,
        }
    };
    assert_eq!(error.kind(), ErrorKind::WorkerError, "{error}");
    drop(stream);
    drop(server);
}

on_every_relay!(a_stop_does_not_wait_forever_for_an_open_stream);
