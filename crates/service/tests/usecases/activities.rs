//! Activities: recording (the deal's company copied, times from the clock), editing and
//! deleting with optimistic concurrency, and the validation rules with the field they
//! name.

use crate::harness::*;
use chrono::Duration;
use proptest::prelude::*;
use tsunagu_domain::{ActionType, ActivityLog, Entity, Version, MEMO_MAX_CHARS};
use tsunagu_service::usecases::activities::{ActivityPatch, NewActivity};
use tsunagu_service::ServiceError;

/// A tenant with a company and a deal.
async fn setup() -> (Harness, tsunagu_service::TenantId, String, String) {
    let h = Harness::new();
    let t = tenant("t1");
    let co = h
        .company(&t, "株式会社つなぐ", "東京都千代田区丸の内1-1")
        .await;
    let deal = h.deal(&t, &co.id, "基幹システム刷新", &[]).await;
    (h, t, co.id, deal.id)
}

#[tokio::test]
async fn recording_copies_the_deals_company_and_takes_its_times_from_the_clock() {
    let (h, t, co, deal) = setup().await;
    let at = start_of_test() - Duration::hours(3);
    let written = h
        .activity(
            &t,
            &deal,
            NewActivity {
                result: Some("appointment".into()),
                memo: "先方の部長と電話。来週訪問のアポ獲得".into(),
                tags: vec!["重点".into()],
                ..approach(ActionType::Call, "u1", at)
            },
        )
        .await;
    let a = &written.value;
    assert!(a.id.starts_with("ac_"), "{}", a.id);
    assert_eq!(
        (a.tenant_id.as_str(), a.deal_id.as_str()),
        ("t1", deal.as_str())
    );
    assert_eq!(a.company_id, co, "the deal's company is copied");
    assert_eq!(
        (a.created_at, a.updated_at),
        (start_of_test(), start_of_test())
    );
    assert_eq!(a.occurred_at, at);

    // What the use case returns is what the store holds, at the version it reports.
    let (version, stored) = h.primary.stored(&a.key()).expect("stored");
    assert_eq!(version, written.version);
    assert_eq!(stored, Entity::ActivityLog(a.clone()));
    assert_eq!(written.token.key, a.key());
    assert_eq!(written.token.version, written.version);
    assert!(written.token.committed_at_us > 0);
    assert_eq!(
        h.service.activity(&t, &deal, &a.id).await.unwrap(),
        (version, a.clone())
    );
}

#[tokio::test]
async fn an_activity_is_recorded_only_on_an_existing_deal() {
    let (h, t, _, _) = setup().await;
    let before = h.primary.log().len();
    assert_not_found(
        h.service
            .record_activity(&t, "dl_missing", call_days_ago(1))
            .await,
        "deal",
        "dl_missing",
    );
    assert_eq!(h.primary.log().len(), before, "nothing was written");
}

#[tokio::test]
async fn an_edit_changes_only_the_fields_given_and_null_clears_the_result() {
    let (h, t, _, deal) = setup().await;
    let created = h
        .activity(
            &t,
            &deal,
            NewActivity {
                memo: "初回訪問".into(),
                tags: vec!["重点".into()],
                ..visit_days_ago(2, "appointment")
            },
        )
        .await;
    h.clock.advance(Duration::minutes(5));
    let edited = h
        .service
        .edit_activity(
            &t,
            &deal,
            &created.value.id,
            ActivityPatch {
                memo: Some("二回目の訪問".into()),
                result: Some(None),
                ..activity_patch(created.version)
            },
        )
        .await
        .unwrap();
    assert!(edited.version > created.version);
    let a = &edited.value;
    assert_eq!(a.memo, "二回目の訪問");
    assert_eq!(a.result, None, "null clears the result");
    assert_eq!(a.tags, ["重点"], "absent fields stay");
    assert_eq!(a.action, ActionType::Visit);
    assert_eq!(a.created_at, start_of_test());
    assert_eq!(a.updated_at, start_of_test() + Duration::minutes(5));
    assert_eq!(
        h.primary.stored(&a.key()),
        Some((edited.version, Entity::ActivityLog(a.clone())))
    );
}

#[tokio::test]
async fn updated_at_never_goes_before_created_at_when_the_clock_goes_back() {
    let (h, t, _, deal) = setup().await;
    let created = h.activity(&t, &deal, call_days_ago(1)).await;
    h.clock.advance(-Duration::hours(1));
    let edited = h
        .service
        .edit_activity(
            &t,
            &deal,
            &created.value.id,
            ActivityPatch {
                memo: Some("時計が戻った".into()),
                ..activity_patch(created.version)
            },
        )
        .await
        .unwrap();
    assert_eq!(edited.value.updated_at, edited.value.created_at);
}

#[tokio::test]
async fn a_stale_edit_or_delete_is_a_conflict_naming_the_current_version() {
    let (h, t, _, deal) = setup().await;
    let v1 = h.activity(&t, &deal, call_days_ago(1)).await;
    let id = v1.value.id.clone();
    let v2 = h
        .service
        .edit_activity(
            &t,
            &deal,
            &id,
            ActivityPatch {
                memo: Some("先に編集した人".into()),
                ..activity_patch(v1.version)
            },
        )
        .await
        .unwrap();
    let stale = h
        .service
        .edit_activity(
            &t,
            &deal,
            &id,
            ActivityPatch {
                memo: Some("上書き".into()),
                ..activity_patch(v1.version)
            },
        )
        .await;
    match stale {
        Err(ServiceError::Conflict {
            what,
            id: got,
            sent,
            current,
        }) => {
            assert_eq!((what, got.as_str()), ("activity", id.as_str()));
            assert_eq!((sent, current), (v1.version, Some(v2.version)));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let deleted = h
        .service
        .delete_activity(&t, &deal, &id, v1.version.0)
        .await;
    assert!(
        matches!(deleted, Err(ServiceError::Conflict { current: Some(c), .. }) if c == v2.version),
        "{deleted:?}"
    );
    let (version, stored) = h.service.activity(&t, &deal, &id).await.unwrap();
    assert_eq!(
        (version, stored.memo.as_str()),
        (v2.version, "先に編集した人")
    );
}

#[tokio::test]
async fn a_writer_that_wins_between_the_read_and_the_write_makes_an_edit_conflict() {
    // The version check before building the new value passes; the store's atomic check
    // fails. An edit depends on the whole activity, so it is not retried.
    let (h, t, _, deal) = setup().await;
    let created = h.activity(&t, &deal, call_days_ago(1)).await;
    let key = created.value.key();
    h.primary.interfere(key.clone(), 1, |e| {
        if let Entity::ActivityLog(a) = e {
            a.memo = "同時に編集した人".into();
        }
    });
    let attempts = h.primary.write_attempts();
    let result = h
        .service
        .edit_activity(
            &t,
            &deal,
            &created.value.id,
            ActivityPatch {
                memo: Some("負けた編集".into()),
                ..activity_patch(created.version)
            },
        )
        .await;
    let (current, stored) = h.primary.stored(&key).unwrap();
    assert!(current > created.version);
    match result {
        Err(ServiceError::Conflict {
            sent, current: c, ..
        }) => {
            assert_eq!((sent, c), (created.version, Some(current)));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(h.primary.write_attempts(), attempts + 1, "no retry");
    let Entity::ActivityLog(a) = stored else {
        panic!("not an activity")
    };
    assert_eq!(a.memo, "同時に編集した人", "the winner's edit stays");
}

#[tokio::test]
async fn a_delete_removes_the_activity_at_a_newer_version_and_a_second_delete_is_not_found() {
    let (h, t, _, deal) = setup().await;
    let created = h.activity(&t, &deal, call_days_ago(1)).await;
    let id = &created.value.id;
    let deleted = h
        .service
        .delete_activity(&t, &deal, id, created.version.0)
        .await
        .unwrap();
    assert!(
        deleted.version > created.version,
        "a deletion has its own version"
    );
    assert_eq!(deleted.token.key, created.value.key());
    assert_eq!(h.primary.stored(&created.value.key()), None);
    assert_not_found(h.service.activity(&t, &deal, id).await, "activity", id);
    assert_not_found(
        h.service
            .delete_activity(&t, &deal, id, deleted.version.0)
            .await,
        "activity",
        id,
    );
    // Another writer deleting it between our read and our delete: a conflict with no
    // current version.
    let other = h.activity(&t, &deal, call_days_ago(2)).await;
    h.primary.delete_before_next_write(other.value.key());
    let raced = h
        .service
        .delete_activity(&t, &deal, &other.value.id, other.version.0)
        .await;
    assert!(
        matches!(raced, Err(ServiceError::Conflict { current: None, .. })),
        "{raced:?}"
    );
}

#[tokio::test]
async fn the_activity_must_belong_to_the_deal_in_the_path() {
    let (h, t, co, deal) = setup().await;
    let other_deal = h.deal(&t, &co, "別の案件", &[]).await;
    let a = h.activity(&t, &deal, call_days_ago(1)).await.value;
    assert_not_found(
        h.service.activity(&t, &other_deal.id, &a.id).await,
        "activity",
        &a.id,
    );
    // A deal's id is not an activity.
    assert_not_found(
        h.service.activity(&t, &deal, &deal).await,
        "activity",
        &deal,
    );
}

#[tokio::test]
async fn version_zero_is_refused_before_anything_is_read() {
    let (h, t, _, deal) = setup().await;
    // Even for an id that does not exist: the version is checked first.
    let fields = invalid_fields(
        h.service
            .edit_activity(&t, &deal, "ac_missing", activity_patch(Version(0)))
            .await,
    );
    assert_eq!(fields, ["version"]);
    let fields = invalid_fields(h.service.delete_activity(&t, &deal, "ac_missing", 0).await);
    assert_eq!(fields, ["version"]);
}

#[tokio::test]
async fn every_broken_rule_is_reported_with_its_field_and_nothing_is_written() {
    let (h, t, _, deal) = setup().await;
    let before = h.primary.write_attempts();
    let input = NewActivity {
        user_id: "has space".into(),
        result: Some(" appointment".into()),
        memo: "あ".repeat(MEMO_MAX_CHARS + 1),
        tags: (0..33).map(|i| format!("tag{i}")).collect(),
        ..approach(
            ActionType::Call,
            "u1",
            start_of_test() + Duration::hours(24) + Duration::seconds(1),
        )
    };
    let fields = invalid_fields(h.service.record_activity(&t, &deal, input).await);
    assert_eq!(fields, ["user_id", "result", "memo", "tags", "occurred_at"]);
    assert_eq!(h.primary.write_attempts(), before);

    for (input, field) in [
        (
            NewActivity {
                user_id: String::new(),
                ..call_days_ago(1)
            },
            "user_id",
        ),
        (
            NewActivity {
                result: Some(String::new()),
                ..call_days_ago(1)
            },
            "result",
        ),
        (
            NewActivity {
                result: Some("結".repeat(65)),
                ..call_days_ago(1)
            },
            "result",
        ),
        (
            NewActivity {
                tags: vec!["  ".into()],
                ..call_days_ago(1)
            },
            "tags",
        ),
        (
            NewActivity {
                tags: vec!["タ".repeat(65)],
                ..call_days_ago(1)
            },
            "tags",
        ),
        (
            approach(
                ActionType::Email,
                "u1",
                chrono::DateTime::from_timestamp(86_399, 0).unwrap(),
            ),
            "occurred_at",
        ),
    ] {
        let fields = invalid_fields(h.service.record_activity(&t, &deal, input.clone()).await);
        assert_eq!(fields, [field], "{input:?}");
    }
}

#[tokio::test]
async fn limits_are_inclusive_count_characters_and_follow_the_clock() {
    let (h, t, _, deal) = setup().await;
    let at_the_limits = NewActivity {
        memo: "営".repeat(MEMO_MAX_CHARS),
        result: Some("結".repeat(64)),
        tags: (0..32).map(|i| format!("{i}{}", "タ".repeat(60))).collect(),
        ..approach(
            ActionType::Other,
            "u1",
            start_of_test() + Duration::hours(24),
        )
    };
    h.activity(&t, &deal, at_the_limits).await;
    // "More than 24 hours in the future" is relative to the service's clock, not the
    // machine's.
    let later = start_of_test() + Duration::days(3);
    let fields = invalid_fields(
        h.service
            .record_activity(&t, &deal, approach(ActionType::Visit, "u1", later))
            .await,
    );
    assert_eq!(fields, ["occurred_at"]);
    h.clock.set(later - Duration::hours(1));
    h.activity(&t, &deal, approach(ActionType::Visit, "u1", later))
        .await;
}

#[tokio::test]
async fn an_invalid_edit_names_the_field_and_leaves_the_activity_as_it_was() {
    let (h, t, _, deal) = setup().await;
    let created = h.activity(&t, &deal, call_days_ago(1)).await;
    let attempts = h.primary.write_attempts();
    let fields = invalid_fields(
        h.service
            .edit_activity(
                &t,
                &deal,
                &created.value.id,
                ActivityPatch {
                    memo: Some("メ".repeat(MEMO_MAX_CHARS + 1)),
                    user_id: Some(String::new()),
                    ..activity_patch(created.version)
                },
            )
            .await,
    );
    assert_eq!(fields, ["user_id", "memo"]);
    assert_eq!(h.primary.write_attempts(), attempts);
    assert_eq!(
        h.primary.stored(&created.value.key()),
        Some((created.version, Entity::ActivityLog(created.value.clone())))
    );
}

#[tokio::test]
async fn a_failing_store_is_unavailable_and_loses_nothing() {
    let (h, t, _, deal) = setup().await;
    h.primary.fail_next(Op::Put, "throttled");
    let result = h.service.record_activity(&t, &deal, call_days_ago(1)).await;
    assert!(
        matches!(&result, Err(ServiceError::Unavailable(m)) if m == "throttled"),
        "{result:?}"
    );
    let created = h.activity(&t, &deal, call_days_ago(1)).await;
    h.primary.fail_next(Op::Get, "network blip");
    let result = h.service.activity(&t, &deal, &created.value.id).await;
    assert!(
        matches!(result, Err(ServiceError::Unavailable(_))),
        "{result:?}"
    );
    h.primary.fail_next(Op::Delete, "throttled");
    let result = h
        .service
        .delete_activity(&t, &deal, &created.value.id, created.version.0)
        .await;
    assert!(
        matches!(result, Err(ServiceError::Unavailable(_))),
        "{result:?}"
    );
    assert_eq!(
        h.service
            .activity(&t, &deal, &created.value.id)
            .await
            .unwrap()
            .0,
        created.version,
        "the failed delete changed nothing"
    );
}

#[test]
fn inputs_refuse_unknown_fields_and_values_and_a_patch_tells_absent_from_null() {
    use serde_json::json;
    let err = serde_json::from_value::<NewActivity>(
        json!({"user_id": "u1", "action": "fax", "occurred_at": "2026-11-20T10:00:00Z"}),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("fax") && err.contains("online_meeting"),
        "{err}"
    );
    let err = serde_json::from_value::<NewActivity>(
        json!({"user_id": "u1", "action": "call", "occurred_at": "2026-11-20T10:00:00Z", "colour": 1}),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("colour"), "{err}");
    let patch: ActivityPatch = serde_json::from_value(json!({"version": 3})).unwrap();
    assert_eq!(patch.result, None, "absent: keep");
    let patch: ActivityPatch =
        serde_json::from_value(json!({"version": 3, "result": null})).unwrap();
    assert_eq!(patch.result, Some(None), "null: clear");
    let patch: ActivityPatch =
        serde_json::from_value(json!({"version": 3, "result": "won"})).unwrap();
    assert_eq!(patch.result, Some(Some("won".into())));
}

/// One step of a client working on one activity with the version it chose to send.
#[derive(Debug, Clone)]
enum Step {
    /// Edit the memo, sending the `n`th version seen so far (from the newest).
    Edit {
        back: usize,
    },
    Delete {
        back: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0usize..3).prop_map(|back| Step::Edit { back }),
        1 => (0usize..3).prop_map(|back| Step::Delete { back }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Optimistic concurrency: a write is accepted exactly when it sends the current
    /// version; an accepted write's version is above every earlier one; a refused write
    /// names the current version and changes nothing; after a delete the activity is
    /// gone.
    #[test]
    fn versions_strictly_increase_and_only_the_current_version_writes(
        steps in prop::collection::vec(step(), 1..12)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (h, t, _, deal) = setup().await;
            let created = h.activity(&t, &deal, call_days_ago(1)).await;
            let id = created.value.id.clone();
            let key = created.value.key();
            let mut seen: Vec<Version> = vec![created.version];
            let mut current: Option<(Version, ActivityLog)> =
                Some((created.version, created.value.clone()));
            for (n, step) in steps.into_iter().enumerate() {
                let back = match step { Step::Edit { back } | Step::Delete { back } => back };
                let sent = seen[seen.len() - 1 - back.min(seen.len() - 1)];
                let memo = format!("編集{n}");
                let outcome = match step {
                    Step::Edit { .. } => h.service.edit_activity(&t, &deal, &id, ActivityPatch {
                        memo: Some(memo.clone()),
                        ..activity_patch(sent)
                    }).await.map(|w| (w.version, Some(w.value))),
                    Step::Delete { .. } => h.service
                        .delete_activity(&t, &deal, &id, sent.0).await
                        .map(|w| (w.version, None)),
                };
                match (&current, outcome) {
                    (None, Err(ServiceError::NotFound { .. })) => {}
                    (Some((v, _)), Ok((new, value))) => {
                        prop_assert_eq!(*v, sent, "accepted a stale version");
                        prop_assert!(seen.iter().all(|s| *s < new), "{new} not above {seen:?}");
                        seen.push(new);
                        current = value.map(|a| (new, a));
                    }
                    (Some((v, _)), Err(ServiceError::Conflict { sent: s, current: c, .. })) => {
                        prop_assert_ne!(*v, sent, "refused the current version");
                        prop_assert_eq!((s, c), (sent, Some(*v)));
                    }
                    (expected, got) => {
                        prop_assert!(false, "step {n}: with {expected:?} got {got:?}");
                    }
                }
                let stored = h.primary.stored(&key).map(|(v, e)| match e {
                    Entity::ActivityLog(a) => (v, a),
                    other => panic!("not an activity: {other:?}"),
                });
                prop_assert_eq!(&stored, &current);
            }
            Ok(())
        })?;
    }
}
