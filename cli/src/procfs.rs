//! What Linux's `/proc` says about the system's processes on this machine: CPU time used, and
//! memory held.
//!
//! Memory is read two ways, and the difference matters for a system of a dozen processes
//! started from one executable. A process's resident set (RSS) counts every page it maps,
//! including the executable's code, which every instance shares with the others; added up over
//! processes, the same page is counted once per process. The proportional set size (PSS)
//! splits each shared page between the processes that map it, so the processes' PSS adds up
//! to the memory the system really holds, each page once.

use std::time::Duration;

/// Memory held by one process, or by several added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Memory {
    /// Resident set, KiB: every page mapped, shared ones included.
    pub(crate) resident_kib: u64,
    /// Proportional set, KiB: each shared page divided between the processes mapping it.
    pub(crate) proportional_kib: u64,
}

impl Memory {
    /// The memory of process `pid`, from `/proc/<pid>/smaps_rollup`; `None` when it is gone
    /// or not readable.
    pub(crate) fn of(pid: u32) -> Option<Self> {
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
        parse_rollup(&rollup)
    }

    /// The memory of every process in `pids` that can be read, with how many could.
    pub(crate) fn of_all(pids: impl IntoIterator<Item = u32>) -> (Self, usize) {
        let read: Vec<Self> = pids.into_iter().filter_map(Self::of).collect();
        (Self::sum(read.iter().copied()), read.len())
    }

    /// Several processes' memory added up.
    pub(crate) fn sum(each: impl IntoIterator<Item = Self>) -> Self {
        each.into_iter().fold(Self::default(), |sum, m| Self {
            resident_kib: sum.resident_kib + m.resident_kib,
            proportional_kib: sum.proportional_kib + m.proportional_kib,
        })
    }

    /// The memory really held, in MB (10^6 bytes): the proportional sets.
    pub(crate) fn held_mb(&self) -> f64 {
        self.proportional_kib as f64 * 1024.0 / 1e6
    }

    /// The resident sets added up, in MB: shared pages counted once per process.
    pub(crate) fn resident_mb(&self) -> f64 {
        self.resident_kib as f64 * 1024.0 / 1e6
    }
}

/// `Rss:` and `Pss:` of a `smaps_rollup` text.
fn parse_rollup(rollup: &str) -> Option<Memory> {
    let field = |name: &str| {
        rollup.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.trim();
            value.strip_suffix("kB")?.trim().parse::<u64>().ok()
        })
    };
    Some(Memory {
        resident_kib: field("Rss:")?,
        proportional_kib: field("Pss:")?,
    })
}

/// User plus system CPU time process `pid` has used so far; `None` when it is gone or not
/// readable.
pub(crate) fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_time(&stat, ticks_per_second())
}

/// User plus system time from the text of `/proc/<pid>/stat` (fields 14 and 15, counted after
/// the command name, which is in parentheses and may hold spaces).
fn parse_cpu_time(stat: &str, ticks_per_second: u64) -> Option<Duration> {
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
        assert_eq!(parse_cpu_time(stat, 100), Some(Duration::from_millis(3250)));
        assert_eq!(parse_cpu_time("garbage", 100), None);
        assert_eq!(parse_cpu_time("1 (x) S 1 2", 100), None);
    }

    #[test]
    fn reads_resident_and_proportional_sets_of_a_rollup() {
        let rollup = "55d0c0a4f000-7ffd3a1f2000 ---p 00000000 00:00 0  [rollup]
Rss:               26668 kB
Pss:                7256 kB
Pss_Dirty:          4348 kB
Shared_Clean:      21000 kB
";
        assert_eq!(
            parse_rollup(rollup),
            Some(Memory {
                resident_kib: 26_668,
                proportional_kib: 7_256
            })
        );
        assert_eq!(parse_rollup("Rss: 12 kB\n"), None, "no Pss line");
        assert_eq!(parse_rollup("Rss: many kB\nPss: 1 kB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_can_be_read_and_shares_less_than_it_maps() {
        assert!(cpu_time(std::process::id()).is_some());
        let (memory, counted) = Memory::of_all([std::process::id(), u32::MAX]);
        assert_eq!(counted, 1, "a pid that does not exist is left out");
        assert!(memory.resident_kib > 0);
        assert!(memory.proportional_kib <= memory.resident_kib, "{memory:?}");
    }
}
