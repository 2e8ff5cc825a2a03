//! `tsunagu tenant`: tenants and their bearer tokens, in the config's registry (the data
//! directory's file, or a DynamoDB table). Tokens are stored hashed; a token is shown
//! only when issued.

use super::DataDirCreation;
use crate::cli::TenantCommand;
use crate::outln;
use std::process::ExitCode;
use tsunagu_runtime::config::Config;

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
        TenantCommand::Create { name } => {
            let (tenant, token) = registry.create(&name).await?;
            created.report()?;
            outln!("created tenant {} ({})", tenant.name, tenant.id)?;
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
        TenantCommand::Revoke { tenant } => {
            let revoked = registry.revoke_tokens(&tenant).await?;
            outln!("revoked {revoked} token(s) of {tenant}")?;
        }
        TenantCommand::List => {
            outln!("{:<20}  {:<30}  {:>6}", "id", "name", "tokens")?;
            for t in registry.list().await? {
                outln!("{:<20}  {:<30}  {:>6}", t.id, t.name, t.active_tokens)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
