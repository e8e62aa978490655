//! worker_cpu_affinity and worker_sched_batch: what the kernel says about every worker,
//! replacements included, read back from /proc.

mod common;
use common::{pids, Relay};
use roadrunner::Server;
use std::collections::BTreeMap;

/// The CPUs `pid` may run on (its main thread's `Cpus_allowed_list`).
fn allowed_cpus(pid: u32) -> Vec<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).expect("Cpus_allowed_list").trim();
    let mut cpus = Vec::new();
    for range in list.split(',') {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        cpus.extend(first.parse::<usize>().unwrap()..=last.parse::<usize>().unwrap());
    }
    cpus
}

/// The scheduling policy of `pid` (field 41 of /proc/pid/stat): 0 normal, 3 batch.
/// Compared with the host's own, not with 0: the suite may run under `chrt`.
fn policy(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // The command name may hold spaces: count fields after its closing parenthesis,
    // which ends field 2.
    let rest = &stat[stat.rfind(')').expect("comm") + 1..];
    rest.split_whitespace().nth(41 - 3).expect("policy").parse().expect("a number")
}

/// How many of `workers` are pinned to each CPU; fails if one is not pinned to exactly
/// one CPU the host may use.
fn workers_per_cpu(workers: &[u32]) -> BTreeMap<usize, usize> {
    let host = allowed_cpus(std::process::id());
    let mut per_cpu: BTreeMap<usize, usize> = host.iter().map(|&cpu| (cpu, 0)).collect();
    for &pid in workers {
        let cpus = allowed_cpus(pid);
        assert_eq!(cpus.len(), 1, "worker {pid} may run on {cpus:?}, not on one CPU");
        *per_cpu.get_mut(&cpus[0]).unwrap_or_else(|| panic!("worker {pid} on CPU {}, not the host's", cpus[0])) += 1;
    }
    per_cpu
}

fn assert_even(per_cpu: &BTreeMap<usize, usize>) {
    let (least, most) = (per_cpu.values().min().unwrap(), per_cpu.values().max().unwrap());
    assert!(most - least <= 1, "workers are not spread evenly: {per_cpu:?}");
}

/// Kills `pid` and waits until the pool has replaced it; returns the replacement.
fn kill_and_wait_for_replacement(server: &Server, pid: u32) -> u32 {
    let before = pids(server);
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let mut now = Vec::new();
    assert!(
        common::wait_until(20, || {
            now = pids(server);
            now.len() == before.len() && !now.contains(&pid)
        }),
        "worker {pid} was not replaced: {now:?}"
    );
    let new: Vec<u32> = now.iter().copied().filter(|p| !before.contains(p)).collect();
    assert_eq!(new.len(), 1, "before {before:?}, now {now:?}");
    new[0]
}

#[test]
fn pinned_workers_are_spread_evenly_over_the_hosts_cpus_on_every_relay() {
    let cpus = allowed_cpus(std::process::id()).len() as u64;
    for kind in [Relay::Pipes, Relay::Unix, Relay::Tcp] {
        common::isolated(|| {
            let (relay, _dir) = common::relay(kind);
            // Two rounds over the CPUs and one more: uneven by one on purpose.
            let server = common::started_with(&relay, "echo", 2 * cpus + 1, |c| c.worker_cpu_affinity = true);
            let per_cpu = workers_per_cpu(&pids(&server));
            assert_even(&per_cpu);
            assert_eq!(per_cpu.values().sum::<usize>() as u64, 2 * cpus + 1);
            assert_eq!(server.exec(b"", b"pinned").unwrap().body(), b"pinned", "{kind:?}");
            server.stop().unwrap();
        });
    }
}

#[test]
fn a_replacement_is_pinned_to_the_cpu_its_predecessor_left() {
    common::isolated(|| {
        let cpus = allowed_cpus(std::process::id()).len() as u64;
        let server = common::started_with("pipes", "echo", 2 * cpus, |c| c.worker_cpu_affinity = true);
        for _ in 0..2 {
            // Every CPU has two workers: only the one that lost a worker has room.
            let victim = *pids(&server).last().unwrap();
            let its_cpu = allowed_cpus(victim);
            let replacement = kill_and_wait_for_replacement(&server, victim);
            assert_eq!(allowed_cpus(replacement), its_cpu, "replacement {replacement} of {victim}");
            assert!(workers_per_cpu(&pids(&server)).values().all(|&n| n == 2));
        }
        server.stop().unwrap();
    });
}

#[test]
fn batch_scheduling_applies_to_every_worker_and_replacement() {
    common::isolated(|| {
        let host_policy = policy(std::process::id());
        let server = common::started_with("pipes", "echo", 3, |c| c.worker_sched_batch = true);
        let first = pids(&server);
        assert!(first.iter().all(|&pid| policy(pid) == libc::SCHED_BATCH as u32));
        let replacement = kill_and_wait_for_replacement(&server, first[0]);
        assert_eq!(policy(replacement), libc::SCHED_BATCH as u32);
        assert_eq!(server.exec(b"", b"batch").unwrap().body(), b"batch");
        // The host itself keeps its scheduling.
        assert_eq!(policy(std::process::id()), host_policy);
        server.stop().unwrap();
    });
}

#[test]
fn by_default_workers_are_scheduled_like_the_host() {
    common::isolated(|| {
        let host = allowed_cpus(std::process::id());
        let server = common::started("pipes", "echo", 2);
        for pid in pids(&server) {
            assert_eq!(allowed_cpus(pid), host, "worker {pid}");
            assert_eq!(policy(pid), policy(std::process::id()), "worker {pid}");
        }
        server.stop().unwrap();
    });
}

#[test]
fn both_settings_together_on_a_reconfigured_pool() {
    common::isolated(|| {
        let server = common::started("pipes", "echo", 2);
        let mut config = common::config("pipes", "echo", 2);
        config.worker_cpu_affinity = true;
        config.worker_sched_batch = true;
        server.reconfigure(config).unwrap();
        let workers = pids(&server);
        assert_even(&workers_per_cpu(&workers));
        assert!(workers.iter().all(|&pid| policy(pid) == libc::SCHED_BATCH as u32));
        server.stop().unwrap();
    });
}
