//! The 47 prefectures (都道府県) of Japan, and splitting one off the start of an address:
//! companies keep it as its own field. This is the one rule every path uses: the API's
//! company create/edit and the migration's `prefecture` / `strip_prefecture` transforms
//! both call [`split_address`], so the same address gives the same prefecture and the
//! same remainder whichever way it arrives.
//!
//! [`split_address`] normalizes (NFKC, so full-width digits, letters, hyphens and the
//! ideographic space become ASCII; then trim), skips a leading postal code (`〒100-0005`,
//! `100-0005`, `〒1000005`, with any of the common dash characters), applies [`split`] and
//! trims the remainder. [`split`] never guesses:
//!
//! 1. It starts with a prefecture's full name (`東京都`, `北海道`, `大阪府`, `神奈川県`, ...):
//!    that prefecture; the rest is what follows the name.
//! 2. It is a prefecture's name without suffix and nothing else (`京都`, `大阪`, `福島`), or
//!    that name followed by whitespace (`大阪 北区梅田`): that prefecture, as
//!    [`canonical`] reads it; the rest is what follows the whitespace.
//! 3. It starts with a prefecture's name without suffix followed by `市`, and that city
//!    exists with the prefecture's name (`大阪市`, `京都市`, `千葉市`, ... 31 such cities,
//!    each in the prefecture of the same name), or it starts with `大阪狭山市` (the one
//!    other city starting with its prefecture's name): that prefecture; the rest is the
//!    whole address, since the city name is part of it.
//! 4. It starts with `東京` (no municipality name starts with it): 東京都; the rest follows
//!    `東京` (`東京新宿区` → 東京都 + `新宿区`).
//! 5. It starts with a three-character name without suffix (`神奈川`, `和歌山`, `鹿児島`): that
//!    prefecture. If 市/区/町/村/郡 follows, the name belongs to a municipality of that
//!    prefecture (`神奈川区`, `鹿児島郡`) and the rest is the whole address; otherwise the
//!    rest follows the name.
//! 6. Anything else has no prefecture (null) and the rest is the whole address:
//!    `札幌市...` cannot be placed without a gazetteer, and a two-character name without
//!    suffix followed by anything but `市` is ambiguous (`京都郡` is in Fukuoka, `福島区` in
//!    Osaka, `石川郡` in Fukushima, `宮城野区` in Sendai, `大阪堺市` may be a typo of
//!    anything).

use unicode_normalization::UnicodeNormalization;

/// The 47 prefectures in JIS X 0401 order, with their suffix.
pub const PREFECTURES: [&str; 47] = [
    "北海道",
    "青森県",
    "岩手県",
    "宮城県",
    "秋田県",
    "山形県",
    "福島県",
    "茨城県",
    "栃木県",
    "群馬県",
    "埼玉県",
    "千葉県",
    "東京都",
    "神奈川県",
    "新潟県",
    "富山県",
    "石川県",
    "福井県",
    "山梨県",
    "長野県",
    "岐阜県",
    "静岡県",
    "愛知県",
    "三重県",
    "滋賀県",
    "京都府",
    "大阪府",
    "兵庫県",
    "奈良県",
    "和歌山県",
    "鳥取県",
    "島根県",
    "岡山県",
    "広島県",
    "山口県",
    "徳島県",
    "香川県",
    "愛媛県",
    "高知県",
    "福岡県",
    "佐賀県",
    "長崎県",
    "熊本県",
    "大分県",
    "宮崎県",
    "鹿児島県",
    "沖縄県",
];

/// Prefectures whose name without suffix followed by 市 is a city in that prefecture.
pub const SAME_NAME_CITIES: [&str; 31] = [
    "青森県",
    "秋田県",
    "山形県",
    "福島県",
    "栃木県",
    "千葉県",
    "新潟県",
    "富山県",
    "福井県",
    "山梨県",
    "長野県",
    "岐阜県",
    "静岡県",
    "京都府",
    "大阪府",
    "奈良県",
    "和歌山県",
    "鳥取県",
    "岡山県",
    "広島県",
    "山口県",
    "徳島県",
    "高知県",
    "福岡県",
    "佐賀県",
    "長崎県",
    "熊本県",
    "大分県",
    "宮崎県",
    "鹿児島県",
    "沖縄県",
];

/// A prefecture's name without its suffix (北海道 keeps its name: `北海` is not used).
pub fn stem(full: &str) -> &str {
    if full == "北海道" {
        return full;
    }
    full.char_indices()
        .last()
        .map(|(i, _)| &full[..i])
        .unwrap_or(full)
}

/// Splits an address into its prefecture (if one can be told without guessing) and the
/// rest; see the module docs for the rule. `address` should already be normalized:
/// callers use [`split_address`].
pub fn split(address: &str) -> (Option<&'static str>, &str) {
    for full in PREFECTURES {
        if let Some(rest) = address.strip_prefix(full) {
            return (Some(full), rest);
        }
    }
    for full in PREFECTURES {
        if let Some(after) = address.strip_prefix(stem(full)) {
            if after.is_empty() {
                return (Some(full), after);
            }
            if after.starts_with(char::is_whitespace) {
                return (Some(full), after.trim_start());
            }
        }
    }
    for full in SAME_NAME_CITIES {
        if let Some(after) = address.strip_prefix(stem(full)) {
            if after.starts_with('市') {
                return (Some(full), address);
            }
        }
    }
    if address.starts_with("大阪狭山市") {
        return (Some("大阪府"), address);
    }
    if let Some(rest) = address.strip_prefix("東京") {
        return (Some("東京都"), rest);
    }
    for full in ["神奈川県", "和歌山県", "鹿児島県"] {
        if let Some(after) = address.strip_prefix(stem(full)) {
            return if after.starts_with(['市', '区', '町', '村', '郡']) {
                (Some(full), address)
            } else {
                (Some(full), after)
            };
        }
    }
    (None, address)
}

/// The official name of a prefecture given with or without its suffix ("東京" → "東京都"),
/// or `None` if `name` is not one.
pub fn canonical(name: &str) -> Option<&'static str> {
    let name: String = name.trim().nfkc().collect();
    PREFECTURES
        .iter()
        .copied()
        .find(|p| *p == name || stem(p) == name)
}

/// An address split into its prefecture (official name) and the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitAddress {
    pub prefecture: Option<&'static str>,
    /// The address after the prefecture (and after a leading postal code), normalized
    /// (NFKC) and trimmed; the whole address when the prefecture was read from a city of
    /// the same name.
    pub rest: String,
}

/// The rule every path uses: normalizes an address (NFKC, trim), skips a leading postal
/// code and splits its prefecture off with [`split`]; the rest is trimmed.
pub fn split_address(address: &str) -> SplitAddress {
    // Most addresses are already NFKC (the migration splits millions): no copy then.
    let normalized: std::borrow::Cow<str> =
        match unicode_normalization::is_nfkc_quick(address.chars()) {
            unicode_normalization::IsNormalized::Yes => address.into(),
            _ => address.nfkc().collect::<String>().into(),
        };
    let text = strip_postal_code(normalized.trim()).trim_start();
    let (prefecture, rest) = split(text);
    SplitAddress {
        prefecture,
        rest: rest.trim().to_string(),
    }
}

/// Dashes seen between the two halves of a postal code after NFKC (which maps the
/// full-width hyphen-minus to `-` but leaves these alone).
const DASHES: [char; 9] = [
    '-', '\u{2010}', '\u{2011}', '\u{2012}', '\u{2013}', '\u{2014}', '\u{2015}', '\u{2212}',
    '\u{30fc}',
];

/// Removes a leading `〒123-4567`, `123-4567` or `〒1234567` (NFKC has already made the
/// digits ASCII). A code must end there: `123-45678` is not one and stays.
fn strip_postal_code(text: &str) -> &str {
    let marked = text.strip_prefix('〒').map(str::trim_start);
    let body = marked.unwrap_or(text);
    let leading_digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let after = match leading_digits(body) {
        3 => body[3..]
            .strip_prefix(DASHES)
            .filter(|tail| leading_digits(tail) == 4)
            .map(|tail| &tail[4..]),
        // Seven digits without a dash only after the 〒 mark.
        7 if marked.is_some() => Some(&body[7..]),
        _ => None,
    };
    match after {
        Some(rest) if !rest.starts_with(DASHES) => rest,
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn full_names_split_for_all_47() {
        for p in PREFECTURES {
            let a = format!("{p}中央区1-2-3");
            assert_eq!(split(&a), (Some(p), "中央区1-2-3"), "{a}");
            assert_eq!(split(p), (Some(p), ""));
        }
        assert_eq!(PREFECTURES.len(), 47);
    }

    #[test]
    fn same_name_cities_keep_the_city() {
        for p in SAME_NAME_CITIES {
            let a = format!("{}市中央1-1", stem(p));
            assert_eq!(split(&a), (Some(p), a.as_str()), "{a}");
        }
    }

    #[test]
    fn tricky_addresses() {
        assert_eq!(
            split("東京新宿区西新宿2-8-1"),
            (Some("東京都"), "新宿区西新宿2-8-1")
        );
        assert_eq!(split("東京都千代田区"), (Some("東京都"), "千代田区"));
        assert_eq!(
            split("大阪市北区梅田1"),
            (Some("大阪府"), "大阪市北区梅田1")
        );
        assert_eq!(split("京都市中京区"), (Some("京都府"), "京都市中京区"));
        assert_eq!(
            split("京都府京都市中京区"),
            (Some("京都府"), "京都市中京区")
        );
        assert_eq!(
            split("北海道札幌市中央区"),
            (Some("北海道"), "札幌市中央区")
        );
        assert_eq!(split("札幌市中央区北1条"), (None, "札幌市中央区北1条"));
        assert_eq!(split("神奈川横浜市西区"), (Some("神奈川県"), "横浜市西区"));
        assert_eq!(split("神奈川区反町1"), (Some("神奈川県"), "神奈川区反町1"));
        assert_eq!(
            split("鹿児島郡三島村"),
            (Some("鹿児島県"), "鹿児島郡三島村")
        );
        assert_eq!(split("和歌山市"), (Some("和歌山県"), "和歌山市"));
        // Ambiguous two-character names without suffix are not guessed.
        assert_eq!(split("福島区海老江"), (None, "福島区海老江"));
        assert_eq!(split("石川郡石川町"), (None, "石川郡石川町"));
        assert_eq!(split("宮城野区五輪"), (None, "宮城野区五輪"));
        assert_eq!(split("大阪堺市"), (None, "大阪堺市"));
        assert_eq!(split(""), (None, ""));
    }

    #[test]
    fn canonical_names_with_and_without_suffix() {
        for p in PREFECTURES {
            assert_eq!(canonical(p), Some(p));
            assert_eq!(canonical(stem(p)), Some(p));
        }
        assert_eq!(canonical("ニューヨーク"), None);
    }

    #[test]
    fn addresses_are_normalized_and_postal_codes_skipped() {
        let s = split_address("〒１６０－００２２　東京都新宿区新宿３丁目");
        assert_eq!(s.prefecture, Some("東京都"));
        assert_eq!(s.rest, "新宿区新宿3丁目");
        let s = split_address(" 大阪市北区梅田1 ");
        assert_eq!(
            (s.prefecture, s.rest.as_str()),
            (Some("大阪府"), "大阪市北区梅田1")
        );
        assert_eq!(split_address("札幌市中央区").prefecture, None);
    }

    #[test]
    fn bare_names_without_suffix_only_where_unambiguous() {
        let sa = |a: &str| {
            let s = split_address(a);
            (s.prefecture, s.rest)
        };
        assert_eq!(sa("京都"), (Some("京都府"), String::new()));
        assert_eq!(sa("大阪"), (Some("大阪府"), String::new()));
        assert_eq!(sa("　大阪　"), (Some("大阪府"), String::new()));
        assert_eq!(sa("東京"), (Some("東京都"), String::new()));
        assert_eq!(sa("京都 中京区"), (Some("京都府"), "中京区".into()));
        assert_eq!(sa("大阪　北区梅田"), (Some("大阪府"), "北区梅田".into()));
        for p in PREFECTURES {
            assert_eq!(sa(stem(p)), (Some(p), String::new()), "{p}");
        }
        // 京都市 is in 京都府, 大阪狭山市 in 大阪府; 京都郡 is in 福岡県.
        assert_eq!(sa("京都市左京区"), (Some("京都府"), "京都市左京区".into()));
        assert_eq!(
            sa("大阪狭山市狭山1"),
            (Some("大阪府"), "大阪狭山市狭山1".into())
        );
        assert_eq!(sa("京都郡苅田町"), (None, "京都郡苅田町".into()));
        assert_eq!(sa("京都中京区"), (None, "京都中京区".into()));
        assert_eq!(sa("福島区海老江"), (None, "福島区海老江".into()));
        // 東京都 is a full name first: 都 is not left in the rest.
        assert_eq!(sa("東京都"), (Some("東京都"), String::new()));
        assert_eq!(sa("東京 港区"), (Some("東京都"), "港区".into()));
    }

    #[test]
    fn postal_codes_in_every_form_are_skipped() {
        for a in [
            "〒100-0005 東京都千代田区丸の内",
            "〒100-0005東京都千代田区丸の内",
            "100-0005 東京都千代田区丸の内",
            "〒 100-0005　東京都千代田区丸の内",
            "〒１００－０００５　東京都千代田区丸の内",
            "１００－０００５ 東京都千代田区丸の内",
            "〒100ー0005 東京都千代田区丸の内",
            "〒100\u{2212}0005 東京都千代田区丸の内",
            "〒1000005 東京都千代田区丸の内",
            " \t〒100-0005 東京都千代田区丸の内 \n",
        ] {
            let s = split_address(a);
            assert_eq!(
                (s.prefecture, s.rest.as_str()),
                (Some("東京都"), "千代田区丸の内"),
                "{a:?}"
            );
        }
        // Not postal codes: kept as written.
        for a in [
            "100-00051 東京都",
            "1000005 東京都",
            "10-0005 東京都",
            "100-0005-1 東京都",
        ] {
            assert_eq!(split_address(a).prefecture, None, "{a:?}");
            assert_eq!(split_address(a).rest, a, "{a:?}");
        }
        assert_eq!(split_address("〒100-0005").rest, "");
        assert_eq!(split_address("〒").rest, "〒");
    }

    /// Text NFKC leaves as it is, starting with neither whitespace nor a digit.
    fn plain_rest() -> impl Strategy<Value = String> {
        "([一-龠ぁ-んァ-ヶa-zA-Z][一-龠ぁ-んァ-ヶa-zA-Z0-9 -]{0,15})?"
            .prop_map(|s| s.trim_end().to_string())
    }

    proptest! {
        #[test]
        fn split_address_finds_a_full_name_behind_any_postal_code_and_space(
            i in 0usize..47,
            rest in plain_rest(),
            code in prop::sample::select(vec!["", "〒100-0005", "100-0005 ", "〒１００－０００５", "〒1000005"]),
            before in prop::sample::select(vec!["", " ", "\u{3000}", "\t "]),
            between in prop::sample::select(vec!["", " ", "\u{3000}"]),
            after in prop::sample::select(vec!["", " ", "\u{3000}", "\n"]),
        ) {
            let p = PREFECTURES[i];
            let a = format!("{before}{code}{between}{p}{rest}{after}");
            let s = split_address(&a);
            prop_assert_eq!(s.prefecture, Some(p));
            prop_assert_eq!(s.rest, rest.trim());
        }

        #[test]
        fn split_address_is_stable_on_its_rest(a in "\\PC{0,16}") {
            // Splitting the rest again never finds another prefecture in the part that
            // was already split off, and never changes a rest without one.
            let first = split_address(&a);
            let again = split_address(&first.rest);
            if again.prefecture.is_none() {
                prop_assert_eq!(again.rest, first.rest);
            }
        }

        #[test]
        fn any_rest_after_a_full_name_is_kept(i in 0usize..47, rest in "\\PC{0,20}") {
            let p = PREFECTURES[i];
            let a = format!("{p}{rest}");
            prop_assert_eq!(split(&a), (Some(p), rest.as_str()));
        }

        #[test]
        fn split_only_ever_removes_a_prefecture_name(a in "\\PC{0,12}") {
            let (p, rest) = split(&a);
            prop_assert!(a.ends_with(rest));
            let removed = &a[..a.len() - rest.len()];
            match p {
                None => prop_assert_eq!(removed, ""),
                Some(p) => prop_assert!(
                    removed.is_empty()
                        || removed == p
                        || removed.strip_prefix(stem(p)).is_some_and(|ws| ws.trim().is_empty())
                ),
            }
        }
    }
}
