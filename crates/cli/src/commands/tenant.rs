//! `tsunagu tenant`: tenants and their bearer tokens, in the config's registry (the data
//! directory's file, or a DynamoDB table). Tokens are stored hashed; a token is shown
//! only when issued.

use super::DataDirCreation;
use crate::cli::TenantCommand;
use crate::outln;
use std::process::ExitCode;
use tsunagu_runtime::config::Config;
use tsunagu_service::tenants::{TenantError, TenantSettings};

pub async fn run(
    config: &Config,
    command: TenantCommand,
    created: DataDirCreation,
) -> anyhow::Result<ExitCode> {
    // Listing reads only: the registry opens read-only, creating nothing.
    let registry = if matches!(command, TenantCommand::List) {
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
