//! One prefecture rule: the migration's `prefecture` / `strip_prefecture` transforms give
//! exactly what the API's company create stores (the service's `locate`) for the same
//! address, on hand-picked hard cases and on generated ones.

use proptest::prelude::*;
use tsunagu_migrate::transform::{apply, Step};
use tsunagu_service::usecases::companies::locate;

/// (prefecture, rest) as the migration computes them.
fn migration(address: &str) -> (Option<String>, Option<String>) {
    let v = Some(address.to_string());
    (
        apply(&Step::Prefecture, v.clone()).expect("prefecture never rejects"),
        apply(&Step::StripPrefecture, v).expect("strip_prefecture never rejects"),
    )
}

/// (prefecture, rest) as the API stores them.
fn api(address: &str) -> (Option<String>, Option<String>) {
    let (prefecture, rest) = locate(address, None).expect("no explicit prefecture to disagree");
    (prefecture, Some(rest))
}

const CASES: [&str; 24] = [
    "〒100-0005 東京都千代田区丸の内1-1",
    "100-0005 東京都千代田区丸の内1-1",
    "〒１００－０００５　東京都千代田区丸の内１－１　",
    "〒1000005東京都千代田区",
    " 東京都港区芝公園 ",
    "　大阪府大阪市北区梅田",
    "東京新宿区西新宿2-8-1",
    "東京",
    "京都",
    "大阪",
    "京都 中京区",
    "京都市中京区",
    "京都郡苅田町",
    "大阪狭山市狭山1",
    "大阪堺市",
    "神奈川区反町1",
    "神奈川横浜市西区",
    "鹿児島郡三島村",
    "札幌市中央区北1条",
    "福島区海老江",
    "100-00051 東京都",
    "",
    "   ",
    "ＡＢＣビル　北海道札幌市",
];

#[test]
fn the_api_and_the_migration_split_hard_addresses_alike() {
    for a in CASES {
        assert_eq!(migration(a), api(a), "{a:?}");
    }
    // The case, spelled out: postal code stripped, no leading space left.
    assert_eq!(
        migration("〒100-0005 東京都千代田区丸の内1-1"),
        (Some("東京都".into()), Some("千代田区丸の内1-1".into()))
    );
    assert_eq!(
        migration("京都"),
        (Some("京都府".into()), Some(String::new()))
    );
    assert_eq!(
        migration("大阪"),
        (Some("大阪府".into()), Some(String::new()))
    );
}

proptest! {
    #[test]
    fn the_api_and_the_migration_agree_on_generated_addresses(
        parts in prop::collection::vec(prop::sample::select(vec![
            "〒", "100-0005", "１００－０００５", "1000005", " ", "\u{3000}", "\t",
            "東京", "東京都", "京都", "京都府", "京都郡", "大阪", "大阪狭山", "市", "区", "郡",
            "神奈川", "北海道", "札幌", "福島", "中央区", "1-2-3", "１－２", "ー", "ビル",
        ]), 0..8),
        noise in "\\PC{0,4}",
    ) {
        let a = format!("{}{noise}", parts.concat());
        prop_assert_eq!(migration(&a), api(&a), "{:?}", a);
    }
}
