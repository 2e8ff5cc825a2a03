//! `tsunagu tenant`: tenants and their bearer tokens, in the config's registry (the data
//! directory's file, or a DynamoDB table). Tokens are stored hashed; a token is shown
//! only when issued.

use crate::cli::TenantCommand;
use std::process::ExitCode;
use tsunagu_runtime::config::Config;

pub async fn run(config: &Config, command: TenantCommand) -> anyhow::Result<ExitCode> {
    let registry = tsunagu_runtime::tenants::open_tenant_directory(config).await?;
    match command {
        TenantCommand::Create { name } => {
            let (tenant, token) = registry.create(&name).await?;
            println!("created tenant {} ({})", tenant.name, tenant.id);
            println!("bearer token (shown once; store it safely):");
            println!("{token}");
        }
        TenantCommand::Token { tenant } => {
            let (tenant, token) = registry.issue_token(&tenant).await?;
            println!(
                "new token for tenant {} ({}); {} live tokens",
                tenant.name, tenant.id, tenant.active_tokens
            );
            println!("{token}");
        }
        TenantCommand::Revoke { tenant } => {
            let revoked = registry.revoke_tokens(&tenant).await?;
            println!("revoked {revoked} token(s) of {tenant}");
        }
        TenantCommand::List => {
            println!("{:<20}  {:<30}  {:>6}", "id", "name", "tokens");
            for t in registry.list().await? {
                println!("{:<20}  {:<30}  {:>6}", t.id, t.name, t.active_tokens);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
