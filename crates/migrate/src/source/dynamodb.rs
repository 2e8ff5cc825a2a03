//! A DynamoDB table as a migration source: arbitrary items (not tsunagu's own layout),
//! read with a parallel Scan.
//!
//! The table is split into `segments` Scan segments read at once, each paged with
//! `ExclusiveStartKey` = the previous page's `LastEvaluatedKey` and `ConsistentRead`, into
//! its own file; the files are joined in segment order. Every attribute of an item
//! becomes a property ([`attribute_to_json`]), and the record id is the key: the hash key
//! value, or `hash#range` for a table with a sort key (from `DescribeTable`). Only
//! `DescribeTable` and `Scan` are called: the table is never changed. The client is built
//! like every AWS client of tsunagu, by [`tsunagu_aws::sdk_config`] (region, endpoint,
//! profile, retries with backoff, timeouts; credentials from the default chain).

use super::{node_line, PageWriter};
use crate::error::{Error, Result};
use crate::spec::DynamoConnection;
use aws_sdk_dynamodb::types::{AttributeValue, KeyType};
use aws_sdk_dynamodb::Client;
use base64::Engine;
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A connected DynamoDB source (one client for every table it reads).
#[derive(Clone)]
pub struct DynamoSource {
    client: Client,
    segments: u32,
}

fn dynamo_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("dynamodb source, {what}: {e}"))
}

impl DynamoSource {
    /// Builds the client from a connection whose `${...}` are resolved
    /// ([`super::external::resolve`]); without a region in the spec the SDK's region chain decides
    /// (`AWS_REGION`, the profile, instance metadata). Sends no request.
    pub async fn connect(settings: &DynamoConnection) -> Result<Self> {
        let region = match &settings.region {
            Some(r) => r.clone(),
            None => tsunagu_aws::chain_region(settings.profile.as_deref())
                .await
                .ok_or_else(|| {
                    Error::Other(
                        "dynamodb source: no region; set `region` in its [sources.NAME] or AWS_REGION".into(),
                    )
                })?,
        };
        let mut aws = tsunagu_aws::AwsConfig::new(region);
        aws.endpoint_url = settings.endpoint_url.clone();
        aws.profile = settings.profile.clone();
        let sdk = tsunagu_aws::sdk_config(&aws)
            .await
            .map_err(|e| dynamo_error("configuration", e))?;
        Ok(Self {
            client: Client::new(&sdk),
            segments: settings.segments.max(1),
        })
    }

    /// The hash and (optional) range key attribute names of `table`.
    async fn key_schema(&self, table: &str) -> Result<(String, Option<String>)> {
        let described = self
            .client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| {
                dynamo_error(
                    &format!("describing table `{table}`"),
                    aws_sdk_dynamodb::error::DisplayErrorContext(e),
                )
            })?;
        let schema = described
            .table()
            .map(|t| t.key_schema().to_vec())
            .unwrap_or_default();
        let name = |kind: KeyType| {
            schema
                .iter()
                .find(|k| k.key_type() == &kind)
                .map(|k| k.attribute_name().to_string())
        };
        let hash = name(KeyType::Hash).ok_or_else(|| {
            dynamo_error(&format!("table `{table}`"), "no hash key in its key schema")
        })?;
        Ok((hash, name(KeyType::Range)))
    }

    /// Reads every item of `table` into `path`; returns the items written.
    pub async fn fetch(
        &self,
        table: &str,
        path: &Path,
        progress: &indicatif::ProgressBar,
    ) -> Result<u64> {
        let (hash, range) = self.key_schema(table).await?;
        let parts: Vec<PathBuf> = (0..self.segments)
            .map(|s| path.with_extension(format!("seg{s}.jsonl")))
            .collect();
        let reads = parts.iter().enumerate().map(|(segment, part)| {
            self.read_segment(
                table,
                segment as i32,
                &hash,
                range.as_deref(),
                part,
                progress,
            )
        });
        let counts = futures::future::try_join_all(reads).await?;
        let parts2 = parts.clone();
        let path2 = path.to_path_buf();
        tokio::task::spawn_blocking(move || super::join_parts(&parts2, &path2))
            .await
            .map_err(|e| Error::Other(format!("join task: {e}")))??;
        Ok(counts.into_iter().sum())
    }

    async fn read_segment(
        &self,
        table: &str,
        segment: i32,
        hash: &str,
        range: Option<&str>,
        path: &Path,
        progress: &indicatif::ProgressBar,
    ) -> Result<u64> {
        let mut out = PageWriter::create(path)?;
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(table)
                .segment(segment)
                .total_segments(self.segments as i32)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| {
                    dynamo_error(
                        &format!("scanning `{table}` segment {segment}"),
                        aws_sdk_dynamodb::error::DisplayErrorContext(e),
                    )
                })?;
            let mut lines = Vec::with_capacity(page.items().len());
            for item in page.items() {
                let id = item_id(item, hash, range).ok_or_else(|| {
                    dynamo_error(
                        &format!("table `{table}`"),
                        format!("an item lacks its key attribute `{hash}`"),
                    )
                })?;
                lines.push(node_line(&id, table, item_to_json(item)));
            }
            progress.inc(lines.len() as u64);
            out.write_page(lines).await?;
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        out.finish().await
    }
}

/// A key attribute's value as id text (S as is, N as written, B in base64).
fn key_text(v: &AttributeValue) -> Option<String> {
    match v {
        AttributeValue::S(s) => Some(s.clone()),
        AttributeValue::N(n) => Some(n.clone()),
        AttributeValue::B(b) => Some(base64::engine::general_purpose::STANDARD.encode(b.as_ref())),
        _ => None,
    }
}

/// The record id of an item: `hash`, or `hash#range`.
pub fn item_id(
    item: &HashMap<String, AttributeValue>,
    hash: &str,
    range: Option<&str>,
) -> Option<String> {
    let h = key_text(item.get(hash)?)?;
    match range {
        Some(r) => Some(format!("{h}#{}", key_text(item.get(r)?)?)),
        None => Some(h),
    }
}

/// Every attribute of an item as a JSON object.
pub fn item_to_json(item: &HashMap<String, AttributeValue>) -> Map<String, Value> {
    item.iter()
        .map(|(k, v)| (k.clone(), attribute_to_json(v)))
        .collect()
}

/// An attribute value as JSON: S → string, N → number (as text when JSON's i64 / u64 /
/// f64 cannot hold it exactly, so no digit is lost), BOOL, NULL → null, L / M → array /
/// object, SS / NS / BS → arrays (sorted), B → base64 text. A type this SDK does not know yet
/// becomes null.
pub fn attribute_to_json(v: &AttributeValue) -> Value {
    let b64 = |b: &aws_sdk_dynamodb::primitives::Blob| {
        Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
    };
    match v {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => number(n),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(l) => Value::Array(l.iter().map(attribute_to_json).collect()),
        AttributeValue::M(m) => Value::Object(item_to_json(m)),
        AttributeValue::Ss(ss) => set(ss.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(ns) => set(ns.iter().map(String::as_str).map(number).collect()),
        AttributeValue::B(b) => b64(b),
        AttributeValue::Bs(bs) => set(bs.iter().map(b64).collect()),
        _ => Value::Null,
    }
}

/// A set as an array in a fixed order (sets have none; a fixed one keeps checksums and
/// re-runs stable): sorted by the JSON text of the members.
fn set(mut members: Vec<Value>) -> Value {
    members.sort_by_cached_key(Value::to_string);
    Value::Array(members)
}

/// A DynamoDB number (up to 38 significant digits) as a JSON number when one holds it
/// exactly, else as its text. "Exactly" is judged on the spelling the number is written
/// with later (serde_json's), which breaks ties between equally short spellings
/// differently from `f64`'s Display: 10000000000000.813 would be written ...812.
pub fn number(n: &str) -> Value {
    let t = n.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Value::Number(i.into());
    }
    if let Ok(u) = t.parse::<u64>() {
        return Value::Number(u.into());
    }
    if let (Some(num), Some(digits)) = (
        t.parse::<f64>().ok().and_then(Number::from_f64),
        canonical_decimal(t),
    ) {
        if canonical_decimal(&num.to_string()) == Some(digits) {
            return Value::Number(num);
        }
    }
    Value::String(t.to_string())
}

/// A decimal as (negative, significant digits without leading or trailing zeros,
/// exponent of the first digit), so that `1.50`, `15E-1` and `1.5` compare equal. Zero
/// is `(false, "", 0)`.
fn canonical_decimal(text: &str) -> Option<(bool, String, i64)> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], rest[at + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{int}{frac}");
    let leading = digits.bytes().take_while(|&b| b == b'0').count();
    let significant = digits[leading..].trim_end_matches('0');
    if significant.is_empty() {
        return Some((false, String::new(), 0));
    }
    let exp = int.len() as i64 - leading as i64 + exponent;
    Some((negative, significant.to_string(), exp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::primitives::Blob;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn every_attribute_type_converts() {
        let item: HashMap<String, AttributeValue> = [
            ("s", AttributeValue::S("株式会社".into())),
            ("n", AttributeValue::N("42".into())),
            ("f", AttributeValue::N("1.50".into())),
            (
                "big",
                AttributeValue::N("12345678901234567890123456789".into()),
            ),
            (
                "precise",
                AttributeValue::N("0.1000000000000000000001".into()),
            ),
            ("t", AttributeValue::Bool(true)),
            ("z", AttributeValue::Null(true)),
            (
                "l",
                AttributeValue::L(vec![
                    AttributeValue::N("1".into()),
                    AttributeValue::S("a".into()),
                ]),
            ),
            (
                "m",
                AttributeValue::M([("k".to_string(), AttributeValue::Bool(false))].into()),
            ),
            ("ss", AttributeValue::Ss(vec!["y".into(), "x".into()])),
            ("ns", AttributeValue::Ns(vec!["2.5".into(), "1".into()])),
            ("b", AttributeValue::B(Blob::new(b"hi".to_vec()))),
            ("bs", AttributeValue::Bs(vec![Blob::new(vec![0u8, 255])])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(
            Value::Object(item_to_json(&item)),
            json!({
                "s": "株式会社", "n": 42, "f": 1.5,
                "big": "12345678901234567890123456789",
                "precise": "0.1000000000000000000001",
                "t": true, "z": null, "l": [1, "a"], "m": {"k": false},
                "ss": ["x", "y"], "ns": [1, 2.5], "b": "aGk=", "bs": ["AP8="]
            })
        );
        assert_eq!(item_id(&item, "s", None).as_deref(), Some("株式会社"));
        assert_eq!(
            item_id(&item, "s", Some("n")).as_deref(),
            Some("株式会社#42")
        );
        assert_eq!(item_id(&item, "b", None).as_deref(), Some("aGk="));
        assert_eq!(item_id(&item, "missing", None), None);
        assert_eq!(item_id(&item, "t", None), None);
    }

    #[test]
    fn numbers_keep_every_digit() {
        assert_eq!(number("-7"), json!(-7));
        assert_eq!(
            number("18446744073709551615"),
            json!(18446744073709551615u64)
        );
        assert_eq!(number("1E+2"), json!(100.0));
        assert_eq!(number("0.000"), json!(0.0));
        assert_eq!(
            number("99999999999999999999"),
            json!("99999999999999999999")
        );
        // The nearest f64 is ...0.8125: the JSON writer would spell it ...0.812.
        assert_eq!(number("10000000000000.813"), json!("10000000000000.813"));
        assert_eq!(canonical_decimal("1.50"), canonical_decimal("15E-1"));
        assert_eq!(canonical_decimal("-0.0012"), Some((true, "12".into(), -2)));
    }

    proptest! {
        /// Every i64 is a JSON integer with the same value.
        #[test]
        fn integers_are_numbers(i in any::<i64>()) {
            prop_assert_eq!(number(&i.to_string()), json!(i));
        }

        /// A finite f64 in its shortest spelling is a JSON number with the same value,
        /// unless the JSON writer would spell it otherwise (a tie between two equally
        /// short spellings); then the text is kept as it was.
        #[test]
        fn floats_are_numbers(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let text = f.to_string();
            match number(&text) {
                Value::Number(n) => prop_assert_eq!(n.as_f64(), Some(f), "{}", f),
                Value::String(s) => {
                    prop_assert_eq!(&s, &text);
                    let written = Number::from_f64(f).map(|n| n.to_string());
                    prop_assert_ne!(written.as_deref().and_then(canonical_decimal), canonical_decimal(&text));
                }
                other => prop_assert!(false, "{other:?}"),
            }
        }

        /// Whatever the digits, the value survives: either as a number whose decimal
        /// value is the text's, or as the text itself.
        #[test]
        fn no_digit_is_lost(int in "-?[1-9][0-9]{0,37}", frac in proptest::option::of("[0-9]{1,20}")) {
            let text = match &frac { Some(f) => format!("{int}.{f}"), None => int.clone() };
            match number(&text) {
                Value::String(s) => prop_assert_eq!(s, text),
                Value::Number(n) => prop_assert_eq!(canonical_decimal(&n.to_string()), canonical_decimal(&text)),
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}
