//! The release scenarios: `bazaar deploy` run as a user runs it, under load, narrated by its
//! own progress lines, and the outcome checked in the registry.

use clap::Parser;

use super::platform::Load;
use super::{Demo, Verdict};
use crate::args::{Cli, Command};

/// Runs `bazaar deploy <args>` against the demo's system; its exit code as printed output
/// goes to the terminal.
async fn deploy(demo: &Demo, args: &[&str]) -> Result<(), String> {
    let data_dir = demo.data_dir.to_string_lossy().into_owned();
    let mut argv = vec!["bazaar", "deploy"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--data-dir", &data_dir]);
    let cli = Cli::try_parse_from(&argv).map_err(|e| e.to_string())?;
    let Command::Deploy(deploy) = cli.command else {
        return Err("not a deploy".to_owned());
    };
    demo.say
        .step(&format!("bazaar {}", argv[1..argv.len() - 2].join(" ")));
    crate::release::deploy(deploy).await;
    Ok(())
}

/// The catalog's policy and the versions its passing instances run, after a release.
async fn catalog_after(demo: &Demo) -> Result<(Option<String>, String, Vec<String>), String> {
    let policy = demo.remote.policy("catalog").await?;
    let mut versions: Vec<String> = demo
        .remote
        .instances("catalog")
        .await?
        .into_iter()
        .map(|i| i.version)
        .collect();
    versions.sort();
    versions.dedup();
    let stable = policy
        .as_ref()
        .map(|p| p.stable.clone())
        .unwrap_or_default();
    Ok((policy.and_then(|p| p.candidate), stable, versions))
}

pub(crate) async fn canary_rollback(demo: &Demo) -> Result<Verdict, String> {
    let (_, before, _) = catalog_after(demo).await?;
    let before = if before.is_empty() {
        demo.remote
            .instances("catalog")
            .await?
            .first()
            .map(|i| i.version.clone())
            .unwrap_or_default()
    } else {
        before
    };
    let candidate = format!("9.0.{}", demo.run);
    // Customers read the catalog meanwhile, so the canary has requests to be judged on.
    let customers = Load::start(demo, 2, "/api/categories");
    deploy(
        demo,
        &[
            "catalog",
            "--version",
            &candidate,
            "--steps",
            "20,50,100",
            "--interval",
            "5s",
            "--fault-error-rate",
            "0.3",
        ],
    )
    .await?;
    customers.finish().await;
    let (candidate_left, stable, versions) = catalog_after(demo).await?;
    demo.say.step(&format!(
        "Afterwards: catalog's policy says stable {stable}, candidate {}; instances run {}",
        candidate_left.as_deref().unwrap_or("none"),
        versions.join(", ")
    ));
    let mut verdict = Verdict::new();
    verdict.check(
        stable == before && candidate_left.is_none(),
        format!("all of catalog's traffic is back on {before}"),
    );
    verdict.check(
        !versions.contains(&candidate),
        format!("the candidate {candidate}'s instances were stopped"),
    );
    Ok(verdict)
}

pub(crate) async fn blue_green(demo: &Demo) -> Result<Verdict, String> {
    let candidate = format!("8.0.{}", demo.run);
    let customers = Load::start(demo, 2, "/api/categories");
    deploy(
        demo,
        &[
            "catalog",
            "--version",
            &candidate,
            "--strategy",
            "blue-green",
            "--rollback-window",
            "2s",
        ],
    )
    .await?;
    let (sent, failed) = customers.finish().await;
    let (candidate_left, stable, versions) = catalog_after(demo).await?;
    demo.say.step(&format!(
        "Afterwards: catalog's policy says stable {stable}; instances run {}",
        versions.join(", ")
    ));
    let mut verdict = Verdict::new();
    verdict.check(
        failed == 0 && sent > 0,
        format!("{failed} of the {sent} catalog reads made meanwhile failed"),
    );
    verdict.check(
        stable == candidate && candidate_left.is_none(),
        format!("catalog's traffic all goes to {candidate}"),
    );
    verdict.check(
        versions == [candidate.clone()],
        format!("only {candidate} runs once the rollback window closed"),
    );
    Ok(verdict)
}
