//! What a running `bazaar up` leaves in its data directory.
//!
//! - `.bazaar-data`: marks the folder as a Bazaar data directory, so `reset` never deletes a
//!   folder it did not make.
//! - `run.json`: the running system (pid of `up`, registry and gateway URLs, every instance
//!   and its pid); present only while `up` runs. `status` reads it to find the registry, and a
//!   second `up` or a `reset` refuse to touch a directory whose `up` is alive.

use std::path::{Path, PathBuf};

use chassis::client::Transport;

use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// Name of the marker file.
pub(crate) const MARKER: &str = ".bazaar-data";
/// Name of the state file.
pub(crate) const RUN_FILE: &str = "run.json";

/// The running system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RunState {
    /// Process id of `bazaar up`.
    pub(crate) pid: u32,
    /// Registry base URL.
    pub(crate) registry: String,
    /// Gateway base URL.
    pub(crate) gateway: String,
    /// Base URL of `up`'s control API (starting and stopping instances).
    #[serde(default)]
    pub(crate) control: String,
    /// Every instance.
    pub(crate) instances: Vec<InstanceState>,
}

/// One running instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InstanceState {
    /// Instance id.
    pub(crate) id: String,
    /// Service.
    pub(crate) service: String,
    /// Base URL.
    pub(crate) url: String,
    /// Process id.
    pub(crate) pid: u32,
    /// HTTPS base URL, for an instance that serves HTTPS too (the gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) https: Option<String>,
}

pub(crate) fn run_file(data_dir: &Path) -> PathBuf {
    data_dir.join(RUN_FILE)
}

/// The state of the `up` that is running in `data_dir`, if one is.
pub(crate) fn running(data_dir: &Path) -> Option<RunState> {
    let text = std::fs::read_to_string(run_file(data_dir)).ok()?;
    let state: RunState = serde_json::from_str(&text).ok()?;
    is_alive(state.pid).then_some(state)
}

/// The registry a command talks to: `explicit` (its `--registry`), else the one of the `up`
/// running in `data_dir` (`running`, already read), else the default port on this machine.
pub(crate) fn registry_url(explicit: Option<String>, running: Option<&RunState>) -> String {
    explicit
        .or_else(|| running.map(|s| s.registry.clone()))
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", chassis::ports::REGISTRY))
}

/// Writes the state atomically (temporary file, then rename).
pub(crate) fn write(data_dir: &Path, state: &RunState) -> std::io::Result<()> {
    let temporary = data_dir.join(format!(".{RUN_FILE}.tmp"));
    std::fs::write(
        &temporary,
        serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(temporary, run_file(data_dir))
}

/// Whether a process with this id exists.
pub(crate) fn is_alive(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|pid| kill(Pid::from_raw(pid), None).is_ok())
}

/// How the command line calls services: as the operator, presenting the certificate `up`
/// issued in `data_dir` when there is one (services then only take mTLS), plainly otherwise.
/// An unusable certificate is reported and plain HTTP used, which services behind mTLS refuse.
pub(crate) fn operator_transport(data_dir: &Path) -> Transport {
    let config = crate::up::pki::operator_config(&crate::up::pki::dir(data_dir));
    if !config.cert.is_file() {
        return Transport::http();
    }
    match chassis::mtls::Identity::load(&config) {
        Ok(identity) => Transport::with_identity(identity),
        Err(error) => {
            eprintln!("warning: the operator certificate is unusable: {error}");
            Transport::http()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_dead_pids_do_not_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = RunState {
            pid: std::process::id(),
            registry: "http://127.0.0.1:7701".into(),
            gateway: "http://127.0.0.1:7700".into(),
            control: "http://127.0.0.1:41234".into(),
            instances: vec![InstanceState {
                id: "users-1".into(),
                service: "users".into(),
                url: "http://127.0.0.1:7711".into(),
                pid: 1,
                https: None,
            }],
        };
        write(dir.path(), &state).expect("writes");
        assert_eq!(running(dir.path()), Some(state.clone()));
        state.pid = u32::MAX - 7;
        write(dir.path(), &state).expect("writes");
        assert_eq!(running(dir.path()), None);
    }
}
