//! The 47 prefectures (都道府県) of Japan, and splitting one off the start of an address:
//! companies keep it as its own field, and the migration's `prefecture` transform uses the
//! same rule.
//!
//! [`split_address`] normalizes (NFKC, trim, a leading postal code such as `〒160-0022`)
//! and then applies [`split`]. The rule never guesses:
//!
//! 1. It starts with a prefecture's full name (`東京都`, `北海道`, `大阪府`, `神奈川県`, ...):
//!    that prefecture; the rest is what follows the name.
//! 2. It starts with a prefecture's name without suffix followed by `市`, and that city
//!    exists with the prefecture's name (`大阪市`, `京都市`, `千葉市`, ... 31 such cities,
//!    each in the prefecture of the same name): that prefecture; the rest is the whole
//!    address, since the city name is part of it.
//! 3. It starts with `東京` (no municipality name starts with it): 東京都; the rest follows
//!    `東京` (`東京新宿区` → 東京都 + `新宿区`).
//! 4. It starts with a three-character name without suffix (`神奈川`, `和歌山`, `鹿児島`): that
//!    prefecture. If 市/区/町/村/郡 follows, the name belongs to a municipality of that
//!    prefecture (`神奈川区`, `鹿児島郡`) and the rest is the whole address; otherwise the
//!    rest follows the name.
//! 5. Anything else has no prefecture (null) and the rest is the whole address:
//!    `札幌市...` cannot be placed without a gazetteer, and a two-character name without
//!    suffix followed by anything but `市` is ambiguous (`福島区` is in Osaka, `石川郡` in
//!    Fukushima, `宮城野区` in Sendai).

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
/// rest; see the module docs for the rule.
pub fn split(address: &str) -> (Option<&'static str>, &str) {
    for full in PREFECTURES {
        if let Some(rest) = address.strip_prefix(full) {
            return (Some(full), rest);
        }
    }
    for full in SAME_NAME_CITIES {
        if let Some(after) = address.strip_prefix(stem(full)) {
            if after.starts_with('市') {
                return (Some(full), address);
            }
        }
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
    /// The address after the prefecture (and after a leading postal code), trimmed; the
    /// whole address when the prefecture was read from a city of the same name.
    pub rest: String,
}

/// Normalizes an address (NFKC, trim, leading postal code) and splits its prefecture off
/// with [`split`].
pub fn split_address(address: &str) -> SplitAddress {
    let normalized: String = address.nfkc().collect();
    let text = strip_postal_code(normalized.trim()).trim_start();
    let (prefecture, rest) = split(text);
    SplitAddress {
        prefecture,
        rest: rest.trim().to_string(),
    }
}

/// Removes a leading "〒123-4567" or "123-4567" (NFKC has already made the digits ASCII).
fn strip_postal_code(text: &str) -> &str {
    let without_mark = text.strip_prefix('〒').unwrap_or(text).trim_start();
    let bytes = without_mark.as_bytes();
    let is_code = bytes.len() >= 8
        && bytes[..3].iter().all(u8::is_ascii_digit)
        && bytes[3] == b'-'
        && bytes[4..8].iter().all(u8::is_ascii_digit);
    if is_code {
        &without_mark[8..]
    } else {
        text
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

    proptest! {
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
                Some(p) => prop_assert!(removed.is_empty() || removed == p || removed == stem(p)),
            }
        }
    }
}
