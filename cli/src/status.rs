//! `bazaar status`: the registry's view of the system, as a table.

use std::process::ExitCode;

use chassis::discovery::RegistryClient;
use contracts::discovery::{HealthStatus, Instance};

use crate::args::StatusArgs;
use crate::console::Console;
use crate::procfs::Memory;
use crate::state;

pub(crate) async fn run(args: StatusArgs) -> ExitCode {
    let running = state::running(&args.data_dir);
    // The processes' memory can be read when the system is the one `up` started here.
    let local = running.as_ref().filter(|_| args.registry.is_none());
    let registry = state::registry_url(args.registry, running.as_ref());
    let client = RegistryClient::connect(&registry, &state::operator_transport(&args.data_dir));
    match client.instances().await {
        Ok(list) => {
            print!("{}", render(&list.instances, Console::detect()));
            if let Some(run) = local {
                let pids = run.instances.iter().map(|i| i.pid).chain([run.pid]);
                let (memory, processes) = Memory::of_all(pids);
                if processes > 0 {
                    print!("{}", memory_line(&memory, processes));
                }
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "error: cannot reach the registry at {registry}: {}",
                chassis::error::ErrorChain(&error)
            );
            eprintln!(
                "Is `bazaar up` running? Start it, or point at a registry with --registry URL."
            );
            ExitCode::FAILURE
        }
    }
}

/// What the system's processes hold: the proportional sets added up (each page once, the
/// memory really used), and beside it the resident sets added up (the executable's shared
/// pages once per process), which is what adding up `ps`'s RSS column gives.
fn memory_line(memory: &Memory, processes: usize) -> String {
    format!(
        "Memory: {:.0} MB held by {processes} processes (each shared page once; {:.0} MB adding up their resident sets)\n",
        memory.held_mb(),
        memory.resident_mb()
    )
}

/// The table of instances.
pub(crate) fn render(instances: &[Instance], console: Console) -> String {
    if instances.is_empty() {
        return "No instances are registered.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|i| {
            let health = match i.status {
                HealthStatus::Passing => console.green("passing"),
                HealthStatus::Critical => console.red("critical"),
            };
            vec![
                i.service.clone(),
                i.id.clone(),
                i.version.clone(),
                i.address.clone(),
                health,
                i.meta.get("pid").cloned().unwrap_or_else(|| "-".into()),
                i.output.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let passing = instances
        .iter()
        .filter(|i| i.status == HealthStatus::Passing)
        .count();
    let mut out = crate::table::render(
        "",
        &[
            "SERVICE", "INSTANCE", "VERSION", "ADDRESS", "HEALTH", "PID", "CHECK",
        ],
        &rows,
    );
    out.push_str(&format!(
        "\n{passing} of {} instances passing\n",
        instances.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn instance(
        service: &str,
        id: &str,
        port: u16,
        status: HealthStatus,
        output: Option<&str>,
    ) -> Instance {
        Instance {
            id: id.into(),
            service: service.into(),
            address: format!("http://127.0.0.1:{port}"),
            version: "0.1.0".into(),
            health_url: format!("http://127.0.0.1:{port}/health/ready"),
            meta: BTreeMap::from([("pid".to_owned(), "4242".to_owned())]),
            status,
            output: output.map(str::to_owned),
            registered_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_memory_line_gives_the_memory_held_and_the_resident_sets() {
        let memory = Memory {
            resident_kib: 296_875,
            proportional_kib: 85_937,
        };
        assert_eq!(
            memory_line(&memory, 13),
            "Memory: 88 MB held by 13 processes (each shared page once; 304 MB adding up their resident sets)\n"
        );
    }

    #[test]
    fn renders_the_status_table() {
        let instances = [
            instance("gateway", "gateway-1", 7700, HealthStatus::Passing, None),
            instance("users", "users-1", 7711, HealthStatus::Passing, None),
            instance(
                "users",
                "users-2",
                41234,
                HealthStatus::Critical,
                Some("connection refused"),
            ),
        ];
        insta::assert_snapshot!(render(&instances, Console::plain()), @r"
        SERVICE  INSTANCE   VERSION  ADDRESS                 HEALTH    PID   CHECK
        gateway  gateway-1  0.1.0    http://127.0.0.1:7700   passing   4242
        users    users-1    0.1.0    http://127.0.0.1:7711   passing   4242
        users    users-2    0.1.0    http://127.0.0.1:41234  critical  4242  connection refused

        2 of 3 instances passing
        ");
        assert_eq!(
            render(&[], Console::plain()),
            "No instances are registered.\n"
        );
    }
}
