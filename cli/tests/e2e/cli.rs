//! What the command line says when it is used wrong.

use std::process::Command;

use crate::system::BIN;

fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    )
}

#[test]
fn serve_names_the_bad_key_value_and_origin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8");
    assert_eq!(
        run(
            &["serve", "users", "--data-dir", data, "--port", "eighty"],
            &[]
        ),
        (
            Some(64),
            "invalid config: http.port = \"eighty\" (from --port eighty): expected u16".to_owned()
        )
    );
    let (code, message) = run(
        &["serve", "users", "--data-dir", data],
        &[("BAZAAR_USERS__ACCESS_TOKEN_TTL", "soon")],
    );
    assert_eq!(code, Some(64));
    assert!(message.starts_with("invalid config: users.access_token_ttl = \"soon\" (from BAZAAR_USERS__ACCESS_TOKEN_TTL)"), "{message}");
    assert_eq!(
        run(&["serve", "gateway", "--registry", "ftp://nowhere"], &[]),
        (Some(64), "invalid config: discovery.registry = \"ftp://nowhere\" (from configuration): expected a http or https URL".to_owned())
    );
    assert_eq!(
        run(
            &["serve", "users", "--data-dir", data, "--set", "oops"],
            &[]
        )
        .0,
        Some(64)
    );
}

#[test]
fn up_refuses_bad_flags_before_starting_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("never");
    let data = data.to_str().expect("utf-8");
    let (code, message) = run(&["up", "--data-dir", data, "--replicas", "users=0"], &[]);
    assert_eq!(code, Some(64));
    assert!(message.contains("--replicas \"users=0\""), "{message}");
    let (code, message) = run(&["up", "--data-dir", data, "--base-port", "5421"], &[]);
    assert_eq!(code, Some(64));
    assert!(message.contains("port 5432"), "{message}");
    let (code, message) = run(
        &["up", "--data-dir", data, "--db", "mysql://localhost"],
        &[],
    );
    assert_eq!(code, Some(64));
    assert!(message.contains("--db"), "{message}");
    assert!(!std::path::Path::new(data).exists(), "nothing was created");
}

#[test]
fn a_monolith_whose_port_is_taken_stops_and_names_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let registry = taken.local_addr().expect("address").port();
    // The registry's port is the base port's + 1 (the gateway's is the base port).
    let base = (registry - 1).to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8");
    let (code, message) = run(&["monolith", "--base-port", &base, "--data-dir", data], &[]);
    assert_eq!(code, Some(1), "{message}");
    assert!(
        message.contains(&format!("registry failed: binding 127.0.0.1:{registry}")),
        "{message}"
    );
    assert!(
        !dir.path().join("run.json").exists(),
        "nothing says it is running"
    );
}

#[test]
fn release_commands_name_the_bad_flag_before_calling_anything() {
    let nowhere = ["--registry", "http://127.0.0.1:9"];
    let cases: [(&[&str], &str); 6] = [
        (
            &["deploy", "catalog", "--version", "two words"],
            "version \"two words\"",
        ),
        (
            &["deploy", "gateway", "--version", "2"],
            "releases are for the services behind the gateway",
        ),
        (
            &["deploy", "catalog", "--version", "2", "--steps", "5,50"],
            "the last step must be 100",
        ),
        (
            &[
                "deploy",
                "catalog",
                "--version",
                "2",
                "--fault-error-rate",
                "1.5",
            ],
            "between 0 and 1",
        ),
        (
            &["faults", "set", "x", "--service", "payments"],
            "give --error-rate, --delay or --drop-rate",
        ),
        (
            &[
                "faults",
                "set",
                "a/b",
                "--service",
                "payments",
                "--error-rate",
                "0.1",
            ],
            "rule name \"a/b\"",
        ),
    ];
    for (args, expected) in cases {
        let mut args = args.to_vec();
        args.extend(nowhere);
        let (code, message) = run(&args, &[]);
        assert!(matches!(code, Some(64 | 2)), "{args:?}: {code:?} {message}");
        assert!(message.contains(expected), "{args:?}: {message}");
    }
}

#[test]
fn status_explains_an_unreachable_registry() {
    let (code, message) = run(&["status", "--registry", "http://127.0.0.1:9"], &[]);
    assert_eq!(code, Some(1));
    assert!(
        message.contains("cannot reach the registry at http://127.0.0.1:9"),
        "{message}"
    );
}

#[test]
fn reset_refuses_a_folder_it_did_not_make() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("precious.txt"), "keep me").expect("write");
    let (code, message) = run(
        &[
            "reset",
            "--yes",
            "--data-dir",
            dir.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(code, Some(64));
    assert!(
        message.contains("is not a Bazaar data directory"),
        "{message}"
    );
    assert!(dir.path().join("precious.txt").exists());
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(BIN)
        .args(["serve", "registry", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("listening on http://"));
    assert!(listening.is_some(), "the registry announces its address");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signalled");
    let status = child.wait().expect("exits");
    assert_eq!(status.code(), Some(0));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter()
            .any(|line| line.contains("\"message\":\"stopped\"")),
        "{rest:?}"
    );
}

#[test]
fn start_and_stop_lines_survive_a_quiet_log_level() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(BIN)
        .args(["serve", "registry", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .env("BAZAAR_LOG__LEVEL", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().expect("stdout");
    let first = BufReader::new(stdout)
        .lines()
        .next()
        .and_then(Result::ok)
        .unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        first.contains("listening on http://"),
        "`up` depends on this line: {first}"
    );
}
