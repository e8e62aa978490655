//! Which CPU each worker is pinned to, when `worker_cpu_affinity` asks for it.
//!
//! Workers are spread evenly over the CPUs the host may run on: each new worker goes to
//! the CPU with the fewest of the pool's workers (the lowest-numbered on a tie), so a
//! replacement takes the place its predecessor left. The allowed CPUs are read again
//! at every placement: a host moved to other CPUs (taskset, a cgroup cpuset) places its
//! later workers there. Nothing here touches a process: it only counts.

use crate::sync::Mutex;
use crate::sys;
use std::io;
use std::sync::Arc;

/// The pool's workers per CPU.
#[derive(Default)]
pub(crate) struct CpuPlacement {
    /// Index: CPU number; value: workers placed there and not yet released.
    load: Mutex<Vec<u32>>,
}

/// One worker's place on a CPU; dropping it frees the place.
pub(crate) struct CpuSlot {
    placement: Arc<CpuPlacement>,
    cpu: usize,
}

impl CpuPlacement {
    /// Places one more worker: on the least-loaded CPU among those allowed now.
    pub(crate) fn take(self: &Arc<Self>) -> io::Result<CpuSlot> {
        let allowed = sys::allowed_cpus()?;
        let mut load = self.load.lock();
        let cpu = allowed
            .into_iter()
            .min_by_key(|&cpu| (load.get(cpu).copied().unwrap_or(0), cpu))
            .ok_or_else(|| io::Error::other("the host may run on no CPU"))?;
        if load.len() <= cpu {
            load.resize(cpu + 1, 0);
        }
        load[cpu] += 1;
        Ok(CpuSlot { placement: self.clone(), cpu })
    }
}

impl CpuSlot {
    /// The CPU this place is on.
    pub(crate) fn cpu(&self) -> usize {
        self.cpu
    }
}

impl Drop for CpuSlot {
    fn drop(&mut self) {
        self.placement.load.lock()[self.cpu] -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_spread_evenly_and_a_freed_place_is_taken_first() {
        let allowed = sys::allowed_cpus().unwrap();
        let placement = Arc::new(CpuPlacement::default());
        let slots: Vec<_> = (0..allowed.len() * 2 + 1).map(|_| placement.take().unwrap()).collect();
        for cpu in &allowed {
            let here = slots.iter().filter(|s| s.cpu() == *cpu).count();
            // Two rounds over every CPU, and the one extra on the first.
            assert_eq!(here, if cpu == &allowed[0] { 3 } else { 2 }, "CPU {cpu}");
        }
        let mut slots = slots;
        let last = allowed[allowed.len() - 1];
        let freed = slots.iter().position(|s| s.cpu() == last).unwrap();
        slots.swap_remove(freed);
        assert_eq!(placement.take().unwrap().cpu(), last, "the CPU that lost a worker is the least loaded");
    }
}
