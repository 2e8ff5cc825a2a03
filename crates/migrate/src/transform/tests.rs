use super::*;
use crate::spec::{Column, FieldRef};
use proptest::prelude::*;

fn column(ty: SqlType, steps: Vec<Step>) -> Column {
    Column {
        name: "c".into(),
        ty,
        from: FieldRef::Property("c".into()),
        required: false,
        default: None,
        steps,
        map: None,
        description: None,
        min: None,
        max: None,
    }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[test]
fn steps() {
    assert_eq!(apply(&Step::Trim, s("\u{3000} a b \n")).unwrap(), s("a b"));
    assert_eq!(
        apply(&Step::Nfkc, s("ＡＢＣ１２３ｱｲ")).unwrap(),
        s("ABC123アイ")
    );
    assert_eq!(apply(&Step::NullIfEmpty, s("")).unwrap(), None);
    assert_eq!(apply(&Step::NullIfEmpty, s(" ")).unwrap(), s(" "));
    assert_eq!(apply(&Step::Lower, s("A@B.JP")).unwrap(), s("a@b.jp"));
    assert_eq!(apply(&Step::Upper, s("ab")).unwrap(), s("AB"));
    assert_eq!(
        apply(&Step::Prefecture, s("東京都港区")).unwrap(),
        s("東京都")
    );
    assert_eq!(apply(&Step::Prefecture, s("札幌市")).unwrap(), None);
    assert_eq!(
        apply(&Step::StripPrefecture, s("東京都港区")).unwrap(),
        s("港区")
    );
    assert_eq!(apply(&Step::Trim, None).unwrap(), None);
}

#[test]
fn dates() {
    let d = Step::ParseDate(DateFormats::new(vec!["%Y/%m/%d".into(), "%Y-%m-%d".into()]).unwrap());
    assert_eq!(apply(&d, s("2001/4/1")).unwrap(), s("2001-04-01"));
    assert_eq!(apply(&d, s("2001-04-01")).unwrap(), s("2001-04-01"));
    assert_eq!(apply(&d, s("不明")).unwrap_err().kind, RejectKind::BadType);
    let t = Step::ParseDatetime(
        DateFormats::new(vec!["rfc3339".into(), "%Y/%m/%d %H:%M".into()]).unwrap(),
    );
    assert_eq!(
        apply(&t, s("2024-01-15T10:00:00+09:00")).unwrap(),
        s("2024-01-15 01:00:00")
    );
    assert_eq!(
        apply(&t, s("2024/01/15 10:05")).unwrap(),
        s("2024-01-15 10:05:00")
    );
    assert_eq!(apply(&t, s("昨日")).unwrap_err().kind, RejectKind::BadType);
    let d = Step::ParseDate(DateFormats::new(vec!["rfc3339".into()]).unwrap());
    assert_eq!(
        apply(&d, s("2024-01-15T01:00:00+09:00")).unwrap(),
        s("2024-01-15")
    );
}

#[test]
fn casts_check_and_canonicalize() {
    assert_eq!(cast("007".to_string(), SqlType::BigInt).unwrap(), "7");
    assert_eq!(
        cast("1,000万".to_string(), SqlType::BigInt)
            .unwrap_err()
            .kind,
        RejectKind::BadType
    );
    assert_eq!(
        cast("3000000000".to_string(), SqlType::Int)
            .unwrap_err()
            .kind,
        RejectKind::OutOfRange
    );
    assert_eq!(cast("YES".to_string(), SqlType::Boolean).unwrap(), "1");
    assert_eq!(cast("false".to_string(), SqlType::Boolean).unwrap(), "0");
    assert_eq!(
        cast("あいう".to_string(), SqlType::Varchar(3)).unwrap(),
        "あいう"
    );
    assert_eq!(
        cast("あいうえ".to_string(), SqlType::Varchar(3))
            .unwrap_err()
            .kind,
        RejectKind::TooLong
    );
    assert_eq!(
        cast("2024-02-30".to_string(), SqlType::Date)
            .unwrap_err()
            .kind,
        RejectKind::BadType
    );
    assert_eq!(
        cast("0999-01-01".to_string(), SqlType::Date)
            .unwrap_err()
            .kind,
        RejectKind::BadType
    );
    assert_eq!(
        cast("2024-01-15T10:00:00Z".to_string(), SqlType::DateTime).unwrap(),
        "2024-01-15 10:00:00"
    );
    assert_eq!(
        cast("x".repeat(65_536), SqlType::Text).unwrap_err().kind,
        RejectKind::TooLong
    );
}

#[test]
fn column_pipeline_order() {
    let mut c = column(SqlType::Varchar(8), vec![Step::Trim, Step::NullIfEmpty]);
    c.map = Some([("商談中".to_string(), "open".to_string())].into());
    assert_eq!(column_value(&c, s(" 商談中 ")).unwrap(), s("open"));
    assert_eq!(
        column_value(&c, s("保留")).unwrap_err().kind,
        RejectKind::UnknownValue
    );
    assert_eq!(column_value(&c, s("  ")).unwrap(), None);
    c.required = true;
    assert_eq!(
        column_value(&c, s("  ")).unwrap_err().kind,
        RejectKind::MissingRequired
    );
    c.default = s("open");
    assert_eq!(column_value(&c, None).unwrap(), s("open"));
}

proptest! {
    #[test]
    fn trim_and_nfkc_are_idempotent(v in "\\PC{0,20}") {
        let once = apply(&Step::Trim, apply(&Step::Nfkc, Some(v.clone())).unwrap()).unwrap();
        let twice = apply(&Step::Trim, apply(&Step::Nfkc, once.clone()).unwrap()).unwrap();
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn bigint_cast_round_trips(n in any::<i64>()) {
        prop_assert_eq!(cast(n.to_string(), SqlType::BigInt).unwrap(), n.to_string());
    }

    /// An integer cast keeps canonical text as it is and prints any other spelling as
    /// the number it parses to.
    #[test]
    fn integer_casts_print_the_number(v in "[+-]?0{0,3}[0-9]{1,19}") {
        match v.parse::<i64>() {
            Ok(n) => prop_assert_eq!(cast(v, SqlType::BigInt).unwrap(), n.to_string()),
            Err(_) => prop_assert!(cast(v, SqlType::BigInt).is_err()),
        }
    }

    /// The quick check's shortcut gives exactly Unicode NFKC.
    #[test]
    fn the_nfkc_step_is_unicode_nfkc(v in "(\\PC|[ぁ-ゟ゠-ヿ一-龥、。〃々〆〇〈〉「」『』【】・ｱ-ﾝﾞﾟＡ-Ｚ０-９①-⑳㍻\u{3099}\u{309a}])*") {
        let expected: String = unicode_normalization::UnicodeNormalization::nfkc(v.as_str()).collect();
        prop_assert_eq!(apply(&Step::Nfkc, Some(v)).unwrap(), Some(expected));
    }

    #[test]
    fn varchar_accepts_exactly_up_to_its_length(v in "\\PC{0,12}", n in 1u32..10) {
        let fits = v.chars().count() <= n as usize;
        prop_assert_eq!(cast(v.clone(), SqlType::Varchar(n)).is_ok(), fits);
    }

    /// The direct parsers of the canonical shapes agree with chrono's general parser on
    /// every string of that shape, valid dates or not.
    #[test]
    fn canonical_date_shapes_parse_like_chrono(
        y in 0u32..10000, m in 0u32..14, d in 0u32..33,
        h in 0u32..26, mi in 0u32..62, sec in 0u32..62, t in any::<bool>(),
    ) {
        let date = format!("{y:04}-{m:02}-{d:02}");
        prop_assert_eq!(
            canonical_date(&date),
            NaiveDate::parse_from_str(&date, "%Y-%m-%d").ok()
        );
        let sep = if t { 'T' } else { ' ' };
        let datetime = format!("{date}{sep}{h:02}:{mi:02}:{sec:02}");
        let general = NaiveDateTime::parse_from_str(&datetime, &format!("%Y-%m-%d{sep}%H:%M:%S"))
            .ok()
            .filter(|d| d.and_utc().timestamp_subsec_nanos() < 1_000_000_000);
        prop_assert_eq!(canonical_datetime(&datetime), general);
        if let Some(d) = general {
            let canonical = d.format("%Y-%m-%d %H:%M:%S").to_string();
            prop_assert_eq!(&sql_datetime(&d), &canonical);
            let in_range = (1000..=9999).contains(&d.year());
            prop_assert_eq!(cast(datetime, SqlType::DateTime).ok(), in_range.then_some(canonical));
        }
        if let Some(d) = canonical_date(&date) {
            let in_range = (1000..=9999).contains(&d.year());
            prop_assert_eq!(cast(date.clone(), SqlType::Date).ok(), in_range.then_some(date));
        }
    }
}

proptest! {
    /// The hand-written SQL datetime text is what `format!` printed, for any date and
    /// time chrono holds (years outside 0-9999 included).
    #[test]
    fn sql_datetime_prints_as_format_did(
        days in -4_000_000i32..4_000_000,
        secs in 0u32..86_400,
    ) {
        let date = NaiveDate::from_num_days_from_ce_opt(days).unwrap();
        let d = date.and_time(chrono::NaiveTime::from_num_seconds_from_midnight_opt(secs, 0).unwrap());
        let expected = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            d.year(), d.month(), d.day(), d.hour(), d.minute(), d.second()
        );
        prop_assert_eq!(sql_datetime(&d), expected.clone());
        prop_assert_eq!(sql_date(&date), expected[..expected.len() - 9].to_string());
    }

    /// A compiled format parses exactly as chrono's string-format functions do.
    #[test]
    fn compiled_formats_parse_as_chrono_does(
        days in 0i32..3_700_000,
        secs in 0u32..86_400,
        offset_min in -720i32..840,
        fmt in prop::sample::select(vec![
            "%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M:%S%z", "%d.%m.%Y %H:%M:%S", "%Y%m%d%H%M%S",
        ]),
        garble in prop::bool::weighted(0.2),
    ) {
        let date = NaiveDate::from_num_days_from_ce_opt(days).unwrap();
        let d = date.and_time(chrono::NaiveTime::from_num_seconds_from_midnight_opt(secs, 0).unwrap());
        let offset = chrono::FixedOffset::east_opt(offset_min * 60).unwrap();
        let mut text = chrono::TimeZone::from_utc_datetime(&offset, &d).format(fmt).to_string();
        if garble {
            text.insert(text.len() / 2, 'x');
        }
        let expected = DateTime::parse_from_str(&text, fmt)
            .map(|d| d.naive_utc())
            .or_else(|_| NaiveDateTime::parse_from_str(&text, fmt))
            .ok()
            .map(|d| sql_datetime(&d));
        let formats = DateFormats::new(vec![fmt.to_string()]).unwrap();
        prop_assert_eq!(parse_datetime(&text, &formats).ok(), expected);
        let expected_date = NaiveDate::parse_from_str(&text, fmt).ok().map(|d| sql_date(&d));
        prop_assert_eq!(parse_date(&text, &formats).ok(), expected_date);
    }
}

#[test]
fn signs_and_ranges_are_checked_with_reasons() {
    let r = cast("-5".to_string(), SqlType::BigIntUnsigned).unwrap_err();
    assert_eq!(r.kind, RejectKind::OutOfRange);
    assert_eq!(
        r.detail,
        "`-5` is negative bigint unsigned (0..=18446744073709551615)"
    );
    assert_eq!(
        cast("18446744073709551615".to_string(), SqlType::BigIntUnsigned).unwrap(),
        "18446744073709551615"
    );
    for (v, ty) in [
        ("18446744073709551616", SqlType::BigIntUnsigned),
        ("4294967296", SqlType::IntUnsigned),
        ("-1", SqlType::IntUnsigned),
        ("9223372036854775808", SqlType::BigInt),
        (
            "123456789012345678901234567890123456789012345",
            SqlType::BigInt,
        ),
    ] {
        assert_eq!(
            cast(v.to_string(), ty).unwrap_err().kind,
            RejectKind::OutOfRange,
            "{v}"
        );
    }
    assert_eq!(cast("007".to_string(), SqlType::IntUnsigned).unwrap(), "7");
    assert_eq!(
        cast("x".to_string(), SqlType::IntUnsigned)
            .unwrap_err()
            .kind,
        RejectKind::BadType
    );

    let mut c = column(SqlType::BigInt, vec![]);
    c.min = Some(0);
    c.max = Some(1_000);
    assert_eq!(column_value(&c, s("1000")).unwrap(), s("1000"));
    assert_eq!(column_value(&c, s("0")).unwrap(), s("0"));
    let r = column_value(&c, s("-5")).unwrap_err();
    assert_eq!(
        (r.kind, r.detail.as_str()),
        (RejectKind::OutOfRange, "-5 is less than the column's min 0")
    );
    let r = column_value(&c, s("1001")).unwrap_err();
    assert_eq!(
        (r.kind, r.detail.as_str()),
        (
            RejectKind::OutOfRange,
            "1001 is more than the column's max 1000"
        )
    );
    assert_eq!(column_value(&c, None).unwrap(), None);
}

proptest! {
    #[test]
    fn bounds_accept_exactly_the_closed_interval(min in -1000i64..1000, len in 0i64..1000, v in -3000i64..3000) {
        let mut c = column(SqlType::BigInt, vec![]);
        c.min = Some(min);
        c.max = Some(min + len);
        let got = column_value(&c, Some(v.to_string()));
        if (min..=min + len).contains(&v) {
            prop_assert_eq!(got.unwrap(), Some(v.to_string()));
        } else {
            prop_assert_eq!(got.unwrap_err().kind, RejectKind::OutOfRange);
        }
    }
}

#[test]
fn decimals_are_exact_or_rejected() {
    let d = |v: &str, p, sc| cast(v.to_string(), SqlType::Decimal(p, sc));
    assert_eq!(d("1.5", 10, 2).unwrap(), "1.50");
    assert_eq!(d("-1.5", 10, 2).unwrap(), "-1.50");
    assert_eq!(d("0012.3400", 6, 2).unwrap(), "12.34");
    assert_eq!(d("100000.0", 10, 2).unwrap(), "100000.00");
    assert_eq!(d("1e5", 10, 0).unwrap(), "100000");
    assert_eq!(d("1.25e-2", 6, 4).unwrap(), "0.0125");
    assert_eq!(d(".5", 3, 1).unwrap(), "0.5");
    assert_eq!(d("-0", 3, 1).unwrap(), "0.0");
    assert_eq!(d("0", 3, 0).unwrap(), "0");
    // Exact for numbers no f64 holds.
    assert_eq!(
        d("12345678901234567890123.45", 30, 2).unwrap(),
        "12345678901234567890123.45"
    );
    let r = d("12345678901234567890123", 20, 0).unwrap_err();
    assert_eq!(r.kind, RejectKind::OutOfRange);
    assert!(
        r.detail.contains("more than 20 digits before the point"),
        "{}",
        r.detail
    );
    let r = d("1.234", 10, 2).unwrap_err();
    assert_eq!(r.kind, RejectKind::BadType);
    assert!(r.detail.contains("would round it"), "{}", r.detail);
    assert_eq!(d("1.230", 10, 2).unwrap(), "1.23");
    for bad in ["", ".", "1,000", "1.2.3", "abc", "1e", "--1"] {
        assert_eq!(
            d(bad, 10, 2).unwrap_err().kind,
            RejectKind::BadType,
            "{bad:?}"
        );
    }
    assert_eq!(d("1e400", 65, 0).unwrap_err().kind, RejectKind::OutOfRange);
    assert_eq!(d("1e-400", 65, 30).unwrap_err().kind, RejectKind::BadType);
}

proptest! {
    /// A decimal cast of an integer-valued number with `s` zeros after the point is the
    /// integer with the point, and MySQL's canonical form reads back as the same value.
    #[test]
    fn decimal_casts_keep_the_value(int in -10_000_000i64..10_000_000, frac in 0u32..1000) {
        let text = format!("{int}.{frac:03}");
        let got = cast(text.clone(), SqlType::Decimal(12, 3)).unwrap();
        let sign = if text.starts_with('-') { "-" } else { "" };
        let expected = format!("{sign}{}.{frac:03}", int.unsigned_abs());
        let expected = if expected == "-0.000" { "0.000".to_string() } else { expected };
        // -0.xyz keeps its sign only when it is not zero.
        prop_assert_eq!(got, expected);
    }
}
