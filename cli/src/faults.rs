//! `bazaar faults set|list|clear`: the fault rules in the registry's KV store (`faults/<name>`),
//! which every instance watches and applies to its own requests within a second.

use std::process::ExitCode;

use chassis::error::ErrorChain;
use contracts::release::{FAULTS_PREFIX, FaultRule, fault_key};

use crate::args::{EXIT_USAGE, FaultsAction, FaultsArgs};
use crate::remote::Remote;
use crate::table;

pub(crate) async fn run(args: FaultsArgs) -> ExitCode {
    let remote = Remote::connect(args.registry.clone(), &args.data_dir);
    let result = match args.action {
        FaultsAction::Set {
            name,
            service,
            version,
            route,
            error_rate,
            status,
            delay,
            delay_rate,
            drop_rate,
        } => {
            let rule = FaultRule {
                service,
                version,
                route,
                error_rate: error_rate.unwrap_or(0.0),
                status,
                delay_ms: delay.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                delay_rate,
                drop_rate: drop_rate.unwrap_or(0.0),
            };
            let injects = error_rate.is_some() || drop_rate.is_some() || delay.is_some();
            let checked = check_name(&name)
                .and_then(|()| {
                    injects.then_some(()).ok_or_else(|| {
                        format!("fault rule {name} injects nothing: give --error-rate, --delay or --drop-rate")
                    })
                })
                .and_then(|()| rule.validate());
            match checked {
                Ok(()) => set(&remote, &name, &rule).await,
                Err(message) => {
                    eprintln!("error: {message}");
                    return ExitCode::from(EXIT_USAGE);
                }
            }
        }
        FaultsAction::List => list(&remote).await,
        FaultsAction::Clear {
            name: None,
            all: false,
        } => {
            eprintln!("error: name the rule to clear, or pass --all");
            return ExitCode::from(EXIT_USAGE);
        }
        FaultsAction::Clear { name, .. } => clear(&remote, name.as_deref()).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn check_name(name: &str) -> Result<(), String> {
    contracts::release::check_name("rule name", name, 100)
}

async fn set(remote: &Remote, name: &str, rule: &FaultRule) -> Result<(), String> {
    let value = serde_json::to_string(rule).map_err(|e| e.to_string())?;
    remote
        .registry
        .kv_put(&fault_key(name), &value, None)
        .await
        .map_err(|e| format!("the registry: {}", ErrorChain(&e)))?;
    println!("fault rule {name} set: {}", describe(rule));
    Ok(())
}

async fn rules(remote: &Remote) -> Result<Vec<(String, Result<FaultRule, String>)>, String> {
    let list = remote
        .registry
        .kv_list(FAULTS_PREFIX, None, std::time::Duration::ZERO)
        .await
        .map_err(|e| format!("the registry: {}", ErrorChain(&e)))?;
    Ok(list
        .entries
        .into_iter()
        .map(|entry| {
            let name = entry.key.trim_start_matches(FAULTS_PREFIX).to_owned();
            let rule = serde_json::from_str::<FaultRule>(&entry.value).map_err(|e| e.to_string());
            (name, rule)
        })
        .collect())
}

async fn list(remote: &Remote) -> Result<(), String> {
    let rules = rules(remote).await?;
    if rules.is_empty() {
        println!("no fault rules");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = rules
        .into_iter()
        .map(|(name, rule)| match rule {
            Ok(rule) => vec![
                name,
                rule.service.clone(),
                rule.version.clone().unwrap_or_else(|| "*".into()),
                rule.route.clone().unwrap_or_else(|| "*".into()),
                describe(&rule),
            ],
            Err(error) => vec![
                name,
                "?".into(),
                "?".into(),
                "?".into(),
                format!("invalid: {error}"),
            ],
        })
        .collect();
    print!(
        "{}",
        table::render(
            "",
            &["NAME", "SERVICE", "VERSION", "ROUTE", "INJECTS"],
            &rows
        )
    );
    Ok(())
}

async fn clear(remote: &Remote, name: Option<&str>) -> Result<(), String> {
    let names: Vec<String> = match name {
        Some(name) => vec![name.to_owned()],
        None => rules(remote)
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect(),
    };
    for name in &names {
        let existed = remote
            .registry
            .kv_delete(&fault_key(name))
            .await
            .map_err(|e| format!("the registry: {}", ErrorChain(&e)))?;
        if !existed && names.len() == 1 {
            return Err(format!("no fault rule {name:?} (see `bazaar faults list`)"));
        }
        println!("fault rule {name} cleared");
    }
    if names.is_empty() {
        println!("no fault rules");
    }
    Ok(())
}

/// `20 % errors (503), 200ms delay on 50 %, 5 % dropped`.
fn describe(rule: &FaultRule) -> String {
    let mut parts = Vec::new();
    if rule.error_rate > 0.0 {
        parts.push(format!(
            "{} % errors ({})",
            rule.error_rate * 100.0,
            rule.status
        ));
    }
    if rule.delay_ms > 0 {
        parts.push(format!(
            "{}ms delay on {} %",
            rule.delay_ms,
            rule.delay_rate * 100.0
        ));
    }
    if rule.drop_rate > 0.0 {
        parts.push(format!("{} % dropped", rule.drop_rate * 100.0));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_described_and_names_checked() {
        let mut rule = FaultRule::for_service("payments");
        rule.error_rate = 0.2;
        rule.status = 503;
        rule.delay_ms = 200;
        rule.delay_rate = 0.5;
        assert_eq!(describe(&rule), "20 % errors (503), 200ms delay on 50 %");
        assert!(check_name("slow-payments").is_ok());
        assert!(check_name("a/b").is_err());
        assert!(check_name("").is_err());
    }
}
