//! A host program for tests that must kill a host: it starts a server of
//! `rr-test-worker` workers, prints their pids and "ready", then waits to be killed.
//!
//! Usage: `rr-test-host WORKER_PATH RELAY NUM_WORKERS`

use roadrunner::{Config, Server};
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [worker, relay, workers] = &args[..] else {
        eprintln!("usage: rr-test-host WORKER_PATH RELAY NUM_WORKERS");
        std::process::exit(2);
    };
    let mut config = Config::new(format!("'{worker}' echo"), relay.as_str());
    config.num_workers = workers.parse().expect("a number of workers");
    let server = Server::new(config).expect("valid config");
    server.start().expect("server starts");
    let mut out = std::io::stdout().lock();
    for info in server.workers().expect("workers") {
        writeln!(out, "{}", info.pid).unwrap();
    }
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    drop(out);
    loop {
        std::thread::park();
    }
}
