//! The 47 prefectures (都道府県) of Japan and splitting one off the front of an address.
//!
//! Addresses are stored with the prefecture as its own field so that deals can be filtered
//! by region. [`split_address`] finds it after NFKC normalization, with or without its
//! 都/道/府/県 suffix ("東京都新宿区…" and "東京新宿区…" both give 東京都), after an optional
//! postal code ("〒160-0022 東京都…"). An address that starts with neither (a city alone,
//! "札幌市中央区…") has no prefecture: inferring one would need a municipal dictionary and
//! a wrong guess is worse than none.

use unicode_normalization::UnicodeNormalization;

/// Every prefecture by its official name, in the JIS X 0401 code order (01 北海道 … 47 沖縄県).
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

/// The official name of a prefecture given with or without its suffix ("東京" → "東京都"),
/// or `None` if `name` is not one.
pub fn canonical(name: &str) -> Option<&'static str> {
    let name: String = name.trim().nfkc().collect();
    PREFECTURES
        .iter()
        .copied()
        .find(|p| *p == name || bare(p) == name)
}

/// The name without its 都/府/県 suffix. 北海道 keeps its 道: "北海" is not used alone.
fn bare(prefecture: &'static str) -> &'static str {
    if prefecture == "北海道" {
        return prefecture;
    }
    prefecture
        .strip_suffix(['都', '府', '県'])
        .unwrap_or(prefecture)
}

/// An address split into its prefecture (official name) and the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitAddress {
    pub prefecture: Option<&'static str>,
    /// The address after the prefecture (and after a leading postal code), trimmed.
    pub rest: String,
}

/// Splits the prefecture off the front of a Japanese address (see the module docs).
pub fn split_address(address: &str) -> SplitAddress {
    let normalized: String = address.nfkc().collect();
    let text = strip_postal_code(normalized.trim()).trim_start();
    // The full name first ("京都府" before the bare "京都"), then the bare name. The full
    // names are prefix-free among themselves, and no bare name is a prefix of another
    // prefecture's full name except where that full name is matched first.
    for prefecture in PREFECTURES {
        if let Some(rest) = text.strip_prefix(prefecture) {
            return split(prefecture, rest);
        }
    }
    for prefecture in PREFECTURES {
        if let Some(rest) = text.strip_prefix(bare(prefecture)) {
            return split(prefecture, rest);
        }
    }
    SplitAddress {
        prefecture: None,
        rest: text.to_string(),
    }
}

fn split(prefecture: &'static str, rest: &str) -> SplitAddress {
    SplitAddress {
        prefecture: Some(prefecture),
        rest: rest.trim().to_string(),
    }
}

/// Removes a leading "〒123-4567" or "123-4567" (NFKC has already made the digits ASCII).
fn strip_postal_code(text: &str) -> &str {
    let without_mark = text.strip_prefix('〒').unwrap_or(text).trim_start();
    let bytes = without_mark.as_bytes();
    let is_code = bytes.len() >= 8
        && bytes[..3].iter().all(u8::is_ascii_digit)
        && (bytes[3] == b'-')
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
    fn every_prefecture_splits_with_and_without_its_suffix() {
        for p in PREFECTURES {
            let full = split_address(&format!("{p}中央区1-2-3"));
            assert_eq!(full.prefecture, Some(p), "{p}");
            assert_eq!(full.rest, "中央区1-2-3");
            let short = split_address(&format!("{}中央区1-2-3", bare(p)));
            assert_eq!(short.prefecture, Some(p), "bare {p}");
            assert_eq!(short.rest, "中央区1-2-3");
            assert_eq!(canonical(bare(p)), Some(p));
            assert_eq!(canonical(p), Some(p));
        }
    }

    #[test]
    fn kyoto_city_and_tokyo_are_not_confused() {
        assert_eq!(split_address("京都市下京区").prefecture, Some("京都府"));
        assert_eq!(split_address("東京都港区").prefecture, Some("東京都"));
        assert_eq!(split_address("京都府京都市").rest, "京都市");
    }

    #[test]
    fn postal_codes_and_full_width_text_are_handled() {
        let s = split_address("〒１６０－００２２　東京都新宿区新宿３丁目");
        assert_eq!(s.prefecture, Some("東京都"));
        assert_eq!(s.rest, "新宿区新宿3丁目");
    }

    #[test]
    fn an_address_without_a_prefecture_keeps_everything() {
        let s = split_address("札幌市中央区北1条西2丁目");
        assert_eq!(s.prefecture, None);
        assert_eq!(s.rest, "札幌市中央区北1条西2丁目");
        assert_eq!(split_address("").prefecture, None);
    }

    proptest! {
        #[test]
        fn splitting_loses_nothing(p in 0usize..47, rest in "[ぁ-んァ-ン一-龥0-9-]{0,20}") {
            let prefecture = PREFECTURES[p];
            let s = split_address(&format!("{prefecture}{rest}"));
            prop_assert_eq!(s.prefecture, Some(prefecture));
            let expected: String = rest.nfkc().collect();
            prop_assert_eq!(s.rest, expected.trim().to_string());
        }
    }
}
