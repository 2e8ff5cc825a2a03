//! `tsunagu check --config FILE`: validates the config (no I/O), then checks that every
//! adapter it names is reachable and set up as expected, changing nothing.

use crate::outln;
use std::process::ExitCode;
use tsunagu_runtime::check::check_adapters;
use tsunagu_runtime::config::Config;

pub async fn run(config: Config, json: bool) -> anyhow::Result<ExitCode> {
    let lines = check_adapters(&config).await;
    let ok = lines.iter().all(|l| l.outcome.is_ok());
    if json {
        let lines: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| match &l.outcome {
                Ok(found) => serde_json::json!({"what": l.what, "ok": true, "found": found}),
                Err(problem) => {
                    serde_json::json!({"what": l.what, "ok": false, "problem": problem})
                }
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"config_valid": true, "ok": ok, "checks": lines})
            )?
        )?;
    } else {
        outln!("config: valid")?;
        for line in &lines {
            match &line.outcome {
                Ok(found) => outln!("  ✓ {}: {found}", line.what)?,
                Err(problem) => outln!("  ✗ {}: {problem}", line.what)?,
            }
        }
        outln!(
            "{}",
            if ok {
                "all checks passed"
            } else {
                "some checks failed"
            }
        )?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
