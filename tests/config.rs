//! Configuration validation: every bad setting is refused with its name and the reason.

use roadrunner::{Config, ErrorKind, RelayAddress, Server};
use std::time::Duration;

fn refused(config: Config, setting: &str, why: &str) {
    let error = Server::new(config).err().expect("the config must be refused");
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.message().contains(setting), "{setting}: {error}");
    assert!(error.message().contains(why), "{why}: {error}");
}

fn valid() -> Config {
    Config::new("php worker.php", "pipes")
}

#[test]
fn each_bad_setting_is_named() {
    refused(Config::new("", "pipes"), "command", "is empty");
    refused(Config::new("php 'unclosed", "pipes"), "command", "cannot be parsed");
    refused(Config::new("php w.php", "carrier-pigeon"), "relay", "is not a relay");
    refused(Config::new("php w.php", "tcp://localhost"), "relay", "has no port");
    refused(Config::new("php w.php", "tcp://:80"), "relay", "bad host or port");
    refused(Config::new("php w.php", "tcp://host:99999"), "relay", "bad host or port");
    refused(Config::new("php w.php", "unix://"), "relay", "has no path");
    refused(Config { num_workers: 0, ..valid() }, "num_workers", "at least 1");
    refused(Config { allocate_timeout: Duration::ZERO, ..valid() }, "allocate_timeout", "greater than 0");
    refused(Config { destroy_timeout: Duration::ZERO, ..valid() }, "destroy_timeout", "greater than 0");
    refused(Config { relay_timeout: Duration::ZERO, ..valid() }, "relay_timeout", "greater than 0");
    refused(Config { max_frame_bytes: 0, ..valid() }, "max_frame_bytes", "greater than 0");
    refused(Config { env: vec![("A=B".into(), "x".into())], ..valid() }, "env", "not a valid variable name");
    refused(Config { env: vec![("RR_RELAY".into(), "x".into())], ..valid() }, "env", "RR_RELAY");
    refused(Config { dir: Some("/nonexistent/dir".into()), ..valid() }, "dir", "not a directory");
    refused(Config { allocate_timeout: Duration::MAX, ..valid() }, "allocate_timeout", "more than a year");
    refused(Config { exec_ttl: Duration::from_secs(400 * 24 * 3600), ..valid() }, "exec_ttl", "more than a year");
    refused(Config { jitter_percent: 101, ..valid() }, "jitter_percent", "above 100");
}

#[test]
fn defaults_follow_the_contract() {
    let config = valid();
    assert_eq!(config.num_workers, std::thread::available_parallelism().unwrap().get() as u64);
    assert_eq!(config.max_jobs, 0);
    assert_eq!(config.allocate_timeout, Duration::from_secs(60));
    assert_eq!(config.destroy_timeout, Duration::from_secs(60));
    assert_eq!(config.relay_timeout, Duration::from_secs(60));
    assert_eq!(config.max_frame_bytes, 1 << 30);
    assert_eq!(config.max_queue, 0);
    assert!(Server::new(config).is_ok());
    // Extreme limits are accepted and never overflow the jitter arithmetic.
    assert!(Server::new(Config { max_jobs: u64::MAX, jitter_percent: 100, ..valid() }).is_ok());
}

#[test]
fn relays_parse_in_every_spelling() {
    assert_eq!(RelayAddress::parse("pipes").unwrap(), RelayAddress::Pipes);
    assert_eq!(RelayAddress::parse("pipe").unwrap(), RelayAddress::Pipes);
    assert_eq!(RelayAddress::parse("tcp://127.0.0.1:6001").unwrap(), RelayAddress::Tcp("127.0.0.1:6001".into()));
    assert_eq!(RelayAddress::parse("unix:///tmp/rr.sock").unwrap(), RelayAddress::Unix("/tmp/rr.sock".into()));
    let parsed = Config::new("php \"my worker.php\" --flag='a b' c\\ d", "pipes").validate().unwrap();
    assert_eq!(parsed.argv, vec!["php", "my worker.php", "--flag=a b", "c d"]);
}
