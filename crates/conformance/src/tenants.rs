//! The tenant registry ([`TenantDirectory`]): names are unique and never shaped like an
//! id, a token authenticates its tenant until revoked, only digests are stored, and a
//! tenant is found by id or by name, and keeps the time zone and synonyms it was given.
//!
//! The registry must be empty of the names used here: pass a `prefix` unique to the run.

use tsunagu_domain::synonyms::{Synonyms, MAX_GROUPS, MAX_GROUP_TERMS, MAX_TERM_CHARS};
use tsunagu_service::tenants::{looks_like_token, TenantDirectory, TenantError, TenantSettings};

/// Runs every check.
pub async fn check_all<D: TenantDirectory + ?Sized>(registry: &D, prefix: &str) {
    tokens_authenticate_their_tenant_until_revoked(registry, prefix).await;
    names_are_unique_and_never_ids(registry, prefix).await;
    a_tenant_is_found_by_id_or_name(registry, prefix).await;
    unknown_tokens_and_tenants_are_refused(registry, prefix).await;
    a_tenant_keeps_its_time_zone(registry, prefix).await;
    a_tenant_keeps_its_synonyms(registry, prefix).await;
}

/// A tenant's synonym list is empty until set, is replaced whole (by id or by name) and
/// read back as stored, group order and spelling kept; an empty list removes it; another
/// tenant's list is its own; an unknown tenant is refused.
pub async fn a_tenant_keeps_its_synonyms<D: TenantDirectory + ?Sized>(registry: &D, prefix: &str) {
    let name = format!("{prefix}-synonyms");
    let (tenant, _) = registry.create(&name).await.expect("create");
    let (other, _) = registry
        .create(&format!("{prefix}-synonyms-other"))
        .await
        .expect("create another");
    assert!(registry
        .synonyms(&tenant.id)
        .await
        .expect("read")
        .is_empty());

    let list = |groups: &[&[&str]]| {
        Synonyms::new(
            groups
                .iter()
                .map(|g| g.iter().map(|t| t.to_string()).collect())
                .collect(),
        )
        .expect("a valid list")
    };
    let first = list(&[
        &["MTG", "ミーティング", "打ち合わせ"],
        &["見積", "見積もり"],
    ]);
    assert_eq!(
        registry
            .set_synonyms(&name, &first)
            .await
            .expect("set by name"),
        first
    );
    assert_eq!(registry.synonyms(&tenant.id).await.expect("read"), first);
    assert_eq!(registry.synonyms(&name).await.expect("read by name"), first);
    assert!(
        registry.synonyms(&other.id).await.expect("read").is_empty(),
        "another tenant's list is its own"
    );

    // Replaced whole, not merged.
    let second = list(&[&["アポ", "アポイント", "訪問予約"]]);
    registry
        .set_synonyms(&tenant.id, &second)
        .await
        .expect("set by id");
    let read = registry.synonyms(&tenant.id).await.expect("read");
    assert_eq!(read, second);
    assert_eq!(read.group_of("ｱﾎﾟ").map(<[String]>::len), Some(3));

    // The largest list fits (in one DynamoDB item too): every term as long as allowed,
    // in three-byte characters.
    let padding = "語".repeat(MAX_TERM_CHARS - 4);
    let largest: Vec<Vec<String>> = (0..MAX_GROUPS)
        .map(|g| {
            (0..MAX_GROUP_TERMS)
                .map(|t| format!("{padding}{g:03}{t}"))
                .collect()
        })
        .collect();
    let largest = Synonyms::new(largest).expect("the largest list is valid");
    registry
        .set_synonyms(&tenant.id, &largest)
        .await
        .expect("the largest list is stored");
    assert_eq!(registry.synonyms(&tenant.id).await.expect("read"), largest);

    registry
        .set_synonyms(&tenant.id, &Synonyms::default())
        .await
        .expect("clear");
    assert!(registry.synonyms(&name).await.expect("read").is_empty());
    assert!(matches!(
        registry.synonyms(&format!("{prefix}-nobody")).await,
        Err(TenantError::NotFound(_))
    ));
    assert!(matches!(
        registry
            .set_synonyms(&format!("{prefix}-nobody"), &first)
            .await,
        Err(TenantError::NotFound(_))
    ));
    // An id no tenant has is refused like an unknown name, with or without a list.
    assert!(matches!(
        registry.synonyms("tn_nobody0000000000").await,
        Err(TenantError::NotFound(_))
    ));
    // More live tokens beside the list change nothing of what is read.
    registry
        .issue_token(&tenant.id)
        .await
        .expect("another token");
    registry
        .set_synonyms(&tenant.id, &second)
        .await
        .expect("set again");
    assert_eq!(registry.synonyms(&tenant.id).await.expect("read"), second);
}

/// A tenant created with a time zone keeps its canonical IANA name (what `authenticate`,
/// `list` and the API's calendar groupings read); it can be changed and cleared to UTC by
/// id or name; a name that is not a time zone is refused and changes nothing.
pub async fn a_tenant_keeps_its_time_zone<D: TenantDirectory + ?Sized>(registry: &D, prefix: &str) {
    let name = format!("{prefix}-tokyo");
    let settings = TenantSettings {
        time_zone: Some(" Asia/Tokyo ".into()),
    };
    let (tenant, token) = registry
        .create_with(&name, &settings)
        .await
        .expect("create with a time zone");
    assert_eq!(tenant.time_zone.as_deref(), Some("Asia/Tokyo"));
    assert_eq!(tenant.zone().name(), "Asia/Tokyo");
    let authenticated = registry
        .authenticate(&token)
        .await
        .expect("authenticate")
        .expect("a live token");
    assert_eq!(authenticated.time_zone.as_deref(), Some("Asia/Tokyo"));

    let bad = TenantSettings {
        time_zone: Some("Asia/Tokio".into()),
    };
    assert!(
        matches!(
            registry.create_with(&format!("{prefix}-tokio"), &bad).await,
            Err(TenantError::InvalidTimeZone { .. })
        ),
        "an unknown zone is refused"
    );
    assert!(
        registry
            .list()
            .await
            .expect("list")
            .iter()
            .all(|t| t.name != format!("{prefix}-tokio")),
        "a refused create creates nothing"
    );
    assert!(matches!(
        registry.set_time_zone(&name, Some("Mars/Olympus")).await,
        Err(TenantError::InvalidTimeZone { .. })
    ));

    let changed = registry
        .set_time_zone(&name, Some("Europe/Paris"))
        .await
        .expect("set by name");
    assert_eq!(changed.time_zone.as_deref(), Some("Europe/Paris"));
    let listed = registry.list().await.expect("list");
    let listed = listed.iter().find(|t| t.id == tenant.id).expect("listed");
    assert_eq!(listed.time_zone.as_deref(), Some("Europe/Paris"));

    let cleared = registry
        .set_time_zone(&tenant.id, None)
        .await
        .expect("clear by id");
    assert_eq!(cleared.time_zone, None);
    assert_eq!(cleared.zone().name(), "UTC");
    let authenticated = registry
        .authenticate(&token)
        .await
        .expect("authenticate")
        .expect("a live token");
    assert_eq!(authenticated.time_zone, None, "cleared for every reader");
    assert!(matches!(
        registry
            .set_time_zone(&format!("{prefix}-nobody"), Some("UTC"))
            .await,
        Err(TenantError::NotFound(_))
    ));
}

/// A token resolves to the tenant it was issued to, every token of a tenant stops
/// working once revoked, and a new one can be issued afterwards.
pub async fn tokens_authenticate_their_tenant_until_revoked<D: TenantDirectory + ?Sized>(
    registry: &D,
    prefix: &str,
) {
    let (a, token_a) = registry
        .create(&format!("{prefix}-acme"))
        .await
        .expect("create acme");
    let (b, token_b) = registry
        .create(&format!("{prefix}-globex"))
        .await
        .expect("create globex");
    assert_ne!(a.id, b.id, "ids are unique");
    assert!(looks_like_token(&token_a), "a token has the token shape");
    assert_eq!(a.active_tokens, 1, "a new tenant has its first token");
    let who = |t: &str| {
        let t = t.to_string();
        async move { registry.authenticate(&t).await.expect("authenticate") }
    };
    assert_eq!(who(&token_a).await.map(|t| t.id), Some(a.id.clone()));
    assert_eq!(who(&token_b).await.map(|t| t.id), Some(b.id.clone()));
    let (again, second) = registry
        .issue_token(&a.name)
        .await
        .expect("issue a second token");
    assert_eq!(again.id, a.id);
    assert_eq!(
        again.active_tokens, 2,
        "two live tokens after a second issue"
    );
    assert_eq!(who(&second).await.map(|t| t.id), Some(a.id.clone()));
    assert_eq!(
        registry.revoke_tokens(&a.id).await.expect("revoke"),
        2,
        "both live tokens are revoked"
    );
    assert_eq!(who(&token_a).await, None, "a revoked token is refused");
    assert_eq!(who(&second).await, None, "every token is revoked");
    assert_eq!(
        who(&token_b).await.map(|t| t.id),
        Some(b.id.clone()),
        "another tenant's token is untouched"
    );
    let (_, third) = registry
        .issue_token(&a.id)
        .await
        .expect("issue after revoke");
    assert_eq!(who(&third).await.map(|t| t.id), Some(a.id.clone()));
    let listed = registry.list().await.expect("list");
    let acme = listed
        .iter()
        .find(|t| t.id == a.id)
        .expect("the tenant is listed");
    assert_eq!(acme.name, a.name);
    assert_eq!(
        acme.active_tokens, 1,
        "only the token issued after the revoke is live"
    );
}

/// A second tenant cannot take a name, and no name may look like a tenant id (so that
/// `tenant token tn_...` can never reach the wrong tenant).
pub async fn names_are_unique_and_never_ids<D: TenantDirectory + ?Sized>(
    registry: &D,
    prefix: &str,
) {
    let name = format!("{prefix}-unique");
    let (first, _) = registry.create(&name).await.expect("create");
    match registry.create(&name).await {
        Err(TenantError::NameTaken(n)) => assert_eq!(n, name),
        other => panic!("a taken name must be refused as NameTaken, got {other:?}"),
    }
    match registry.create(&first.id).await {
        Err(TenantError::InvalidName { .. }) => {}
        other => panic!("a name shaped like a tenant id must be refused, got {other:?}"),
    }
    for bad in ["", "   ", "a\u{7}b"] {
        assert!(
            matches!(
                registry.create(bad).await,
                Err(TenantError::InvalidName { .. })
            ),
            "name {bad:?} must be refused"
        );
    }
    let (trimmed, _) = registry
        .create(&format!("  {prefix}-trimmed  "))
        .await
        .expect("surrounding whitespace is trimmed");
    assert_eq!(trimmed.name, format!("{prefix}-trimmed"));
}

/// `issue_token` and `revoke_tokens` take a tenant's id or its name.
pub async fn a_tenant_is_found_by_id_or_name<D: TenantDirectory + ?Sized>(
    registry: &D,
    prefix: &str,
) {
    let (tenant, _) = registry
        .create(&format!("{prefix}-byname"))
        .await
        .expect("create");
    let (by_id, _) = registry.issue_token(&tenant.id).await.expect("by id");
    let (by_name, _) = registry.issue_token(&tenant.name).await.expect("by name");
    assert_eq!(by_id.id, tenant.id);
    assert_eq!(by_name.id, tenant.id);
    assert_eq!(by_name.active_tokens, 3);
}

/// Tokens that were never issued, or are not token-shaped, resolve to nobody; a tenant
/// that does not exist is `NotFound`.
pub async fn unknown_tokens_and_tenants_are_refused<D: TenantDirectory + ?Sized>(
    registry: &D,
    prefix: &str,
) {
    for token in [
        "",
        "tsu_nope",
        "not a token",
        &format!("tsu_{}", "0".repeat(64)),
    ] {
        assert_eq!(
            registry.authenticate(token).await.expect("authenticate"),
            None,
            "token {token:?} must resolve to nobody"
        );
    }
    let missing = format!("{prefix}-missing");
    assert!(matches!(
        registry.issue_token(&missing).await,
        Err(TenantError::NotFound(_))
    ));
    assert!(matches!(
        registry.revoke_tokens(&missing).await,
        Err(TenantError::NotFound(_))
    ));
}
