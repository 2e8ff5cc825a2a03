//! The embedded tenant registry against the tenant registry's suite.

use tsunagu_embedded_store::TenantRegistry;

#[tokio::test]
async fn embedded_tenant_registry_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TenantRegistry::open(&dir.path().join("tenants.db")).unwrap();
    tsunagu_conformance::tenants::check_all(&registry, "embedded").await;
}
