//! Where a run's CPU goes: when the system under load runs on this machine (`bazaar up` in the
//! data directory), the CPU time of every instance's process, and of the generator itself, is
//! read from `/proc` before and after the run. The report gives each service's share, in cores
//! and in milliseconds of CPU per journey, so a checkout's cost can be followed to the process
//! that pays it, and the memory each service holds at the end of the run (proportional sets,
//! see [`crate::procfs`]). Elsewhere (another machine, or no `/proc`) the table is left out.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::procfs::Memory;
use crate::state::RunState;

/// The generator's own row.
pub(crate) const GENERATOR: &str = "bazaar load (this process)";

/// CPU time used so far by each process, by service.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    /// (service, pid) → CPU time.
    used: BTreeMap<(String, u32), Duration>,
    /// (service, pid) → memory held.
    memory: BTreeMap<(String, u32), Memory>,
}

impl Sample {
    /// Reads every instance of `run` and this process; an instance whose process is gone (or
    /// not readable) is left out.
    pub(crate) fn take(run: &RunState) -> Self {
        let (mut used, mut memory) = (BTreeMap::new(), BTreeMap::new());
        let processes = run
            .instances
            .iter()
            .map(|i| (i.service.clone(), i.pid))
            .chain([("bazaar up".to_owned(), run.pid)])
            .chain([(GENERATOR.to_owned(), std::process::id())]);
        for (service, pid) in processes {
            if let Some(held) = Memory::of(pid) {
                memory.insert((service.clone(), pid), held);
            }
            if let Some(time) = crate::procfs::cpu_time(pid) {
                used.insert((service, pid), time);
            }
        }
        Self { used, memory }
    }

    /// The memory of the system's processes read (not the generator's), added up.
    pub(crate) fn memory(&self) -> Memory {
        Memory::sum(
            self.memory
                .iter()
                .filter(|((service, _), _)| service != GENERATOR)
                .map(|(_, held)| *held),
        )
    }
}

/// One service's CPU over a run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Usage {
    pub(crate) service: String,
    /// Processes counted (instances present at both ends of the run).
    pub(crate) processes: usize,
    /// Average cores busy over the run.
    pub(crate) cores: f64,
    /// CPU milliseconds per journey of the run.
    pub(crate) ms_per_journey: f64,
    /// Memory its processes hold at the end of the run, MB (proportional sets).
    pub(crate) memory_mb: f64,
}

/// Each service's CPU between `before` and `after`, busiest first, with the memory it holds
/// at `after`. A process that started or ended during the run (a restart) is counted only
/// where it appears in both.
pub(crate) fn usage(before: &Sample, after: &Sample, seconds: f64, journeys: u64) -> Vec<Usage> {
    let mut by_service: BTreeMap<&str, (usize, Duration, Memory)> = BTreeMap::new();
    for (key, end) in &after.used {
        if let Some(start) = before.used.get(key) {
            let entry = by_service.entry(key.0.as_str()).or_default();
            entry.0 += 1;
            entry.1 += end.saturating_sub(*start);
            if let Some(held) = after.memory.get(key) {
                entry.2 = Memory::sum([entry.2, *held]);
            }
        }
    }
    let mut rows: Vec<Usage> = by_service
        .into_iter()
        .map(|(service, (processes, used, memory))| Usage {
            service: service.to_owned(),
            processes,
            cores: if seconds > 0.0 {
                used.as_secs_f64() / seconds
            } else {
                0.0
            },
            ms_per_journey: if journeys > 0 {
                used.as_secs_f64() * 1000.0 / journeys as f64
            } else {
                0.0
            },
            memory_mb: memory.held_mb(),
        })
        .collect();
    rows.sort_by(|a, b| b.cores.total_cmp(&a.cores));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_per_service_over_processes_present_at_both_ends() {
        let sample = |entries: &[(&str, u32, u64)]| Sample {
            used: entries
                .iter()
                .map(|(s, pid, ms)| (((*s).to_owned(), *pid), Duration::from_millis(*ms)))
                .collect(),
            memory: entries
                .iter()
                .map(|(s, pid, _)| {
                    let held = Memory {
                        resident_kib: 20_000,
                        proportional_kib: 5_000 * u64::from(*pid),
                    };
                    (((*s).to_owned(), *pid), held)
                })
                .collect(),
        };
        let before = sample(&[("orders", 1, 100), ("orders", 2, 0), ("catalog", 3, 50)]);
        // Instance 2 restarted as 4 during the run: only what both ends saw counts.
        let after = sample(&[
            ("orders", 1, 2100),
            ("orders", 4, 500),
            ("catalog", 3, 1050),
        ]);
        let rows = usage(&before, &after, 10.0, 100);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].service, "orders");
        assert_eq!(rows[0].processes, 1);
        assert!((rows[0].cores - 0.2).abs() < 1e-9);
        assert!((rows[0].ms_per_journey - 20.0).abs() < 1e-9);
        assert_eq!(rows[1].service, "catalog");
        assert!((rows[1].ms_per_journey - 10.0).abs() < 1e-9);
        // The memory of the processes counted: instance 1 of orders, instance 3 of catalog.
        assert!((rows[0].memory_mb - 5_000.0 * 1024.0 / 1e6).abs() < 1e-9);
        assert!((rows[1].memory_mb - 15_000.0 * 1024.0 / 1e6).abs() < 1e-9);
        assert_eq!(after.memory().proportional_kib, 5_000 * (1 + 4 + 3));
    }
}
