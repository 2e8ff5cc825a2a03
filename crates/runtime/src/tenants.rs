//! The tenant registry the config names (`[tenants]`): the data directory's `tenants.db`
//! (the default, for one machine) or a DynamoDB table shared by every API server and
//! operator machine. `tsunagu serve` authenticates against it and `tsunagu tenant`
//! manages it, on any deployment.

use crate::config::{Config, TenantsConfig};
use anyhow::Context;
use std::sync::Arc;
use tsunagu_aws::DynamoTenantDirectory;
use tsunagu_embedded_store::TenantRegistry;
use tsunagu_service::tenants::TenantDirectory;

/// Opens the registry `[tenants]` names: the embedded file (created when missing), or the
/// DynamoDB table (created when missing only with `create_if_missing`).
pub async fn open_tenant_directory(config: &Config) -> anyhow::Result<Arc<dyn TenantDirectory>> {
    open(config, false).await
}

/// Opens the registry `[tenants]` names to list and authenticate only: the embedded file
/// read-only (a missing one reads as empty; nothing is created), the DynamoDB table as
/// usual.
pub async fn open_tenant_directory_read_only(
    config: &Config,
) -> anyhow::Result<Arc<dyn TenantDirectory>> {
    open(config, true).await
}

async fn open(config: &Config, read_only: bool) -> anyhow::Result<Arc<dyn TenantDirectory>> {
    match &config.tenants {
        TenantsConfig::Embedded {} => {
            let path = config.tenants_path();
            let registry = if read_only {
                TenantRegistry::open_read_only(&path)
            } else {
                TenantRegistry::open(&path)
            }
            .with_context(|| format!("cannot open the tenant registry {}", path.display()))?;
            Ok(Arc::new(registry))
        }
        TenantsConfig::Dynamodb(table) => {
            let aws = config
                .aws
                .as_ref()
                .context("[aws] is required by [tenants] type = \"dynamodb\"")?;
            let registry = DynamoTenantDirectory::connect(aws, table)
                .await
                .context("cannot open the tenant registry (DynamoDB)")?;
            Ok(Arc::new(registry))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_default_registry_is_the_data_directorys_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let registry = open_tenant_directory(&config).await.unwrap();
        let (tenant, token) = registry.create("acme").await.unwrap();
        assert!(config.tenants_path().exists());
        drop(registry);
        let reopened = open_tenant_directory(&config).await.unwrap();
        assert_eq!(reopened.authenticate(&token).await.unwrap(), Some(tenant));
    }
}
