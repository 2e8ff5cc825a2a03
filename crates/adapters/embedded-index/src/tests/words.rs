//! Memo search with a Japanese dictionary (issue 19): whole words do not match across word
//! boundaries, substrings inside a word still do, okurigana variants meet, and the index
//! remembers whether it was built with a dictionary. Skipped (saying so) without
//! `TSUNAGU_TEST_IPADIC_DIR`, which `.ci/run` sets after installing `mecab-ipadic`.

use super::*;
use crate::morphology::{test_dictionary, Dictionary};
use crate::{ActivityQuery, IndexError};
use std::sync::Arc;
use tsunagu_engine::ports::Sink;

/// An index of `memos` (`(id, memo)`), with `dictionary` or without.
async fn index_of(
    dir: &Path,
    dictionary: Option<Arc<Dictionary>>,
    memos: &[(&str, &str)],
) -> ActivityIndex {
    let index = ActivityIndex::open(
        dir,
        IndexOptions {
            dictionary,
            ..options()
        },
    )
    .expect("open index");
    let records: Vec<_> = memos
        .iter()
        .map(|(id, memo)| {
            let mut a = activity(id, "d1");
            a.memo = memo.to_string();
            upsert(&a, 1)
        })
        .collect();
    index.apply(&records).await.expect("apply");
    index
}

/// The ids of the memos matching `text`, sorted.
fn found(index: &ActivityIndex, text: &str) -> Vec<String> {
    let q = ActivityQuery {
        text: Some(text.into()),
        ..ActivityQuery::default()
    };
    let mut ids: Vec<String> = index
        .search(&q)
        .expect("search")
        .hits
        .into_iter()
        .map(|h| h.activity.id)
        .collect();
    ids.sort();
    ids
}

const PLACES: [(&str, &str); 5] = [
    ("m1", "東京都港区の本社を訪問"),
    ("m2", "京都市の顧客と商談"),
    ("m3", "京都大学との共同研究"),
    ("m4", "見積書を送付"),
    ("m5", "新企画の提案、規格は未定"),
];

#[tokio::test]
async fn whole_words_do_not_match_across_word_boundaries() {
    let Some(dictionary) = test_dictionary("whole_words_do_not_match_across_word_boundaries")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let index = index_of(dir.path(), Some(dictionary), &PLACES).await;
    // 東京都 is 東京 / 都: 京都 is not in it; inside the word 京都大 (of 京都大学) it is.
    assert_eq!(found(&index, "京都"), ["m2", "m3"]);
    assert_eq!(found(&index, "東京都"), ["m1"]);
    assert_eq!(found(&index, "港区"), ["m1"]);
    // 見積 is a word of 見積書 (見積 / 書).
    assert_eq!(found(&index, "見積"), ["m4"]);
    assert_eq!(found(&index, "企画"), ["m5"]);
    // Exclusion and OR use the same word matching.
    assert_eq!(found(&index, "京都 -顧客"), ["m3"]);
    assert_eq!(found(&index, "京都 OR 東京"), ["m1", "m2", "m3"]);
    // Without a dictionary, bigrams find 京都 inside 東京都 (what the dictionary fixes).
    let plain = tempfile::tempdir().expect("tempdir");
    let bigrams = index_of(plain.path(), None, &PLACES).await;
    assert_eq!(found(&bigrams, "京都"), ["m1", "m2", "m3"]);
}

#[tokio::test]
async fn okurigana_variants_and_kana_meet() {
    let Some(dictionary) = test_dictionary("okurigana_variants_and_kana_meet") else {
        return;
    };
    let memos = [
        ("v1", "見積もりを提出した"),
        ("v2", "見積りの依頼あり"),
        ("v3", "お見積りの件で連絡"),
        ("v4", "来週打ち合わせ予定"),
        ("v5", "打合せ済み"),
        ("v6", "先方と打ち合せた"),
        ("v7", "みーてぃんぐは中止"),
        ("v8", "規格の確認"),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let index = index_of(dir.path(), Some(dictionary), &memos).await;
    for query in ["見積もり", "見積り", "お見積り", "見積"] {
        assert_eq!(found(&index, query), ["v1", "v2", "v3"], "{query}");
    }
    for query in ["打ち合わせ", "打合せ", "打ち合せ"] {
        assert_eq!(found(&index, query), ["v4", "v5", "v6"], "{query}");
    }
    // Kana-only words keep the folded bigrams; a homophone is not a variant.
    assert_eq!(found(&index, "ミーティング"), ["v7"]);
    assert!(found(&index, "企画").is_empty());
    // The relevance order finds the same memos.
    let q = ActivityQuery {
        text: Some("見積もり".into()),
        sort: tsunagu_domain::search::SortOrder::Relevance,
        ..ActivityQuery::default()
    };
    assert_eq!(index.search(&q).expect("search").hits.len(), 3);
}

#[tokio::test]
async fn an_index_opens_only_with_the_analysis_it_was_built_with() {
    let Some(dictionary) =
        test_dictionary("an_index_opens_only_with_the_analysis_it_was_built_with")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let index = index_of(dir.path(), Some(Arc::clone(&dictionary)), &PLACES).await;
    index.close().await;
    // Without the dictionary: a schema mismatch naming it, for writers and readers.
    for result in [
        ActivityIndex::open(dir.path(), options()).map(|_| ()),
        ActivityIndex::open_read_only(dir.path()).map(|_| ()),
    ] {
        match result {
            Err(IndexError::SchemaMismatch { message, .. }) => {
                assert!(message.contains("with a Japanese dictionary"), "{message}")
            }
            other => panic!("expected a schema mismatch, got {:?}", other.err()),
        }
    }
    // With it, the reader finds what the writer wrote.
    let reader = ActivityIndex::open_read_only_with(dir.path(), Some(Arc::clone(&dictionary)))
        .expect("reader");
    let q = ActivityQuery {
        text: Some("京都".into()),
        ..ActivityQuery::default()
    };
    assert_eq!(reader.search(&q).expect("search").total, 2);
    // A bigram index opened with a dictionary is a schema change too.
    let plain = tempfile::tempdir().expect("tempdir");
    index_of(plain.path(), None, &PLACES).await.close().await;
    match ActivityIndex::open(
        plain.path(),
        IndexOptions {
            dictionary: Some(dictionary),
            ..options()
        },
    ) {
        Err(IndexError::SchemaMismatch { message, .. }) => {
            assert!(
                message.contains("without a Japanese dictionary"),
                "{message}"
            )
        }
        other => panic!("expected a schema mismatch, got {:?}", other.err()),
    }
}

/// Regression (search-quality set, issue 19): with the dictionary, 各々 found nothing (not
/// even the memo that says 各々) and 先先月 missed 先々月, which the bigrams find.
#[tokio::test]
async fn iteration_marks_are_found_as_typed_and_expanded() {
    let Some(dictionary) = test_dictionary("iteration_marks_are_found_as_typed_and_expanded")
    else {
        return;
    };
    let memos = [
        ("i1", "各々の担当者に共有"),
        ("i2", "先々月の受注分を確認"),
        ("i3", "時々連絡あり"),
        ("i4", "各部署に展開"),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let index = index_of(dir.path(), Some(dictionary), &memos).await;
    assert_eq!(found(&index, "各々"), ["i1"]);
    assert_eq!(found(&index, "各各"), ["i1"]);
    assert_eq!(found(&index, "先々月"), ["i2"]);
    assert_eq!(found(&index, "先先月"), ["i2"]);
    assert_eq!(found(&index, "時々"), ["i3"]);
}
