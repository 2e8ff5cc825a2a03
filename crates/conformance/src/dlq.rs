//! Conformance checks of [`DeadLetterQueue`]: ids are unique, increasing and never
//! reused (also under concurrent pushes); `list` is oldest first, filtered by consumer,
//! strictly after `after_id` and at most `limit` long (also when the consumer's letters
//! are sparse among others'); `get` returns a letter exactly as pushed, a large one
//! (a body of ~600 KB and an old image) included; `remove` answers `true` once, then
//! `false`; `count` is per consumer.
//!
//! The checks use their own consumer names (all starting with `conf-`). Run them on a
//! queue nobody else writes to meanwhile; letters already in it are fine (the checks
//! look only at ids above the ones they find).

use futures::future::join_all;
use serde_json::json;
use std::collections::HashSet;
use std::fmt::Write as _;
use tsunagu_domain::{ChangeKind, ChangeRecord, Image, ItemKey, Position, ShardId, Version};
use tsunagu_engine::ports::{DeadLetter, DeadLetterQueue};

/// Runs every dead-letter check in turn.
pub async fn check_all(dlq: &dyn DeadLetterQueue) {
    ids_increase_and_are_never_reused(dlq).await;
    list_is_oldest_first_filtered_and_bounded(dlq).await;
    get_returns_the_letter_as_pushed(dlq).await;
    remove_answers_true_once_then_false(dlq).await;
    a_large_letter_round_trips_exactly(dlq).await;
    concurrent_pushes_get_distinct_ids(dlq).await;
}

/// A letter of `consumer` for item `n`, its record carrying `memo` in the body.
pub fn letter(consumer: &str, n: u32, memo: &str) -> DeadLetter {
    let key = ItemKey::new(format!("tenant-{n}"), format!("item-{n}"));
    let body =
        json!({"n": n, "memo": memo, "ratio": 0.1, "tags": ["a", "b"], "nested": {"ok": true}});
    DeadLetter {
        id: 0,
        consumer: consumer.to_string(),
        record: ChangeRecord {
            shard: ShardId("shard-0".into()),
            position: Position(format!("{}", 1_000 + u64::from(n))),
            key,
            kind: ChangeKind::Modify,
            version: Version(10 + u64::from(n)),
            old_image: Some(Image {
                version: Version(9 + u64::from(n)),
                body: json!({"n": n}),
            }),
            new_image: Some(Image {
                version: Version(10 + u64::from(n)),
                body,
            }),
            committed_at_us: 1_700_000_000_000_000 + i64::from(n),
        },
        error: format!("mapper_parsing_exception: field [memo] of item {n}"),
        attempts: 3 + n,
        failed_at_us: 1_700_000_000_500_000 + i64::from(n),
    }
}

/// The letter as the queue must return it.
fn stored(mut letter: DeadLetter, id: u64) -> DeadLetter {
    letter.id = id;
    letter
}

async fn push(dlq: &dyn DeadLetterQueue, letter: DeadLetter) -> (u64, DeadLetter) {
    let id = dlq.push(letter.clone()).await.expect("push a dead letter");
    assert!(id > 0, "ids start above 0 (0 means not stored), got {id}");
    (id, stored(letter, id))
}

fn ids(letters: &[DeadLetter]) -> Vec<u64> {
    letters.iter().map(|l| l.id).collect()
}

pub async fn ids_increase_and_are_never_reused(dlq: &dyn DeadLetterQueue) {
    let consumer = "conf-ids";
    let mut last = 0;
    let mut pushed = Vec::new();
    for n in 0..3 {
        let (id, _) = push(dlq, letter(consumer, n, "ids")).await;
        assert!(id > last, "ids must increase: {id} came after {last}");
        last = id;
        pushed.push(id);
    }
    assert!(dlq.remove(last).await.expect("remove"), "remove the newest");
    let (next, _) = push(dlq, letter(consumer, 3, "ids")).await;
    assert!(
        next > last,
        "an id must never be handed out again: {next} after the newest letter {last} was removed"
    );
    pushed.pop();
    pushed.push(next);
    assert_eq!(
        ids(&dlq.list(Some(consumer), 0, 10).await.expect("list")),
        pushed
    );
}

pub async fn list_is_oldest_first_filtered_and_bounded(dlq: &dyn DeadLetterQueue) {
    let (a, b) = ("conf-list-a", "conf-list-b");
    let mut all = Vec::new();
    for n in 0..6 {
        let consumer = if n % 2 == 0 { a } else { b };
        all.push(push(dlq, letter(consumer, n, "list")).await.1);
    }
    let before = all[0].id - 1;
    let of = |consumer: &str| -> Vec<DeadLetter> {
        all.iter()
            .filter(|l| l.consumer == consumer)
            .cloned()
            .collect()
    };
    let list = |consumer: Option<&'static str>, after: u64, limit: usize| async move {
        dlq.list(consumer, after, limit).await.expect("list")
    };

    assert_eq!(
        list(None, before, 100).await,
        all,
        "every consumer's letters, oldest first"
    );
    assert_eq!(list(Some(a), before, 100).await, of(a), "only a's letters");
    assert_eq!(list(Some(b), before, 100).await, of(b), "only b's letters");
    assert_eq!(
        list(Some(a), before, 2).await,
        of(a)[..2].to_vec(),
        "at most `limit`, the oldest"
    );
    assert_eq!(
        list(None, before, 4).await,
        all[..4].to_vec(),
        "at most `limit` over every consumer"
    );
    assert_eq!(
        list(Some(a), of(a)[1].id, 100).await,
        of(a)[2..].to_vec(),
        "strictly after `after_id`"
    );
    assert_eq!(
        list(None, all[2].id, 2).await,
        all[3..5].to_vec(),
        "`after_id` and `limit` together page through the queue"
    );
    assert!(
        list(None, all[5].id, 10).await.is_empty(),
        "nothing after the newest"
    );
    assert!(
        list(None, u64::MAX, 10).await.is_empty(),
        "nothing after u64::MAX"
    );
    assert!(
        list(None, before, 0).await.is_empty(),
        "limit 0 lists nothing"
    );
    assert!(
        list(Some("conf-list-nobody"), before, 10).await.is_empty(),
        "a consumer without letters has none"
    );
    assert_eq!(dlq.count(a).await.expect("count"), 3);
    assert_eq!(dlq.count(b).await.expect("count"), 3);
    assert_eq!(dlq.count("conf-list-nobody").await.expect("count"), 0);

    // A consumer's one letter behind many of another's: a store that pages by `limit`
    // before filtering must keep paging.
    let busy = "conf-list-busy";
    let sparse = "conf-list-sparse";
    let first_busy = push(dlq, letter(busy, 100, "busy")).await.1.id;
    for n in 101..250 {
        push(dlq, letter(busy, n, "busy")).await;
    }
    let (_, rare) = push(dlq, letter(sparse, 250, "rare")).await;
    assert_eq!(
        list(Some(sparse), first_busy - 1, 1).await,
        vec![rare.clone()],
        "the one letter of a consumer behind 150 of another's"
    );
    assert_eq!(dlq.count(sparse).await.expect("count"), 1);
    assert_eq!(dlq.count(busy).await.expect("count"), 150);
    let page = list(Some(busy), first_busy - 1, 120).await;
    assert_eq!(page.len(), 120, "a long page is filled up to `limit`");
    assert!(
        page.windows(2).all(|w| w[0].id < w[1].id) && page[0].id == first_busy,
        "oldest first"
    );
}

pub async fn get_returns_the_letter_as_pushed(dlq: &dyn DeadLetterQueue) {
    let consumer = "conf-get";
    let (id, expected) = push(dlq, letter(consumer, 7, "get")).await;
    let mut with_remove = letter(consumer, 8, "get");
    with_remove.record.kind = ChangeKind::Remove;
    with_remove.record.new_image = None;
    let (remove_id, remove_expected) = push(dlq, with_remove).await;
    assert_eq!(dlq.get(id).await.expect("get"), Some(expected));
    assert_eq!(
        dlq.get(remove_id).await.expect("get"),
        Some(remove_expected)
    );
    assert_eq!(
        dlq.get(u64::MAX).await.expect("get"),
        None,
        "no letter under an id never handed out"
    );
}

pub async fn remove_answers_true_once_then_false(dlq: &dyn DeadLetterQueue) {
    let consumer = "conf-remove";
    let (first, _) = push(dlq, letter(consumer, 1, "remove")).await;
    let (second, kept) = push(dlq, letter(consumer, 2, "remove")).await;
    assert_eq!(dlq.count(consumer).await.expect("count"), 2);
    assert!(
        dlq.remove(first).await.expect("remove"),
        "the letter existed"
    );
    assert!(
        !dlq.remove(first).await.expect("remove again"),
        "a removed letter is gone: removing it again answers false"
    );
    assert!(
        !dlq.remove(u64::MAX).await.expect("remove"),
        "removing an id never handed out answers false"
    );
    assert_eq!(dlq.get(first).await.expect("get"), None);
    assert_eq!(dlq.count(consumer).await.expect("count"), 1);
    assert_eq!(
        dlq.list(Some(consumer), 0, 10).await.expect("list"),
        vec![kept],
        "only the other letter is left"
    );
    assert!(dlq.remove(second).await.expect("remove"));
    assert_eq!(dlq.count(consumer).await.expect("count"), 0);
}

/// Text of at least `bytes` bytes that is not one repeated chunk (numbers count up, so a
/// store that reorders or drops pieces is caught), with multi-byte characters and JSON
/// escapes.
pub fn varied_text(bytes: usize) -> String {
    let mut text = String::with_capacity(bytes + 64);
    let mut i = 0u64;
    while text.len() < bytes {
        let _ = write!(text, "{i}:é漢字🙂\"quoted\"\\back\n\t;");
        i += 1;
    }
    text
}

pub async fn a_large_letter_round_trips_exactly(dlq: &dyn DeadLetterQueue) {
    let consumer = "conf-large";
    let mut big = letter(consumer, 1, "large");
    if let Some(image) = big.record.new_image.as_mut() {
        image.body = json!({"memo": varied_text(600 * 1024), "n": 1, "list": (0..2_000).collect::<Vec<u32>>()});
    }
    if let Some(image) = big.record.old_image.as_mut() {
        image.body = json!({"memo": varied_text(300 * 1024)});
    }
    big.error = format!("rejected: {}", varied_text(10 * 1024));
    let (small_before, small_before_expected) = push(dlq, letter(consumer, 0, "small")).await;
    let (id, expected) = push(dlq, big).await;
    let (small_after, small_after_expected) = push(dlq, letter(consumer, 2, "small")).await;

    let got = dlq.get(id).await.expect("get a large letter");
    assert!(
        got.as_ref() == Some(&expected),
        "a large letter must come back exactly as pushed (got {} bytes of record, wanted {})",
        got.map_or(0, |l| serde_json::to_string(&l.record)
            .map_or(0, |s| s.len())),
        serde_json::to_string(&expected.record).map_or(0, |s| s.len())
    );
    let listed = dlq.list(Some(consumer), 0, 10).await.expect("list");
    assert!(
        listed
            == vec![
                small_before_expected,
                expected,
                small_after_expected.clone()
            ],
        "a large letter is listed whole between its neighbours (ids {:?})",
        ids(&listed)
    );
    assert_eq!(dlq.count(consumer).await.expect("count"), 3);
    assert!(dlq.remove(id).await.expect("remove a large letter"));
    assert_eq!(dlq.get(id).await.expect("get"), None);
    assert!(!dlq.remove(id).await.expect("remove again"));
    assert_eq!(
        dlq.list(Some(consumer), small_before, 10)
            .await
            .expect("list"),
        vec![small_after_expected]
    );
    assert!(dlq.remove(small_before).await.expect("remove"));
    assert!(dlq.remove(small_after).await.expect("remove"));
}

pub async fn concurrent_pushes_get_distinct_ids(dlq: &dyn DeadLetterQueue) {
    let consumer = "conf-concurrent";
    const PUSHERS: u32 = 4;
    const EACH: u32 = 25;
    let pushers = (0..PUSHERS).map(|p| async move {
        let mut ids = Vec::new();
        for n in 0..EACH {
            let id = dlq
                .push(letter(consumer, p * 1_000 + n, "concurrent"))
                .await
                .expect("push");
            ids.push(id);
        }
        ids
    });
    let per_pusher = join_all(pushers).await;
    for ids in &per_pusher {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "one pusher's ids must increase: {ids:?}"
        );
    }
    let all: Vec<u64> = per_pusher.into_iter().flatten().collect();
    let distinct: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "concurrent pushes must get distinct ids: {all:?}"
    );
    assert_eq!(
        dlq.count(consumer).await.expect("count"),
        u64::from(PUSHERS * EACH)
    );
    let mut sorted = all;
    sorted.sort_unstable();
    let listed = dlq.list(Some(consumer), 0, 1_000).await.expect("list");
    assert_eq!(ids(&listed), sorted, "every pushed letter is listed, by id");
}
