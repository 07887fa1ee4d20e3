//! Where a run's CPU goes: when the system under load runs on this machine (`bazaar up` in the
//! data directory), the CPU time of every instance's process, and of the generator itself, is
//! read from `/proc` before and after the run. The report gives each service's share, in cores
//! and in milliseconds of CPU per journey, so a checkout's cost can be followed to the process
//! that pays it. Elsewhere (another machine, or no `/proc`) the table is left out.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::state::RunState;

/// The generator's own row.
pub(crate) const GENERATOR: &str = "bazaar load (this process)";

/// CPU time used so far by each process, by service.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    /// (service, pid) → CPU time.
    used: BTreeMap<(String, u32), Duration>,
}

impl Sample {
    /// Reads every instance of `run` and this process; an instance whose process is gone (or
    /// not readable) is left out.
    pub(crate) fn take(run: &RunState) -> Self {
        let ticks = ticks_per_second();
        let mut used = BTreeMap::new();
        let processes = run
            .instances
            .iter()
            .map(|i| (i.service.clone(), i.pid))
            .chain([("bazaar up".to_owned(), run.pid)])
            .chain([(GENERATOR.to_owned(), std::process::id())]);
        for (service, pid) in processes {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
            if let Some(time) = stat.ok().and_then(|s| cpu_time(&s, ticks)) {
                used.insert((service, pid), time);
            }
        }
        Self { used }
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
}

/// Each service's CPU between `before` and `after`, busiest first. A process that started or
/// ended during the run (a restart) is counted only where it appears in both.
pub(crate) fn usage(before: &Sample, after: &Sample, seconds: f64, journeys: u64) -> Vec<Usage> {
    let mut by_service: BTreeMap<&str, (usize, Duration)> = BTreeMap::new();
    for (key, end) in &after.used {
        if let Some(start) = before.used.get(key) {
            let entry = by_service.entry(key.0.as_str()).or_default();
            entry.0 += 1;
            entry.1 += end.saturating_sub(*start);
        }
    }
    let mut rows: Vec<Usage> = by_service
        .into_iter()
        .map(|(service, (processes, used))| Usage {
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
        })
        .collect();
    rows.sort_by(|a, b| b.cores.total_cmp(&a.cores));
    rows
}

/// User plus system time from the text of `/proc/<pid>/stat` (fields 14 and 15, counted after
/// the command name, which is in parentheses and may hold spaces).
fn cpu_time(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    let ticks = user.checked_add(system)?;
    Some(Duration::from_secs_f64(
        ticks as f64 / ticks_per_second.max(1) as f64,
    ))
}

/// The unit of `/proc`'s CPU times.
fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_and_system_time_past_a_name_with_spaces_and_parentheses() {
        let stat =
            "4242 (bazaar (serve) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(cpu_time(stat, 100), Some(Duration::from_millis(3250)));
        assert_eq!(cpu_time("garbage", 100), None);
        assert_eq!(cpu_time("1 (x) S 1 2", 100), None);
    }

    #[test]
    fn usage_is_per_service_over_processes_present_at_both_ends() {
        let sample = |entries: &[(&str, u32, u64)]| Sample {
            used: entries
                .iter()
                .map(|(s, pid, ms)| (((*s).to_owned(), *pid), Duration::from_millis(*ms)))
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
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_can_be_read() {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
        assert!(cpu_time(&stat, ticks_per_second()).is_some());
    }
}
