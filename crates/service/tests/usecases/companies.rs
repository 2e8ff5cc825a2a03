//! Companies: the prefecture split off the address (postal codes, full-width text,
//! suffix-less names, cities named like their prefecture), an explicit prefecture that
//! must agree, edits that split again, and the company search.

use crate::harness::*;
use chrono::Duration;
use tsunagu_domain::Version;
use tsunagu_service::usecases::companies::{CompanyPatch, CompanySearch, NewCompany};
use tsunagu_service::ServiceError;

fn new_company(name: &str, address: &str, prefecture: Option<&str>) -> NewCompany {
    NewCompany {
        name: name.into(),
        address: address.into(),
        prefecture: prefecture.map(str::to_string),
        industry: None,
    }
}

#[tokio::test]
async fn the_prefecture_is_split_off_the_address() {
    let h = Harness::new();
    let t = tenant("t1");
    for (address, prefecture, rest) in [
        (
            "東京都千代田区丸の内1-1",
            Some("東京都"),
            "千代田区丸の内1-1",
        ),
        (
            "〒100-0005 東京都千代田区丸の内1-1",
            Some("東京都"),
            "千代田区丸の内1-1",
        ),
        (
            "〒100-0005東京都千代田区丸の内1-1",
            Some("東京都"),
            "千代田区丸の内1-1",
        ),
        ("100-0005 東京都千代田区", Some("東京都"), "千代田区"),
        // Full-width digits and hyphen (NFKC) and surrounding spaces.
        (
            "　〒１００－０００５　東京都千代田区　",
            Some("東京都"),
            "千代田区",
        ),
        ("東京港区芝公園", Some("東京都"), "港区芝公園"),
        ("北海道札幌市中央区", Some("北海道"), "札幌市中央区"),
        (
            "大阪府大阪市北区梅田1-1",
            Some("大阪府"),
            "大阪市北区梅田1-1",
        ),
        // A city named like its prefecture: the prefecture is told, the address kept.
        ("大阪市北区梅田1-1", Some("大阪府"), "大阪市北区梅田1-1"),
        (
            "〒530-0001 大阪市北区梅田",
            Some("大阪府"),
            "大阪市北区梅田",
        ),
        // Nothing to tell the prefecture by.
        ("千代田区丸の内1-1", None, "千代田区丸の内1-1"),
        ("", None, ""),
    ] {
        let company = h
            .service
            .create_company(&t, new_company("会社", address, None))
            .await
            .unwrap()
            .value;
        assert_eq!(
            (company.prefecture.as_deref(), company.address.as_str()),
            (prefecture, rest),
            "{address:?}"
        );
    }
}

#[tokio::test]
async fn an_explicit_prefecture_fills_in_or_must_agree_with_the_address() {
    let h = Harness::new();
    let t = tenant("t1");
    let c = h
        .service
        .create_company(&t, new_company("会社", "札幌市中央区", Some("北海道")))
        .await
        .unwrap()
        .value;
    assert_eq!(c.prefecture.as_deref(), Some("北海道"));
    let c = h
        .service
        .create_company(&t, new_company("会社", "大阪市北区", Some("大阪")))
        .await
        .unwrap()
        .value;
    assert_eq!(
        c.prefecture.as_deref(),
        Some("大阪府"),
        "the official name is stored"
    );
    let attempts = h.primary.write_attempts();
    for prefecture in ["大阪府", "ニューヨーク"] {
        let fields = invalid_fields(
            h.service
                .create_company(&t, new_company("会社", "東京都港区", Some(prefecture)))
                .await,
        );
        assert_eq!(fields, ["prefecture"], "{prefecture}");
    }
    assert_eq!(h.primary.write_attempts(), attempts);
}

#[tokio::test]
async fn names_are_trimmed_and_broken_fields_are_named() {
    let h = Harness::new();
    let t = tenant("t1");
    let c = h.company(&t, "  株式会社つなぐ　", "東京都港区").await;
    assert_eq!(c.name, "株式会社つなぐ");
    assert!(c.id.starts_with("co_"));
    assert_eq!(
        (c.created_at, c.updated_at),
        (start_of_test(), start_of_test())
    );
    for (input, fields) in [
        (new_company("  ", "", None), vec!["name"]),
        (new_company(&"名".repeat(201), "", None), vec!["name"]),
        (new_company("a\u{7}b", "", None), vec!["name"]),
        (
            new_company("会社", &format!("東京都{}", "丁".repeat(501)), None),
            vec!["address"],
        ),
        (
            NewCompany {
                industry: Some(" 製造業".into()),
                ..new_company("", "", None)
            },
            vec!["name", "industry"],
        ),
    ] {
        assert_eq!(
            invalid_fields(h.service.create_company(&t, input.clone()).await),
            fields,
            "{input:?}"
        );
    }
    // At the limits.
    h.company(
        &t,
        &"名".repeat(200),
        &format!("東京都{}", "丁".repeat(500)),
    )
    .await;
}

#[tokio::test]
async fn an_edit_splits_a_new_address_again_and_a_prefecture_alone_replaces_it() {
    let h = Harness::new();
    let t = tenant("t1");
    let c = h
        .service
        .create_company(
            &t,
            NewCompany {
                industry: Some("製造業".into()),
                ..new_company("東京商事", "東京都新宿区西新宿2-8-1", None)
            },
        )
        .await
        .unwrap();
    h.clock.advance(Duration::minutes(1));
    let moved = h
        .service
        .edit_company(
            &t,
            &c.value.id,
            CompanyPatch {
                address: Some("〒530-0001 大阪府大阪市北区梅田1-1".into()),
                ..company_patch(c.version)
            },
        )
        .await
        .unwrap();
    assert!(moved.version > c.version);
    let m = &moved.value;
    assert_eq!(
        (m.prefecture.as_deref(), m.address.as_str()),
        (Some("大阪府"), "大阪市北区梅田1-1")
    );
    assert_eq!(
        (m.name.as_str(), m.industry.as_deref()),
        ("東京商事", Some("製造業"))
    );
    assert_eq!(m.updated_at, start_of_test() + Duration::minutes(1));
    // A prefecture alone (suffix-less, agreeing with the address) keeps the address;
    // null clears it; null clears the industry.
    let p = h
        .service
        .edit_company(
            &t,
            &m.id,
            CompanyPatch {
                prefecture: Some(Some("大阪".into())),
                ..company_patch(moved.version)
            },
        )
        .await
        .unwrap();
    assert_eq!(p.value.prefecture.as_deref(), Some("大阪府"));
    // Nothing changed (same clock, same values): the store commits nothing new.
    assert_eq!((p.version, p.token.committed_at_us), (moved.version, 0));
    assert_eq!(p.value.address, "大阪市北区梅田1-1");
    let cleared = h
        .service
        .edit_company(
            &t,
            &m.id,
            CompanyPatch {
                prefecture: Some(None),
                industry: Some(None),
                name: Some(" 新社名 ".into()),
                ..company_patch(p.version)
            },
        )
        .await
        .unwrap();
    assert_eq!(cleared.value.prefecture, None);
    assert_eq!(cleared.value.industry, None);
    assert_eq!(cleared.value.name, "新社名");
    // A new address with a disagreeing prefecture; an unknown prefecture alone.
    for patch in [
        CompanyPatch {
            address: Some("東京都港区".into()),
            prefecture: Some(Some("大阪府".into())),
            ..company_patch(cleared.version)
        },
        CompanyPatch {
            prefecture: Some(Some("ニューヨーク".into())),
            ..company_patch(cleared.version)
        },
    ] {
        assert_eq!(
            invalid_fields(h.service.edit_company(&t, &m.id, patch).await),
            ["prefecture"]
        );
    }
    // Stale and zero versions.
    let stale = h
        .service
        .edit_company(
            &t,
            &m.id,
            CompanyPatch {
                name: Some("x".into()),
                ..company_patch(c.version)
            },
        )
        .await;
    assert!(
        matches!(stale, Err(ServiceError::Conflict { what: "company", current: Some(v), .. }) if v == cleared.version),
        "{stale:?}"
    );
    assert_eq!(
        invalid_fields(
            h.service
                .edit_company(&t, &m.id, company_patch(Version(0)))
                .await
        ),
        ["version"]
    );
}

#[tokio::test]
async fn the_company_search_filters_by_prefecture_industry_and_name_and_pages() {
    let h = Harness::new();
    let t = tenant("t1");
    let tokyo = h
        .company_in(&t, "東京精密工業", "東京都八王子市", Some("製造業"))
        .await;
    let tokyo_it = h
        .company_in(
            &t,
            "東京システム",
            "〒100-0005 東京都千代田区",
            Some("情報通信"),
        )
        .await;
    let osaka = h
        .company_in(&t, "大阪物産", "大阪市北区梅田", Some("卸売"))
        .await;
    h.company_in(&tenant("t2"), "東京の他社", "東京都港区", Some("製造業"))
        .await;
    let search = |s: CompanySearch| {
        let h = &h;
        let t = &t;
        async move {
            let (found, total, next) = h.service.search_companies(t, s, None).await.unwrap();
            let mut ids: Vec<String> = found.into_iter().map(|(_, c)| c.id).collect();
            ids.sort();
            (ids, total, next)
        }
    };
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    let (ids, total, _) = search(CompanySearch {
        prefectures: vec!["東京".into()],
        ..CompanySearch::default()
    })
    .await;
    assert_eq!((ids, total), (sorted(vec![&tokyo.id, &tokyo_it.id]), 2));
    let (ids, _, _) = search(CompanySearch {
        prefectures: vec!["東京都".into(), "大阪".into()],
        industries: vec!["製造業".into(), "卸売".into()],
        ..CompanySearch::default()
    })
    .await;
    assert_eq!(ids, sorted(vec![&tokyo.id, &osaka.id]));
    let (ids, _, _) = search(CompanySearch {
        text: Some("システム".into()),
        ..CompanySearch::default()
    })
    .await;
    assert_eq!(ids, std::slice::from_ref(&tokyo_it.id));
    // Pages of one, following the cursor: every company of the tenant once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (found, total, next) = h
            .service
            .search_companies(
                &t,
                CompanySearch {
                    limit: Some(1),
                    cursor,
                    ..CompanySearch::default()
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(total, 3);
        seen.extend(found.into_iter().map(|(_, c)| c.id));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, sorted(vec![&tokyo.id, &tokyo_it.id, &osaka.id]));
    // Bad filters name their field.
    for (s, field) in [
        (
            CompanySearch {
                prefectures: vec!["ニューヨーク".into()],
                ..CompanySearch::default()
            },
            "prefecture",
        ),
        (
            CompanySearch {
                limit: Some(0),
                ..CompanySearch::default()
            },
            "limit",
        ),
        (
            CompanySearch {
                cursor: Some("nope".into()),
                ..CompanySearch::default()
            },
            "cursor",
        ),
    ] {
        assert_eq!(
            invalid_fields(h.service.search_companies(&t, s, None).await),
            [field]
        );
    }
}

/// Regression: an edit of the prefecture alone did not check it against the kept
/// address, so a company created at "大阪市北区梅田" (大阪府, read from the city) could be
/// moved to 京都府 while its address still named 大阪市; creating it that way is refused.
#[tokio::test]
async fn a_prefecture_edited_alone_must_agree_with_the_kept_address() {
    let h = Harness::new();
    let t = tenant("t1");
    let c = h
        .service
        .create_company(&t, new_company("大阪物産", "大阪市北区梅田1-1", None))
        .await
        .unwrap();
    assert_eq!(
        invalid_fields(
            h.service
                .create_company(
                    &t,
                    new_company("大阪物産", "大阪市北区梅田1-1", Some("京都府"))
                )
                .await
        ),
        ["prefecture"]
    );
    assert_eq!(
        invalid_fields(
            h.service
                .edit_company(
                    &t,
                    &c.value.id,
                    CompanyPatch {
                        prefecture: Some(Some("京都府".into())),
                        ..company_patch(c.version)
                    },
                )
                .await
        ),
        ["prefecture"]
    );
    // Agreeing (given without its suffix) is fine; an address that does not name a
    // prefecture takes any.
    let same = h
        .service
        .edit_company(
            &t,
            &c.value.id,
            CompanyPatch {
                prefecture: Some(Some("大阪".into())),
                ..company_patch(c.version)
            },
        )
        .await
        .unwrap();
    assert_eq!(same.value.prefecture.as_deref(), Some("大阪府"));
    let other = h.company(&t, "会社", "千代田区丸の内").await;
    let (v, _) = h.service.company(&t, &other.id).await.unwrap();
    let moved = h
        .service
        .edit_company(
            &t,
            &other.id,
            CompanyPatch {
                prefecture: Some(Some("東京".into())),
                ..company_patch(v)
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.value.prefecture.as_deref(), Some("東京都"));
    assert_eq!(moved.value.address, "千代田区丸の内");
}
