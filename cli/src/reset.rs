//! `bazaar reset`: delete the data directory so the next `up` seeds afresh.
//!
//! Refuses while an `up` runs on it, refuses a folder that is not a Bazaar data directory, and
//! asks first unless `--yes` is given (and refuses to guess when nobody can answer).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use crate::args::{EXIT_USAGE, ResetArgs};
use crate::state;

pub(crate) fn run(args: &ResetArgs) -> ExitCode {
    let dir = &args.data_dir;
    if !dir.exists() {
        println!("Nothing to reset: {} does not exist.", dir.display());
        return ExitCode::SUCCESS;
    }
    if let Some(running) = state::running(dir) {
        eprintln!(
            "error: bazaar up (pid {}) is running on {}; stop it first",
            running.pid,
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    if !dir.join(state::MARKER).exists() {
        eprintln!(
            "error: {} is not a Bazaar data directory (no {} file); not deleting it",
            dir.display(),
            state::MARKER
        );
        return ExitCode::from(EXIT_USAGE);
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "error: refusing to delete {} without confirmation; pass --yes",
                dir.display()
            );
            return ExitCode::from(EXIT_USAGE);
        }
        print!(
            "Delete {} and everything in it (databases, keys, logs)? [y/N] ",
            dir.display()
        );
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("Kept {}.", dir.display());
            return ExitCode::SUCCESS;
        }
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {
            println!(
                "Deleted {}. The next `bazaar up` starts with fresh data.",
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: deleting {}: {error}", dir.display());
            ExitCode::FAILURE
        }
    }
}
