//! The AWS adapters against local test peers: DynamoDB and DynamoDB Streams on moto
//! (`eval "$(scripts/test-peers/moto.sh start)"`), Kinesis on kinesalite
//! (`eval "$(scripts/test-peers/kinesalite.sh start)"`), the tenant registry on moto too.
//! A test whose peer is not running prints "skipped: ..." and passes.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tsunagu_aws::{
    AwsConfig, DynamoLeaseStore, DynamoStateStore, DynamoStore, DynamoStreamsConfig,
    DynamoStreamsSource, DynamoTableConfig, DynamoTenantDirectory, KinesisConfig, KinesisForwarder,
    KinesisSource, LeaseTableConfig, StateTableConfig, TenantTableConfig,
};
use tsunagu_domain::{ChangeKind, ChangeRecord, Image, ItemKey, Position, ShardId, Version};
use tsunagu_embedded_store::{EmbeddedStore, StoreOptions};
use tsunagu_engine::backfill::{AfterBackfill, Backfill, BackfillOptions, BackfillProgressStore};
use tsunagu_engine::memory::{MemorySink, MemoryState};
use tsunagu_engine::ports::{
    ChangeSource, CheckpointStore, Condition, DeadLetterQueue, ItemScanner, ItemStore,
    ItemStoreError, LeaseStore, ReadBatch, ReadFrom, ShardInfo, Sink, SourceError, StoredItem,
    WriteOp, WriteOutcome,
};
use tsunagu_engine::status::ShardState;
use tsunagu_engine::{Consumer, ConsumerConfig, Engine};
use tsunagu_service::tenants::{TenantDirectory, TenantError};

fn peer(var: &str) -> Option<AwsConfig> {
    let url = std::env::var(var).ok().filter(|u| !u.is_empty())?;
    // Local peers accept any credentials; the SDK needs some to sign with.
    if std::env::var("AWS_ACCESS_KEY_ID").is_err() {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    }
    let mut aws = AwsConfig::new("us-east-1");
    aws.endpoint_url = Some(url);
    Some(aws)
}

fn moto() -> Option<AwsConfig> {
    let aws = peer("AWS_ENDPOINT_URL");
    if aws.is_none() {
        println!(
            "skipped: AWS_ENDPOINT_URL is not set (eval \"$(scripts/test-peers/moto.sh start)\")"
        );
    }
    aws
}

fn kinesalite() -> Option<AwsConfig> {
    let aws = peer("TSUNAGU_TEST_KINESIS_URL");
    if aws.is_none() {
        println!("skipped: TSUNAGU_TEST_KINESIS_URL is not set (eval \"$(scripts/test-peers/kinesalite.sh start)\")");
    }
    aws
}

/// A name no other test run uses.
fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "tsunagu-{what}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000
    )
}

async fn dynamo_store(aws: &AwsConfig) -> DynamoStore {
    let mut config = DynamoTableConfig::named(unique("items"));
    config.create_if_missing = true;
    DynamoStore::connect(aws, &config)
        .await
        .expect("connect to DynamoDB on moto")
}

/// A fresh table as the primary side of a drift comparison.
#[tokio::test]
async fn dynamo_store_is_a_conforming_drift_primary() {
    let Some(aws) = moto() else { return };
    let store = dynamo_store(&aws).await;
    tsunagu_conformance::drift::check_primary_side(&store, "conf").await;
}

#[tokio::test]
async fn dynamo_store_honours_the_store_contract() {
    let Some(aws) = moto() else { return };
    let store = dynamo_store(&aws).await;
    assert!(store
        .check()
        .await
        .expect("check")
        .contains("NEW_AND_OLD_IMAGES"));
    tsunagu_conformance::store::check_all(&store, "conf").await;
}

#[tokio::test]
async fn dynamo_stream_honours_the_source_contract() {
    let Some(aws) = moto() else { return };
    let store = dynamo_store(&aws).await;
    let source =
        DynamoStreamsSource::connect(&aws, &DynamoStreamsConfig::named(store.table_name()))
            .await
            .expect("connect to the table's stream");
    assert!(source
        .check()
        .await
        .expect("check")
        .contains(source.stream_arn()));
    tsunagu_conformance::source::check_all(&store, &source, "conf").await;
}

#[tokio::test]
async fn a_missing_table_is_reported_with_what_to_do() {
    let Some(aws) = moto() else { return };
    let error = DynamoStore::connect(&aws, &DynamoTableConfig::named(unique("absent")))
        .await
        .err()
        .expect("a missing table without create_if_missing must fail");
    assert!(error.to_string().contains("create_if_missing"), "{error}");
}

#[tokio::test]
async fn dynamo_leases_honour_the_lease_contract() {
    let Some(aws) = moto() else { return };
    let mut config = LeaseTableConfig::named(unique("lease-contract"));
    config.create_if_missing = true;
    let leases = DynamoLeaseStore::connect(&aws, &config)
        .await
        .expect("lease table");
    tsunagu_conformance::lease::check_all(&leases, "search").await;
}

#[tokio::test]
async fn dynamo_leases_are_fenced() {
    let Some(aws) = moto() else { return };
    let mut config = LeaseTableConfig::named(unique("leases"));
    config.create_if_missing = true;
    let leases = DynamoLeaseStore::connect(&aws, &config)
        .await
        .expect("lease table");
    let shard = ShardInfo {
        id: ShardId("shard-1".into()),
        parent: Some(ShardId("shard-0".into())),
        adjacent_parent: None,
    };
    leases.ensure("search", &shard).await.expect("ensure");
    leases
        .ensure("search", &shard)
        .await
        .expect("ensure again is a no-op");
    leases
        .ensure("other", &ShardInfo::root(ShardId("shard-9".into())))
        .await
        .expect("ensure");
    let all = leases.leases("search").await.expect("leases");
    assert_eq!(all.len(), 1, "leases are per consumer");
    let free = &all[0];
    assert_eq!(
        (free.owner.as_deref(), free.counter, free.parent.clone()),
        (None, 0, shard.parent.clone())
    );

    let a = leases
        .take("search", &shard.id, "worker-a", 0, 1_000)
        .await
        .expect("take")
        .expect("a free lease is taken");
    assert_eq!((a.owner.as_deref(), a.counter), (Some("worker-a"), 1));
    assert!(
        leases
            .take("search", &shard.id, "worker-b", 0, 2_000)
            .await
            .expect("take")
            .is_none(),
        "a stale counter loses"
    );
    assert!(leases
        .renew("search", &shard.id, "worker-a", 5_000)
        .await
        .expect("renew")
        .is_some());
    assert!(
        leases
            .renew("search", &shard.id, "worker-b", 5_000)
            .await
            .expect("renew")
            .is_none(),
        "only the owner renews"
    );
    let p1 = Position("100".into());
    assert!(leases
        .checkpoint("search", &shard.id, "worker-a", Some(&p1), false)
        .await
        .expect("checkpoint"));

    // worker-b steals the lease: worker-a can no longer move the checkpoint.
    let b = leases
        .take("search", &shard.id, "worker-b", 1, 9_000)
        .await
        .expect("steal")
        .expect("stolen");
    assert_eq!(
        (b.owner.as_deref(), b.counter, b.checkpoint.clone()),
        (Some("worker-b"), 2, Some(p1.clone()))
    );
    let p2 = Position("200".into());
    assert!(
        !leases
            .checkpoint("search", &shard.id, "worker-a", Some(&p2), true)
            .await
            .expect("fenced"),
        "a worker that lost its lease is fenced off"
    );
    assert!(leases
        .checkpoint("search", &shard.id, "worker-b", Some(&p2), true)
        .await
        .expect("checkpoint"));
    assert!(leases
        .checkpoint("search", &shard.id, "worker-b", None, true)
        .await
        .expect("checkpoint without position"));
    assert!(
        !leases
            .release("search", &shard.id, "worker-a")
            .await
            .expect("release"),
        "only the owner releases"
    );
    assert!(leases
        .release("search", &shard.id, "worker-b")
        .await
        .expect("release"));
    let released = leases.leases("search").await.expect("leases").remove(0);
    assert_eq!(released.owner, None);
    assert_eq!(
        released.checkpoint,
        Some(p2),
        "a checkpoint without a position keeps the stored one"
    );
    assert!(released.finished);
    assert_eq!(released.counter, 2, "release does not move the counter");
}

async fn state_store(aws: &AwsConfig, table: &str) -> DynamoStateStore {
    let mut config = StateTableConfig::named(table);
    config.create_if_missing = true;
    DynamoStateStore::connect(aws, &config)
        .await
        .expect("state table on moto")
}

#[tokio::test]
async fn dynamo_state_honours_the_dead_letter_contract() {
    let Some(aws) = moto() else { return };
    let store = state_store(&aws, &unique("dlq-contract")).await;
    assert!(store.check().await.expect("check").contains("state table"));
    tsunagu_conformance::dlq::check_all(&store).await;
}

#[tokio::test]
async fn dynamo_state_honours_the_backfill_progress_contract() {
    let Some(aws) = moto() else { return };
    let store = state_store(&aws, &unique("backfill-contract")).await;
    tsunagu_conformance::backfill_progress::check_all(&store).await;
}

/// Two stores with their own clients on one table, as two worker processes: the counter
/// item and the conditional writes keep ids unique across them. (moto's `UpdateItem ADD`
/// is not atomic under concurrent requests, so here a push can be handed an id another
/// just wrote; it must take the next one, as it would after a counter set back by hand.)
#[tokio::test]
async fn dead_letter_ids_are_unique_across_processes() {
    let Some(aws) = moto() else { return };
    let table = unique("dlq-processes");
    let first = state_store(&aws, &table).await;
    let second = DynamoStateStore::connect(&aws, &StateTableConfig::named(&table))
        .await
        .expect("second process");
    let mut tasks = Vec::new();
    for (p, store) in [first.clone(), second.clone(), first.clone(), second]
        .into_iter()
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..15 {
                let letter = tsunagu_conformance::dlq::letter("search", p as u32 * 100 + n, "p");
                ids.push(store.push(letter).await.expect("push"));
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("pusher"));
    }
    let distinct: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        60,
        "ids must be unique across processes: {all:?}"
    );
    assert_eq!(first.count("search").await.expect("count"), 60);
    let listed: Vec<u64> = first
        .list(Some("search"), 0, 100)
        .await
        .expect("list")
        .iter()
        .map(|l| l.id)
        .collect();
    let mut sorted = all;
    sorted.sort_unstable();
    assert_eq!(listed, sorted);
}

/// A counter set back by hand: a few ids behind, pushes skip the held ids and overwrite
/// nothing; far behind, a push fails and says how to repair the counter.
#[tokio::test]
async fn a_counter_set_back_never_overwrites_a_letter() {
    let Some(aws) = moto() else { return };
    let table = unique("dlq-set-back");
    let store = state_store(&aws, &table).await;
    let client = aws_sdk_dynamodb::Client::new(&tsunagu_aws::sdk_config(&aws).await.expect("sdk"));
    let set_counter = |last_id: u64| {
        let (client, table) = (client.clone(), table.clone());
        async move {
            client
                .put_item()
                .table_name(&table)
                .item(
                    "pk",
                    aws_sdk_dynamodb::types::AttributeValue::S("dlq-counter".into()),
                )
                .item(
                    "sk",
                    aws_sdk_dynamodb::types::AttributeValue::S("last".into()),
                )
                .item(
                    "last_id",
                    aws_sdk_dynamodb::types::AttributeValue::N(last_id.to_string()),
                )
                .send()
                .await
                .expect("set the counter by hand");
        }
    };
    for n in 0..3 {
        let letter = tsunagu_conformance::dlq::letter("search", n, "before");
        assert_eq!(store.push(letter).await.expect("push"), u64::from(n) + 1);
    }
    set_counter(0).await;
    let after = store
        .push(tsunagu_conformance::dlq::letter("search", 7, "after"))
        .await
        .expect("a push skips the three held ids");
    assert_eq!(after, 4);
    let memos: Vec<(u64, u32)> = store
        .list(Some("search"), 0, 10)
        .await
        .expect("list")
        .iter()
        .map(|l| (l.id, l.record.version.0 as u32 - 10))
        .collect();
    assert_eq!(
        memos,
        vec![(1, 0), (2, 1), (3, 2), (4, 7)],
        "no letter was overwritten"
    );

    for n in 10..30 {
        store
            .push(tsunagu_conformance::dlq::letter("search", n, "more"))
            .await
            .expect("push");
    }
    set_counter(0).await;
    let error = store
        .push(tsunagu_conformance::dlq::letter("search", 99, "refused"))
        .await
        .expect_err("a counter 24 behind is refused")
        .to_string();
    assert!(
        error.contains("dlq-counter") && error.contains("last_id"),
        "the error names the counter to repair: {error}"
    );
    assert_eq!(store.count("search").await.expect("count"), 24);
}

/// A letter too large for one item is kept in part items, and `remove` leaves none
/// behind (the port alone cannot see the parts: this looks at the table).
#[tokio::test]
async fn a_large_dead_letter_is_split_and_removed_whole() {
    let Some(aws) = moto() else { return };
    let table = unique("dlq-parts");
    let store = state_store(&aws, &table).await;
    let client = aws_sdk_dynamodb::Client::new(&tsunagu_aws::sdk_config(&aws).await.expect("sdk"));
    let parts_of = |id: u64| {
        let (client, table) = (client.clone(), table.clone());
        async move {
            client
                .query()
                .table_name(table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(
                    ":pk",
                    aws_sdk_dynamodb::types::AttributeValue::S(format!("dlq-part#{id}")),
                )
                .consistent_read(true)
                .send()
                .await
                .expect("query parts")
                .count()
        }
    };
    let mut letter = tsunagu_conformance::dlq::letter("search", 1, "big");
    if let Some(image) = letter.record.new_image.as_mut() {
        image.body = serde_json::json!({"memo": tsunagu_conformance::dlq::varied_text(800 * 1024)});
    }
    let id = store
        .push(letter.clone())
        .await
        .expect("push a large letter");
    assert!(
        parts_of(id).await >= 3,
        "800 KB must take at least three parts"
    );
    letter.id = id;
    assert_eq!(store.get(id).await.expect("get"), Some(letter));
    let small = store
        .push(tsunagu_conformance::dlq::letter("search", 2, "small"))
        .await
        .expect("push a small letter");
    assert_eq!(parts_of(small).await, 0, "a small letter has no parts");
    assert!(store.remove(id).await.expect("remove"));
    assert_eq!(parts_of(id).await, 0, "remove deletes the parts too");
}

#[tokio::test]
async fn a_missing_state_table_is_reported_with_what_to_do() {
    let Some(aws) = moto() else { return };
    let table = unique("state-absent");
    let error = DynamoStateStore::connect(&aws, &StateTableConfig::named(&table))
        .await
        .err()
        .expect("a missing table without create_if_missing must fail");
    let text = error.to_string();
    assert!(
        text.contains(&table) && text.contains("state.create_if_missing"),
        "{text}"
    );

    // A table deleted under a running store: every call says the same.
    let store = state_store(&aws, &table).await;
    let client = aws_sdk_dynamodb::Client::new(&tsunagu_aws::sdk_config(&aws).await.expect("sdk"));
    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .expect("delete the table");
    let error = store
        .push(tsunagu_conformance::dlq::letter("search", 1, "gone"))
        .await
        .expect_err("push into a deleted table");
    assert!(
        error.to_string().contains("state.create_if_missing"),
        "{error}"
    );
    let error = store
        .count("search")
        .await
        .expect_err("count on a deleted table");
    assert!(error.to_string().contains(&table), "{error}");
    assert!(
        store.check().await.is_err(),
        "check reports the missing table"
    );
}

// ---------------------------------------------------------------------------------------
// The tenant registry
// ---------------------------------------------------------------------------------------

/// A registry on `table` with its own SDK client, as another process would have.
async fn tenant_directory(aws: &AwsConfig, table: &str) -> DynamoTenantDirectory {
    let mut config = TenantTableConfig::named(table);
    config.create_if_missing = true;
    DynamoTenantDirectory::connect(aws, &config)
        .await
        .expect("tenant table on moto")
}

/// Sends the requests of every client built over it one at a time (`turn`), in whatever
/// order the callers reach it.
///
/// moto applies a `TransactWriteItems` without isolation: two transactions can both pass
/// a condition before either writes, and a cancelled one is rolled back by restoring a
/// copy of the table taken when it began, erasing what others wrote meanwhile. DynamoDB
/// serializes transactions. Racing registries are therefore tested over moto with one
/// request in flight at a time: their calls still interleave at every request boundary,
/// which is all DynamoDB promises.
#[derive(Debug, Clone)]
struct OneAtATime {
    inner: aws_smithy_runtime_api::client::http::SharedHttpClient,
    turn: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug)]
struct OneAtATimeConnector {
    inner: aws_smithy_runtime_api::client::http::SharedHttpConnector,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl aws_smithy_runtime_api::client::http::HttpClient for OneAtATime {
    fn http_connector(
        &self,
        settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
        components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
    ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
        aws_smithy_runtime_api::client::http::SharedHttpConnector::new(OneAtATimeConnector {
            inner: self.inner.http_connector(settings, components),
            turn: self.turn.clone(),
        })
    }
}

impl aws_smithy_runtime_api::client::http::HttpConnector for OneAtATimeConnector {
    fn call(
        &self,
        request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
    ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
        let (inner, turn) = (self.inner.clone(), self.turn.clone());
        aws_smithy_runtime_api::client::http::HttpConnectorFuture::new(async move {
            let _turn = turn.lock().await;
            inner.call(request).await
        })
    }
}

/// Registries on one table, each with its own SDK client (as separate processes have),
/// whose requests reach moto one at a time (see [`OneAtATime`]).
async fn racing_directories(aws: &AwsConfig, table: &str) -> Vec<Arc<DynamoTenantDirectory>> {
    let http = OneAtATime {
        inner: aws_smithy_http_client::Builder::new().build_http(),
        turn: Arc::new(tokio::sync::Mutex::new(())),
    };
    let mut config = TenantTableConfig::named(table);
    config.create_if_missing = true;
    let mut registries = Vec::new();
    for _ in 0..2 {
        let sdk = tsunagu_aws::sdk_config(aws)
            .await
            .expect("sdk")
            .into_builder()
            .http_client(http.clone())
            .build();
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        let registry = DynamoTenantDirectory::with_client(client, &config)
            .await
            .expect("tenant table on moto");
        registries.push(Arc::new(registry));
    }
    registries
}

#[tokio::test]
async fn dynamo_tenants_honour_the_tenant_contract() {
    let Some(aws) = moto() else { return };
    let registry = tenant_directory(&aws, &unique("tenant-contract")).await;
    assert!(registry
        .check()
        .await
        .expect("check")
        .contains("tenant table"));
    tsunagu_conformance::tenants::check_all(&registry, "conf").await;
    let listed = registry.list().await.expect("list");
    assert!(
        listed
            .windows(2)
            .all(|w| (w[0].created_at_us, &w[0].id) <= (w[1].created_at_us, &w[1].id)),
        "oldest first: {listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_racing_for_one_name_let_exactly_one_win() {
    let Some(aws) = moto() else { return };
    let registries = racing_directories(&aws, &unique("tenant-race")).await;
    let (a, b) = (registries[0].clone(), registries[1].clone());
    for round in 0..8 {
        let name = format!("race-{round}");
        // Four creates of one name from two processes (clients) at once.
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let registry = if i % 2 == 0 { a.clone() } else { b.clone() };
                let name = name.clone();
                tokio::spawn(async move { registry.create(&name).await })
            })
            .collect();
        let mut won = Vec::new();
        for task in tasks {
            match task.await.expect("task") {
                Ok(created) => won.push(created),
                Err(TenantError::NameTaken(taken)) => assert_eq!(taken, name),
                Err(other) => panic!("a losing create must be NameTaken, got {other:?}"),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: exactly one create wins");
        let (tenant, token) = &won[0];
        let listed: Vec<_> = a
            .list()
            .await
            .expect("list")
            .into_iter()
            .filter(|t| t.name == name)
            .collect();
        assert_eq!(listed, vec![tenant.clone()], "one tenant holds the name");
        for registry in [&a, &b] {
            assert_eq!(
                registry.authenticate(token).await.expect("authenticate"),
                Some(tenant.clone()),
                "the winner's token works on every registry"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_issues_and_revokes_keep_active_tokens_exact() {
    let Some(aws) = moto() else { return };
    let registries = racing_directories(&aws, &unique("tenant-tokens")).await;
    let (a, b) = (registries[0].clone(), registries[1].clone());
    let (tenant, first) = a.create("acme").await.expect("create");
    // More tokens than one revoke transaction takes, issued from both registries at once.
    let issues: Vec<_> = (0..2 * tsunagu_aws::tenants::REVOKE_CHUNK + 3)
        .map(|i| {
            let registry = if i % 2 == 0 { a.clone() } else { b.clone() };
            let id = tenant.id.clone();
            tokio::spawn(async move { registry.issue_token(&id).await })
        })
        .collect();
    let mut tokens = vec![first];
    for task in issues {
        tokens.push(task.await.expect("task").expect("issue").1);
    }
    let active = |registry: Arc<DynamoTenantDirectory>| async move {
        registry
            .list()
            .await
            .expect("list")
            .into_iter()
            .find(|t| t.name == "acme")
            .expect("listed")
            .active_tokens
    };
    assert_eq!(active(b.clone()).await, tokens.len() as u64);
    // Two operators revoke at once: every token is counted by exactly one of them.
    let (ra, rb) = tokio::join!(a.revoke_tokens("acme"), b.revoke_tokens(&tenant.id));
    assert_eq!(
        ra.expect("revoke") + rb.expect("revoke"),
        tokens.len() as u64,
        "each live token is revoked once"
    );
    assert_eq!(active(a.clone()).await, 0);
    for token in &tokens {
        assert_eq!(b.authenticate(token).await.expect("authenticate"), None);
    }
    assert_eq!(a.revoke_tokens("acme").await.expect("revoke again"), 0);
}

#[tokio::test]
async fn a_missing_tenant_table_is_reported_with_what_to_do() {
    let Some(aws) = moto() else { return };
    let table = unique("tenants-absent");
    let error = DynamoTenantDirectory::connect(&aws, &TenantTableConfig::named(&table))
        .await
        .err()
        .expect("a missing table without create_if_missing must fail");
    let text = error.to_string();
    assert!(
        text.contains(&table) && text.contains("tenants.create_if_missing"),
        "{text}"
    );

    // A table deleted under a running registry: calls fail as Unavailable, naming it.
    let registry = tenant_directory(&aws, &table).await;
    let (_, token) = registry.create("acme").await.expect("create");
    let client = aws_sdk_dynamodb::Client::new(&tsunagu_aws::sdk_config(&aws).await.expect("sdk"));
    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .expect("delete the table");
    match registry.authenticate(&token).await {
        Err(TenantError::Unavailable(message)) => assert!(message.contains(&table), "{message}"),
        other => panic!("authenticate on a deleted table must be Unavailable, got {other:?}"),
    }
    assert!(matches!(
        registry.create("globex").await,
        Err(TenantError::Unavailable(_))
    ));
    assert!(registry.check().await.is_err());
}

/// The embedded store, each change forwarded to Kinesis as it commits: the Kinesis
/// source then holds exactly the store's changes.
struct Forwarding {
    store: EmbeddedStore,
    forwarder: KinesisForwarder,
}

#[async_trait::async_trait]
impl ItemStore for Forwarding {
    async fn write(&self, op: WriteOp) -> Result<WriteOutcome, ItemStoreError> {
        let key = op.key().clone();
        let outcome = ItemStore::write(&self.store, op).await?;
        if let Some(position) = &outcome.position {
            let seq: u64 = position.0.parse().expect("embedded positions are numbers");
            let shard = ShardId(key.shard_index(self.store.shard_count()).to_string());
            let from = ReadFrom::After(Position((seq - 1).to_string()));
            let batch = ChangeSource::read(&self.store, &shard, &from, 1, Duration::ZERO)
                .await
                .expect("read back");
            assert_eq!(batch.records[0].position, *position);
            self.forwarder
                .forward(&batch.records)
                .await
                .expect("forward to Kinesis");
        }
        Ok(outcome)
    }

    async fn write_many(
        &self,
        ops: Vec<WriteOp>,
    ) -> Result<Vec<Result<WriteOutcome, ItemStoreError>>, ItemStoreError> {
        let mut results = Vec::new();
        for op in ops {
            results.push(self.write(op).await);
        }
        Ok(results)
    }

    async fn get(&self, key: &ItemKey) -> Result<Option<StoredItem>, ItemStoreError> {
        ItemStore::get(&self.store, key).await
    }
}

#[tokio::test]
async fn kinesis_stream_honours_the_source_contract() {
    let Some(aws) = kinesalite() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = KinesisConfig::named(unique("changes"));
    config.create_if_missing = true;
    config.shard_count = 3;
    let forwarder = KinesisForwarder::connect(&aws, &config)
        .await
        .expect("stream");
    let source = KinesisSource::connect(&aws, &config).await.expect("source");
    source.check().await.expect("check");
    let store = Forwarding {
        store: EmbeddedStore::open(&dir.path().join("p.db"), StoreOptions::default())
            .expect("store"),
        forwarder,
    };
    tsunagu_conformance::source::check_all(&store, &source, "conf").await;
}

fn change(key: &ItemKey, version: u64) -> ChangeRecord {
    ChangeRecord {
        shard: ShardId("origin".into()),
        position: Position(version.to_string()),
        key: key.clone(),
        kind: if version == 1 {
            ChangeKind::Insert
        } else {
            ChangeKind::Modify
        },
        version: Version(version),
        old_image: None,
        new_image: Some(Image {
            version: Version(version),
            body: serde_json::json!({"v": version}),
        }),
        committed_at_us: 1_700_000_000_000_000 + version as i64,
    }
}

async fn wait_active(client: &aws_sdk_kinesis::Client, stream: &str) {
    for _ in 0..100 {
        let summary = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .expect("describe");
        if summary
            .stream_description_summary()
            .map(|s| s.stream_status().as_str())
            == Some("ACTIVE")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stream {stream} did not become ACTIVE");
}

/// Split, then merge: children are read only after their parents ended; every record
/// comes once, in per-key order.
#[tokio::test]
async fn kinesis_lineage_after_split_and_merge() {
    let Some(aws) = kinesalite() else { return };
    let mut config = KinesisConfig::named(unique("lineage"));
    config.create_if_missing = true;
    config.poll_interval_ms = 20;
    let forwarder = KinesisForwarder::connect(&aws, &config)
        .await
        .expect("stream");
    let source = KinesisSource::connect(&aws, &config).await.expect("source");
    let client = aws_sdk_kinesis::Client::new(&tsunagu_aws::sdk_config(&aws).await.expect("sdk"));
    let keys: Vec<ItemKey> = (0..12)
        .map(|i| ItemKey::new(format!("deal-{i}"), "a"))
        .collect();
    let mut next_version = 1;
    let mut put_round = |n: u64| {
        let batch: Vec<ChangeRecord> = (0..n)
            .flat_map(|i| keys.iter().map(move |k| (k.clone(), i)))
            .map(|(k, i)| change(&k, next_version + i))
            .collect();
        next_version += n;
        batch
    };

    forwarder
        .forward(&put_round(3))
        .await
        .expect("before the split");
    let shards = source.shards().await.expect("shards");
    assert_eq!(shards.len(), 1);
    let parent = shards[0].id.clone();
    client
        .split_shard()
        .stream_name(&config.stream_name)
        .shard_to_split(&parent.0)
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await
        .expect("split");
    wait_active(&client, &config.stream_name).await;
    forwarder
        .forward(&put_round(3))
        .await
        .expect("after the split");
    let children: Vec<ShardInfo> = source
        .shards()
        .await
        .expect("shards")
        .into_iter()
        .filter(|s| s.parent.as_ref() == Some(&parent))
        .collect();
    assert_eq!(
        children.len(),
        2,
        "a split makes two children of the parent"
    );
    client
        .merge_shards()
        .stream_name(&config.stream_name)
        .shard_to_merge(&children[0].id.0)
        .adjacent_shard_to_merge(&children[1].id.0)
        .send()
        .await
        .expect("merge");
    wait_active(&client, &config.stream_name).await;
    forwarder
        .forward(&put_round(3))
        .await
        .expect("after the merge");
    let all = source.shards().await.expect("shards");
    assert_eq!(all.len(), 4);
    let merged = all
        .iter()
        .find(|s| s.adjacent_parent.is_some())
        .expect("a merged shard names two parents");
    let merged_parents: HashSet<&ShardId> = merged.parents().collect();
    assert_eq!(
        merged_parents,
        children.iter().map(|c| &c.id).collect(),
        "the merged shard's parents are the two children"
    );

    // Read like the engine: a shard starts once its parents ended.
    let mut finished: HashSet<ShardId> = HashSet::new();
    let mut read: Vec<ChangeRecord> = Vec::new();
    let mut order: Vec<ShardId> = Vec::new();
    while order.len() < all.len() {
        let ready: Vec<ShardInfo> = all
            .iter()
            .filter(|s| !finished.contains(&s.id) && !order.contains(&s.id))
            .filter(|s| s.parents().all(|p| finished.contains(p)))
            .cloned()
            .collect();
        assert!(!ready.is_empty(), "some shard must be readable");
        for shard in ready {
            order.push(shard.id.clone());
            let mut from = ReadFrom::TrimHorizon;
            for attempt in 0.. {
                assert!(
                    attempt < 200,
                    "closed shard {} never reported its end",
                    shard.id
                );
                let batch = source
                    .read(&shard.id, &from, 5, Duration::from_millis(100))
                    .await
                    .expect("read");
                if let Some(last) = batch.records.last() {
                    from = ReadFrom::After(last.position.clone());
                }
                let empty = batch.records.is_empty();
                read.extend(batch.records);
                if batch.end_of_shard {
                    finished.insert(shard.id.clone());
                    break;
                }
                if empty && shard.id == merged.id {
                    break;
                }
            }
        }
    }
    assert_eq!(order.first(), Some(&parent), "the parent is read first");
    assert_eq!(
        order.last(),
        Some(&merged.id),
        "the merged shard is read last"
    );
    let mut per_key: BTreeMap<ItemKey, Vec<u64>> = BTreeMap::new();
    for record in &read {
        per_key
            .entry(record.key.clone())
            .or_default()
            .push(record.version.0);
    }
    for key in &keys {
        assert_eq!(
            per_key.get(key),
            Some(&(1..=9).collect::<Vec<_>>()),
            "{key}: every version once, in order"
        );
    }
}

// --- drift detection: the table as the primary side ------------------------------------

/// Every item of the table, tombstones included, by a plain paginated consistent `Scan`
/// (independent of the drift module): key → (version, deleted).
async fn raw_items(store: &DynamoStore) -> BTreeMap<ItemKey, (u64, bool)> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let mut out = BTreeMap::new();
    let mut start = None;
    loop {
        let page = store
            .client()
            .scan()
            .table_name(store.table_name())
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("raw scan");
        for item in page.items() {
            let s = |name: &str| match item.get(name) {
                Some(AttributeValue::S(s)) => s.clone(),
                other => panic!("{name}: {other:?}"),
            };
            let version = match item.get("version") {
                Some(AttributeValue::N(n)) => n.parse::<u64>().expect("version"),
                other => panic!("version: {other:?}"),
            };
            let deleted = matches!(item.get("deleted"), Some(AttributeValue::Bool(true)));
            out.insert(ItemKey::new(s("pk"), s("sk")), (version, deleted));
        }
        match page.last_evaluated_key() {
            Some(last) => start = Some(last.clone()),
            None => return out,
        }
    }
}

#[tokio::test]
async fn dynamo_drift_digest_live_in_and_held_match_the_table() {
    use tsunagu_engine::drift::tree::{differing_leaves, HashTree, LeafSet};
    use tsunagu_engine::drift::{Held, PrimaryDigest, VersionDigest};
    use tsunagu_engine::ports::Condition;

    let Some(aws) = moto() else { return };
    let store = dynamo_store(&aws).await;
    let keys: Vec<ItemKey> = (0..1_500u32)
        .map(|n| ItemKey::new(format!("deal-{}", n % 40), format!("activity#{n}")))
        .collect();
    let puts = keys
        .iter()
        .map(|key| WriteOp::Put {
            key: key.clone(),
            body: serde_json::json!({"memo": format!("{key}")}),
            condition: Condition::None,
        })
        .collect();
    let mut live: BTreeMap<ItemKey, Version> = BTreeMap::new();
    for (key, outcome) in keys.iter().zip(store.write_many(puts).await.expect("puts")) {
        let version = outcome.expect("put").version.expect("a put has a version");
        live.insert(key.clone(), version);
    }
    // Every 9th item deleted: a tombstone, not live.
    let deleted: Vec<ItemKey> = keys.iter().step_by(9).cloned().collect();
    let deletes = deleted
        .iter()
        .map(|key| WriteOp::Delete {
            key: key.clone(),
            condition: Condition::Exists,
        })
        .collect();
    for outcome in store.write_many(deletes).await.expect("deletes") {
        assert_eq!(
            outcome.expect("delete").change,
            Some(ChangeKind::Remove),
            "each delete removes a live item"
        );
    }
    let before_delete: BTreeMap<ItemKey, Version> = deleted
        .iter()
        .map(|k| (k.clone(), live.remove(k).expect("was live")))
        .collect();
    assert_eq!(live.len(), 1_500 - deleted.len());

    let raw = raw_items(&store).await;
    assert_eq!(raw.len(), 1_500, "tombstones stay in the table");
    for (key, version) in &live {
        assert_eq!(raw[key], (version.0, false), "{key}");
    }

    // The digest is exactly the tree of the live items written, at two leaf sizes.
    for leaf_bits in [12, 14] {
        let mut expected = HashTree::new(leaf_bits);
        for (key, version) in &live {
            expected.add(key.stable_hash(), version.0);
        }
        let digest = store.digest(leaf_bits).await.expect("digest");
        assert_eq!(digest.items(), live.len() as u64);
        assert!(digest == expected, "digest at {leaf_bits} leaf bits");
    }
    assert!(store.approximate_items().await.expect("approximate items") <= 1_500);

    // live_in: exactly the live items of the leaves asked for (a deleted key's leaf
    // too, whose tombstone must not show).
    let leaf_bits = 12;
    let leaf = |key: &ItemKey| HashTree::leaf_of(leaf_bits, key.stable_hash());
    let wanted: Vec<usize> = [&keys[1], &keys[500], &keys[1_499], &deleted[3]]
        .into_iter()
        .map(leaf)
        .collect();
    let set = LeafSet::new(leaf_bits, &wanted);
    let mut found = store.live_in(&set).await.expect("live_in");
    found.sort();
    let expected: Vec<(ItemKey, Version)> = live
        .iter()
        .filter(|(key, _)| wanted.contains(&leaf(key)))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert!(expected.len() >= 3, "{expected:?}");
    assert_eq!(found, expected);
    assert!(store
        .live_in(&LeafSet::new(leaf_bits, &[]))
        .await
        .expect("live_in of nothing")
        .is_empty());

    // held: > 100 keys (several BatchGetItem requests), live, deleted and absent ones,
    // a key asked twice, answered in the order asked.
    let absent = ItemKey::new("deal-none", "activity#none");
    let mut asked: Vec<ItemKey> = keys.iter().rev().cloned().collect();
    asked.insert(7, absent.clone());
    asked.push(keys[0].clone());
    asked.push(ItemKey::new("deal-0", "activity#missing"));
    let held = store.held(&asked).await.expect("held");
    assert_eq!(held.len(), asked.len());
    let mut tombstones = 0;
    for (key, held) in asked.iter().zip(&held) {
        match (live.get(key), before_delete.get(key), held) {
            (Some(version), _, Some(Held::Live(v))) => assert_eq!(v, version, "{key}"),
            (None, Some(old), Some(Held::Deleted(v))) => {
                assert!(v > old, "{key}: tombstone {v:?} after {old:?}");
                assert_eq!((v.0, true), raw[key], "{key}");
                tombstones += 1;
            }
            (None, None, None) => assert!(!raw.contains_key(key), "{key}"),
            other => panic!("{key}: {other:?}"),
        }
    }
    assert_eq!(tombstones, deleted.len() + 1, "keys[0] was asked twice");
    assert_eq!(held[7], None);

    // fresh_version: newer than every version handed out, older than the next write's.
    let fresh = store.fresh_version().await.expect("fresh version");
    let newest = raw.values().map(|(v, _)| *v).max().expect("items");
    assert!(fresh.0 > newest, "{fresh:?} <= {newest}");
    let outcome = store
        .write(WriteOp::Put {
            key: absent.clone(),
            body: serde_json::json!({"memo": "later"}),
            condition: Condition::NotExists,
        })
        .await
        .expect("a later write");
    assert!(outcome.version.expect("version") > fresh);

    // current: the live item with its body; none for a tombstone.
    let current = store
        .current(&absent)
        .await
        .expect("current")
        .expect("live");
    assert_eq!(current.body, serde_json::json!({"memo": "later"}));
    assert_eq!(store.current(&deleted[0]).await.expect("current"), None);

    // One change shows in exactly its leaf.
    let mut expected = HashTree::new(leaf_bits);
    for (key, version) in &live {
        expected.add(key.stable_hash(), version.0);
    }
    expected.add(absent.stable_hash(), current.version.0);
    let after = store.digest(leaf_bits).await.expect("digest");
    assert!(after == expected);
    let mut without = HashTree::new(leaf_bits);
    for (key, version) in &live {
        without.add(key.stable_hash(), version.0);
    }
    let (leaves, _) = differing_leaves(&after, &without);
    assert_eq!(leaves, vec![leaf(&absent)]);
}

// ---------------------------------------------------------------------------------------
// Backfill and retention recovery over DynamoDB, whose scan segments are not stream shards
// ---------------------------------------------------------------------------------------

/// The primary's live items and versions, as the writes reported them (not read back
/// with the scanner under test).
#[derive(Default)]
struct Expected(BTreeMap<ItemKey, Version>);

impl Expected {
    /// Writes `ops` in one `write_many` and records what each did.
    async fn write(&mut self, store: &DynamoStore, ops: Vec<WriteOp>) {
        let keys: Vec<ItemKey> = ops.iter().map(|op| op.key().clone()).collect();
        let outcomes = store.write_many(ops).await.expect("write_many");
        for (key, outcome) in keys.into_iter().zip(outcomes) {
            // A delete that removed an item reports the deletion's version: the item is
            // gone all the same.
            let outcome = outcome.expect("write");
            match (outcome.change, outcome.version) {
                (Some(ChangeKind::Remove), _) | (_, None) => self.0.remove(&key),
                (_, Some(version)) => self.0.insert(key, version),
            };
        }
    }
}

fn put(i: u32, body: serde_json::Value) -> WriteOp {
    WriteOp::Put {
        key: ItemKey::new(format!("deal-{}", i % 37), format!("activity#{i:05}")),
        body,
        condition: Condition::None,
    }
}

fn delete(i: u32) -> WriteOp {
    WriteOp::Delete {
        key: ItemKey::new(format!("deal-{}", i % 37), format!("activity#{i:05}")),
        condition: Condition::None,
    }
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn streams_source(aws: &AwsConfig, store: &DynamoStore) -> DynamoStreamsSource {
    let mut config = DynamoStreamsConfig::named(store.table_name());
    config.poll_interval_ms = 50;
    DynamoStreamsSource::connect(aws, &config)
        .await
        .expect("connect to the table's stream")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_table_backfill_of_dynamodb_equals_the_primary() {
    let Some(aws) = moto() else { return };
    let store = dynamo_store(&aws).await;
    let mut expected = Expected::default();
    for chunk in (0..2_100u32).collect::<Vec<_>>().chunks(300) {
        let ops = chunk.iter().map(|i| put(*i, serde_json::json!({ "i": i })));
        expected.write(&store, ops.collect()).await;
    }
    // Updates and deletes (tombstones, which the scan leaves out).
    let changes = (0..2_100u32)
        .step_by(13)
        .map(|i| {
            if i % 2 == 0 {
                delete(i)
            } else {
                put(i, serde_json::json!({ "i": i, "again": true }))
            }
        })
        .collect();
    expected.write(&store, changes).await;
    assert!(expected.0.len() > 2_000);

    let source = streams_source(&aws, &store).await;
    let (sink, state) = (MemorySink::new(), MemoryState::new());
    let backfill = Backfill {
        consumer: "search",
        source: &source,
        scanner: &store,
        sink: &sink,
        checkpoints: &state,
        dlq: &state,
        progress: &state,
    };
    assert!(backfill.scans_whole_table().await.expect("shards"));
    let options = BackfillOptions {
        batch_size: 97,
        parallelism: 3,
        save_interval: Duration::ZERO,
        ..BackfillOptions::default()
    };
    let report = backfill
        .run(None, &options, &|_| {})
        .await
        .expect("backfill");
    assert_eq!(report.items, expected.0.len() as u64);
    assert_eq!(report.dead_lettered, 0);
    assert_eq!(sink.live_versions(), expected.0);
    let shards = source.shards().await.expect("shards");
    assert_eq!(report.shards, shards.len());
    let checkpoints = CheckpointStore::load(&state, "search").await.expect("load");
    for shard in &shards {
        assert_eq!(
            checkpoints.get(&shard.id),
            source
                .latest_position(&shard.id)
                .await
                .expect("latest")
                .as_ref(),
            "shard {} starts after its target",
            shard.id
        );
    }
    assert!(state
        .load_backfill("search")
        .await
        .expect("load")
        .is_empty());
    let count = store.approximate_item_count().await.expect("DescribeTable");
    assert!(
        count.is_some_and(|n| n >= expected.0.len() as u64),
        "{count:?}"
    );
}

/// The table's stream, except that once armed, the next read of each shard fails as if
/// what lay after the consumer's checkpoint had been trimmed (moto never trims). The
/// records between that checkpoint and the backfill's target are then never read from
/// the stream: only the scan can bring them.
struct TrimOnce {
    inner: DynamoStreamsSource,
    armed: AtomicBool,
    tripped: Mutex<HashSet<ShardId>>,
}

#[async_trait::async_trait]
impl ChangeSource for TrimOnce {
    async fn shards(&self) -> Result<Vec<ShardInfo>, SourceError> {
        self.inner.shards().await
    }

    async fn read(
        &self,
        shard: &ShardId,
        from: &ReadFrom,
        limit: usize,
        wait: Duration,
    ) -> Result<ReadBatch, SourceError> {
        if self.armed.load(AtomicOrdering::SeqCst)
            && self.tripped.lock().expect("lock").insert(shard.clone())
        {
            return Err(SourceError::Trimmed {
                shard: shard.clone(),
                position: match from {
                    ReadFrom::After(p) => p.clone(),
                    ReadFrom::TrimHorizon => Position("TRIM_HORIZON".into()),
                },
            });
        }
        self.inner.read(shard, from, limit, wait).await
    }

    async fn latest_position(&self, shard: &ShardId) -> Result<Option<Position>, SourceError> {
        self.inner.latest_position(shard).await
    }

    async fn backlog(&self, shard: &ShardId, from: &ReadFrom) -> Result<Option<u64>, SourceError> {
        self.inner.backlog(shard, from).await
    }
}

/// Removes from the sink what was deleted in the primary while the consumer was away
/// (what `tsunagu` does with a reconcile after such a backfill).
struct RemoveDeleted {
    store: DynamoStore,
    sink: Arc<MemorySink>,
    /// The shards of the clean-ups that went through.
    called: Mutex<Vec<ShardId>>,
}

#[async_trait::async_trait]
impl AfterBackfill for RemoveDeleted {
    async fn after_backfill(&self, _consumer: &str, shard: &ShardId) -> Result<(), String> {
        let mut stale = Vec::new();
        for (key, version) in self.sink.live_versions() {
            if ItemStore::get(&self.store, &key)
                .await
                .map_err(|e| e.to_string())?
                .is_none()
            {
                stale.push(ChangeRecord {
                    shard: shard.clone(),
                    position: Position(String::new()),
                    key,
                    kind: ChangeKind::Remove,
                    version: Version(version.0 + 1),
                    old_image: None,
                    new_image: None,
                    committed_at_us: 0,
                });
            }
        }
        self.sink.apply(&stale).await.map_err(|e| e.to_string())?;
        // Only a clean-up that went through counts: the engine retries a failed one.
        self.called
            .lock()
            .map_err(|e| e.to_string())?
            .push(shard.clone());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_consumer_behind_retention_recovers_by_itself() {
    let Some(aws) = moto() else { return };
    let store = dynamo_store(&aws).await;
    let source = Arc::new(TrimOnce {
        inner: streams_source(&aws, &store).await,
        armed: AtomicBool::new(false),
        tripped: Mutex::new(HashSet::new()),
    });
    let state = Arc::new(MemoryState::new());
    let sink = Arc::new(MemorySink::new());
    let hook = Arc::new(RemoveDeleted {
        store: store.clone(),
        sink: sink.clone(),
        called: Mutex::new(Vec::new()),
    });
    let engine = Engine::new(source.clone(), state.clone(), state.clone())
        .with_backfill(Arc::new(store.clone()), state.clone())
        .with_after_backfill(hook.clone());
    let config = ConsumerConfig {
        checkpoint_interval_ms: 20,
        retry_initial_backoff_ms: 10,
        ..ConsumerConfig::named("search")
    };
    let start = || {
        engine.start(vec![Consumer {
            config: config.clone(),
            sink: sink.clone(),
        }])
    };
    let mut expected = Expected::default();

    // The consumer keeps up for a while...
    let pipeline = start().await.expect("start");
    expected
        .write(
            &store,
            (0..200)
                .map(|i| put(i, serde_json::json!({ "i": i })))
                .collect(),
        )
        .await;
    wait_for("the first items", Duration::from_secs(60), || {
        sink.live_versions() == expected.0
    })
    .await;
    pipeline.shutdown().await;

    // ...then is away while items are updated, deleted and created, and comes back to a
    // stream that trimmed what it missed.
    let away = (0..300u32)
        .map(|n| {
            let i = n * 7 % 260;
            if n % 5 == 0 {
                delete(i)
            } else {
                put(i, serde_json::json!({ "away": n }))
            }
        })
        .collect();
    expected.write(&store, away).await;
    source.armed.store(true, AtomicOrdering::SeqCst);
    let pipeline = start().await.expect("restart");
    // Writes go on during the recovery.
    for round in 0..5u32 {
        let ops = (0..20u32)
            .map(|n| {
                let i = (round * 20 + n) * 11 % 280;
                if n % 6 == 0 {
                    delete(i)
                } else {
                    put(i, serde_json::json!({ "back": round * 20 + n }))
                }
            })
            .collect();
        expected.write(&store, ops).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shards = source.shards().await.expect("shards").len();
    wait_for(
        "the sink to equal the primary after the recovery",
        Duration::from_secs(90),
        || {
            sink.live_versions() == expected.0
                && hook.called.lock().expect("lock").len() == shards
                && pipeline.status()[0]
                    .shards
                    .iter()
                    .all(|s| s.state == ShardState::Running)
        },
    )
    .await;
    pipeline.shutdown().await;
    assert_eq!(
        source.tripped.lock().expect("lock").len(),
        shards,
        "every shard fell behind"
    );
    assert!(state
        .load_backfill("search")
        .await
        .expect("load")
        .is_empty());
}
