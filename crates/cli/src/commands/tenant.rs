//! `tsunagu tenant`: tenants and their bearer tokens, in the config's registry (the data
//! directory's file, or a DynamoDB table). Tokens are stored hashed; a token is shown
//! only when issued.

use super::DataDirCreation;
use crate::cli::TenantCommand;
use crate::outln;
use std::process::ExitCode;
use tsunagu_domain::synonyms::Synonyms;
use tsunagu_runtime::config::Config;
use tsunagu_service::tenants::{TenantError, TenantSettings};

pub async fn run(
    config: &Config,
    command: TenantCommand,
    created: DataDirCreation,
) -> anyhow::Result<ExitCode> {
    // Listing reads only: the registry opens read-only, creating nothing.
    let read_only = matches!(
        command,
        TenantCommand::List | TenantCommand::Synonyms { set: None, .. }
    );
    let registry = if read_only {
        tsunagu_runtime::tenants::open_tenant_directory_read_only(config).await?
    } else {
        tsunagu_runtime::tenants::open_tenant_directory(config).await?
    };
    match command {
        TenantCommand::Create { name, time_zone } => {
            let settings = TenantSettings { time_zone };
            let (tenant, token) = registry
                .create_with(&name, &settings)
                .await
                .map_err(name_the_flag)?;
            created.report()?;
            outln!(
                "created tenant {} ({}), time zone {}",
                tenant.name,
                tenant.id,
                tenant.zone().name()
            )?;
            outln!("bearer token (shown once; store it safely):")?;
            outln!("{token}")?;
        }
        TenantCommand::Token { tenant } => {
            let (tenant, token) = registry.issue_token(&tenant).await?;
            outln!(
                "new token for tenant {} ({}); {} live tokens",
                tenant.name,
                tenant.id,
                tenant.active_tokens
            )?;
            outln!("{token}")?;
        }
        TenantCommand::Set { tenant, time_zone } => {
            let tenant = registry
                .set_time_zone(&tenant, Some(&time_zone))
                .await
                .map_err(name_the_flag)?;
            outln!(
                "tenant {} ({}): time zone {}",
                tenant.name,
                tenant.id,
                tenant.zone().name()
            )?;
        }
        TenantCommand::Synonyms { tenant, set: None } => {
            let synonyms = registry.synonyms(&tenant).await?;
            outln!(
                "# synonyms of tenant {tenant}: {} group(s)",
                synonyms.groups().len()
            )?;
            for group in synonyms.groups() {
                outln!("{}", group.join(" = "))?;
            }
        }
        TenantCommand::Synonyms {
            tenant,
            set: Some(file),
        } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
                    .map_err(|e| anyhow::anyhow!("--set -: reading standard input: {e}"))?
            } else {
                std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("--set {}: {e}", file.display()))?
            };
            let synonyms = parse_synonyms(&text)
                .map_err(|e| anyhow::anyhow!("--set {}: {e}", file.display()))?;
            let stored = registry.set_synonyms(&tenant, &synonyms).await?;
            outln!(
                "tenant {tenant}: {} synonym group(s); searches use them from now on",
                stored.groups().len()
            )?;
        }
        TenantCommand::Revoke { tenant } => {
            let revoked = registry.revoke_tokens(&tenant).await?;
            outln!("revoked {revoked} token(s) of {tenant}")?;
        }
        TenantCommand::List => {
            outln!("{:<20}  {:<30}  {:>6}  time zone", "id", "name", "tokens")?;
            for t in registry.list().await? {
                outln!(
                    "{:<20}  {:<30}  {:>6}  {}",
                    t.id,
                    t.name,
                    t.active_tokens,
                    t.zone().name()
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A refused time zone names the flag that gave it.
fn name_the_flag(error: TenantError) -> anyhow::Error {
    match error {
        TenantError::InvalidTimeZone { .. } => anyhow::anyhow!("--time-zone: {error}"),
        other => other.into(),
    }
}

/// A synonym file (see `tenant synonyms --help`): one group per line, terms separated by
/// `=` or `,`; blank and `#` lines skipped. A refused list names the line of the group.
fn parse_synonyms(text: &str) -> Result<Synonyms, String> {
    let mut groups = Vec::new();
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        groups.push(
            line.split(['=', ',', '＝', '，'])
                .map(|term| term.trim().to_string())
                .collect(),
        );
        lines.push(number + 1);
    }
    Synonyms::new(groups).map_err(|e| match e.group().and_then(|g| lines.get(g - 1)) {
        Some(line) => format!("line {line}: {e}"),
        None => e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_synonyms;

    #[test]
    fn a_synonym_file_has_one_group_per_line() {
        let synonyms = parse_synonyms(
            "# meetings\nMTG = ミーティング = 打ち合わせ\n\n見積, 見積もり\nアポ＝アポイント\n",
        )
        .unwrap();
        assert_eq!(
            synonyms.groups(),
            [
                vec!["MTG", "ミーティング", "打ち合わせ"],
                vec!["見積", "見積もり"],
                vec!["アポ", "アポイント"],
            ]
        );
        assert!(parse_synonyms("").unwrap().is_empty());
        let error = parse_synonyms("# c\nMTG = 会議\n\n見積 = \n").unwrap_err();
        assert!(error.starts_with("line 4: group 2"), "{error}");
    }
}
