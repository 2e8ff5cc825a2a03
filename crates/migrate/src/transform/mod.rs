//! Column transforms and casts: what turns a source property into a target column value,
//! and the reasons a row is rejected.
//!
//! For each column the order is fixed: read the raw value (`from`), apply the
//! `transforms` steps in the order written, look the result up in the value `map` (an
//! unknown value rejects the row), fill in the `default` when the value is null, check
//! `required`, then [`cast`] to the column type (which also canonicalizes: `"007"` as
//! bigint is `7`, booleans are `0`/`1`, dates `YYYY-MM-DD`, datetimes
//! `YYYY-MM-DD HH:MM:SS` in UTC; an integer outside its type, a negative one in an
//! unsigned column included, is `out_of_range`), then the column's `min` / `max`.

pub mod prefecture;

use crate::spec::{Column, SqlType};
use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike};
use serde::Serialize;
use unicode_normalization::UnicodeNormalization;

/// One transform step of a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Strips leading and trailing whitespace (ideographic space included).
    Trim,
    /// Unicode NFKC normalization (full-width letters and digits become ASCII, half-width
    /// katakana become full-width).
    Nfkc,
    /// An empty string becomes null.
    NullIfEmpty,
    Lower,
    Upper,
    /// The prefecture (都道府県) an address starts with, or null: the domain's rule, the
    /// one the API uses (see [`prefecture`]).
    Prefecture,
    /// The address without its leading postal code and prefecture, normalized and
    /// trimmed: the domain's rule, the one the API uses (see [`prefecture`]).
    StripPrefecture,
    /// Parses a date with the first matching chrono format; output `YYYY-MM-DD`.
    ParseDate(DateFormats),
    /// Parses a date and time with the first matching chrono format (`rfc3339` accepted
    /// as a name); offsets are converted to UTC; output `YYYY-MM-DD HH:MM:SS`.
    ParseDatetime(DateFormats),
}

/// The formats of a `parse_date` / `parse_datetime` step, as written and compiled once
/// (chrono would otherwise interpret the format string again for every value).
#[derive(Debug, Clone)]
pub struct DateFormats {
    names: Vec<String>,
    compiled: Vec<DateFormat>,
}

#[derive(Debug, Clone)]
enum DateFormat {
    Rfc3339,
    Pattern(Vec<Item<'static>>),
}

impl DateFormats {
    /// Compiles chrono format strings (`rfc3339` names RFC 3339); the error names the
    /// format that chrono cannot read.
    pub fn new(names: Vec<String>) -> Result<DateFormats, String> {
        let compiled = names
            .iter()
            .map(|f| match f.as_str() {
                "rfc3339" => Ok(DateFormat::Rfc3339),
                f => StrftimeItems::new(f)
                    .parse_to_owned()
                    .map(DateFormat::Pattern)
                    .map_err(|e| format!("`{f}` is not a chrono format: {e}")),
            })
            .collect::<Result<_, _>>()?;
        Ok(DateFormats { names, compiled })
    }

    /// The first format `v` matches, read by `rfc3339` for RFC 3339 or by `pattern`
    /// from what a chrono pattern parsed.
    fn first_match<T>(
        &self,
        v: &str,
        rfc3339: impl Fn(DateTime<chrono::FixedOffset>) -> T,
        pattern: impl Fn(&Parsed) -> Option<T>,
    ) -> Option<T> {
        self.compiled.iter().find_map(|f| match f {
            DateFormat::Rfc3339 => DateTime::parse_from_rfc3339(v).ok().map(&rfc3339),
            DateFormat::Pattern(items) => {
                let mut parsed = Parsed::new();
                chrono::format::parse(&mut parsed, v, items.iter()).ok()?;
                pattern(&parsed)
            }
        })
    }
}

impl PartialEq for DateFormats {
    fn eq(&self, other: &Self) -> bool {
        self.names == other.names
    }
}

impl Eq for DateFormats {}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::Trim => "trim".into(),
            Step::Nfkc => "nfkc".into(),
            Step::NullIfEmpty => "null_if_empty".into(),
            Step::Lower => "lower".into(),
            Step::Upper => "upper".into(),
            Step::Prefecture => "prefecture".into(),
            Step::StripPrefecture => "strip_prefecture".into(),
            Step::ParseDate(f) => format!("parse_date {:?}", f.names),
            Step::ParseDatetime(f) => format!("parse_datetime {:?}", f.names),
        }
    }
}

/// Why a row was rejected; written to the table's reject file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectKind {
    /// The source record is not valid JSON or not an APOC record.
    Malformed,
    MissingRequired,
    BadType,
    TooLong,
    UnknownValue,
    DuplicateKey,
    DanglingForeignKey,
    /// An integer outside its type (a negative value in an unsigned column included) or
    /// outside the column's `min` / `max`.
    OutOfRange,
    /// A required relationship-sourced column: the node has no such relationship.
    MissingRelationship,
    /// A relationship-sourced column: the node has two or more such relationships.
    MultipleRelationships,
}

impl RejectKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            RejectKind::Malformed => "malformed",
            RejectKind::MissingRequired => "missing_required",
            RejectKind::BadType => "bad_type",
            RejectKind::TooLong => "too_long",
            RejectKind::UnknownValue => "unknown_value",
            RejectKind::DuplicateKey => "duplicate_key",
            RejectKind::DanglingForeignKey => "dangling_foreign_key",
            RejectKind::OutOfRange => "out_of_range",
            RejectKind::MissingRelationship => "missing_relationship",
            RejectKind::MultipleRelationships => "multiple_relationships",
        }
    }
}

/// A rejected value: the kind and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectKind,
    pub detail: String,
}

impl Rejection {
    fn new(kind: RejectKind, detail: impl Into<String>) -> Self {
        Rejection {
            kind,
            detail: detail.into(),
        }
    }
}

/// Applies one step.
pub fn apply(step: &Step, value: Option<String>) -> Result<Option<String>, Rejection> {
    let Some(v) = value else { return Ok(None) };
    Ok(match step {
        Step::Trim => {
            let t = v.trim();
            if t.len() == v.len() {
                Some(v)
            } else {
                Some(t.to_string())
            }
        }
        // Most text is already NFKC: it is kept without building a copy.
        Step::Nfkc if already_nfkc(&v) => Some(v),
        Step::Nfkc => Some(v.nfkc().collect()),
        Step::NullIfEmpty => (!v.is_empty()).then_some(v),
        Step::Lower => Some(v.to_lowercase()),
        Step::Upper => Some(v.to_uppercase()),
        Step::Prefecture => prefecture::split_address(&v).prefecture.map(str::to_string),
        Step::StripPrefecture => Some(prefecture::split_address(&v).rest),
        Step::ParseDate(formats) => Some(parse_date(&v, formats)?),
        Step::ParseDatetime(formats) => Some(parse_datetime(&v, formats)?),
    })
}

/// Whether `v` is certainly in NFKC: every character is ASCII, hiragana, katakana
/// (full-width, without the sound marks and digraphs NFKC rewrites) or a CJK unified
/// ideograph, all starters that NFKC keeps and that compose with nothing. Anything else
/// is normalized (text that fails this check mostly needs it: full-width letters and
/// digits, half-width kana, the ideographic space).
fn already_nfkc(v: &str) -> bool {
    if v.is_ascii() {
        return true;
    }
    let plain = |c: char| {
        matches!(c,
            '\0'..='\x7f'
            | '\u{3001}'..='\u{3003}' // 、。〃
            | '\u{3005}'..='\u{3011}' // 々〆〇 and brackets
            | '\u{3041}'..='\u{3096}'
            | '\u{30a1}'..='\u{30fa}'
            | '\u{30fb}'..='\u{30fc}' // ・ー
            | '\u{4e00}'..='\u{9fff}')
    };
    v.chars().all(plain)
}

fn parse_date(v: &str, formats: &DateFormats) -> Result<String, Rejection> {
    formats
        .first_match(v, |d| d.date_naive(), |p| p.to_naive_date().ok())
        .map(|d| sql_date(&d))
        .ok_or_else(|| {
            Rejection::new(
                RejectKind::BadType,
                format!("`{v}` matches none of the date formats {:?}", formats.names),
            )
        })
}

fn parse_datetime(v: &str, formats: &DateFormats) -> Result<String, Rejection> {
    // With an offset in the format, to UTC; without one, as written.
    let pattern = |p: &Parsed| {
        p.to_datetime()
            .map(|d| d.naive_utc())
            .or_else(|_| p.to_naive_datetime_with_offset(0))
            .ok()
    };
    formats
        .first_match(v, |d| d.naive_utc(), pattern)
        .map(|d| sql_datetime(&d))
        .ok_or_else(|| {
            Rejection::new(
                RejectKind::BadType,
                format!(
                    "`{v}` matches none of the datetime formats {:?}",
                    formats.names
                ),
            )
        })
}

/// `n` as exactly `width` decimal digits (callers keep it in range).
fn push_digits(out: &mut String, n: u32, width: u32) {
    for p in (0..width).rev() {
        out.push(char::from(b'0' + (n / 10u32.pow(p) % 10) as u8));
    }
}

/// `YYYY-MM-DD`, written without the formatting machinery (this runs for every date of
/// every row); years outside 0-9999 as `{:04}` prints them.
fn sql_date(d: &NaiveDate) -> String {
    let mut out = String::with_capacity(19);
    push_date(&mut out, d);
    out
}

fn push_date(out: &mut String, d: &NaiveDate) {
    match u32::try_from(d.year()) {
        Ok(y) if y <= 9999 => push_digits(out, y, 4),
        _ => out.push_str(&format!("{:04}", d.year())),
    }
    out.push('-');
    push_digits(out, d.month(), 2);
    out.push('-');
    push_digits(out, d.day(), 2);
}

/// `YYYY-MM-DD HH:MM:SS` (fractions of a second dropped, as `%S` does).
fn sql_datetime(d: &NaiveDateTime) -> String {
    let mut out = String::with_capacity(19);
    push_date(&mut out, &d.date());
    out.push(' ');
    push_digits(&mut out, d.hour(), 2);
    out.push(':');
    push_digits(&mut out, d.minute(), 2);
    out.push(':');
    // A leap second (60) prints as chrono's `%S` prints it.
    push_digits(&mut out, d.second(), 2);
    out
}

/// The digits at `range` of an ASCII string as a number.
fn digits(v: &[u8], range: std::ops::Range<usize>) -> Option<u32> {
    v.get(range)?.iter().try_fold(0u32, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

/// The common case of a `date` column, `YYYY-MM-DD` exactly, parsed directly; `None`
/// for anything else, which the general parser then decides on.
fn canonical_date(v: &str) -> Option<NaiveDate> {
    let b = v.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(
        i32::try_from(digits(b, 0..4)?).ok()?,
        digits(b, 5..7)?,
        digits(b, 8..10)?,
    )
}

/// `YYYY-MM-DD HH:MM:SS` exactly (or with a `T`), parsed directly; `None` otherwise.
fn canonical_datetime(v: &str) -> Option<NaiveDateTime> {
    let b = v.as_bytes();
    if b.len() != 19 || !matches!(b[10], b' ' | b'T') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    canonical_date(v.get(..10)?)?.and_hms_opt(
        digits(b, 11..13)?,
        digits(b, 14..16)?,
        digits(b, 17..19)?,
    )
}

/// Whether `v` is an integer exactly as it prints (no sign but `-`, no leading zero,
/// no `-0`), so a cast can keep the text it was given.
pub(crate) fn canonical_integer(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (!digits.starts_with('0') || v == "0")
}

/// Checks a value against a column type and returns its canonical SQL text (the value
/// itself, without a copy, when it is already canonical: the common case).
pub fn cast(v: String, ty: SqlType) -> Result<String, Rejection> {
    let bad = |what: &str| {
        Rejection::new(
            RejectKind::BadType,
            format!("`{}` is not {what}", shorten(&v)),
        )
    };
    match ty {
        SqlType::BigInt | SqlType::Int | SqlType::BigIntUnsigned | SqlType::IntUnsigned => {
            let (lo, hi) = ty.integer_range().unwrap_or((0, 0));
            match v.parse::<i128>() {
                Ok(n) if n < lo || n > hi => Err(out_of_range(&v, ty, lo, hi)),
                Ok(_) if canonical_integer(&v) => Ok(v),
                Ok(n) => Ok(n.to_string()),
                // Digits beyond even i128: out of range, not a bad type.
                Err(_) if canonical_integer(v.strip_prefix('+').unwrap_or(&v)) => {
                    Err(out_of_range(&v, ty, lo, hi))
                }
                Err(_) => Err(bad(&format!("an integer ({ty})"))),
            }
        }
        SqlType::Boolean => match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok("1".into()),
            "false" | "0" | "no" => Ok("0".into()),
            _ => Err(bad("a boolean (true/false/1/0/yes/no)")),
        },
        SqlType::Varchar(n) => {
            let len = v.chars().count();
            if len > n as usize {
                Err(Rejection::new(
                    RejectKind::TooLong,
                    format!("{len} characters, more than varchar({n}) holds"),
                ))
            } else {
                Ok(v)
            }
        }
        SqlType::Decimal(p, scale) => decimal(&v, p, scale),
        SqlType::Text => {
            if v.len() > 65_535 {
                Err(Rejection::new(
                    RejectKind::TooLong,
                    format!("{} bytes, more than text holds (65535)", v.len()),
                ))
            } else {
                Ok(v)
            }
        }
        SqlType::Date => {
            // `YYYY-MM-DD` that is a real date is its own canonical form.
            if canonical_date(&v).is_some_and(|d| (1000..=9999).contains(&d.year())) {
                return Ok(v);
            }
            match NaiveDate::parse_from_str(&v, "%Y-%m-%d") {
                Ok(d) if (1000..=9999).contains(&d.year()) => Ok(sql_date(&d)),
                _ => Err(bad(
                    "a date (YYYY-MM-DD, years 1000-9999; use parse_date for other formats)",
                )),
            }
        }
        SqlType::DateTime => {
            if canonical_datetime(&v).is_some_and(|d| (1000..=9999).contains(&d.year())) {
                // The same text, with a space between date and time (byte 10 is an
                // ASCII ` ` or `T`, so the range is on character boundaries).
                let mut v = v;
                v.replace_range(10..11, " ");
                return Ok(v);
            }
            let parsed = NaiveDateTime::parse_from_str(&v, "%Y-%m-%d %H:%M:%S")
                .ok()
                .or_else(|| NaiveDateTime::parse_from_str(&v, "%Y-%m-%dT%H:%M:%S").ok())
                .or_else(|| DateTime::parse_from_rfc3339(&v).ok().map(|d| d.naive_utc()));
            match parsed {
                Some(d) if (1000..=9999).contains(&d.year()) => Ok(sql_datetime(&d)),
                _ => Err(bad("a datetime (YYYY-MM-DD HH:MM:SS or RFC 3339; use parse_datetime for other formats)")),
            }
        }
    }
}

/// The parts of a decimal number's text: `-12.5e3` is negative, `12`, `5`, exponent 3.
pub(crate) struct NumberParts<'a> {
    pub negative: bool,
    pub int: &'a str,
    pub frac: &'a str,
    pub exponent: i64,
}

/// Splits decimal number text (`-`, digits, an optional `.` and digits, an optional
/// exponent); `None` when it is not one. `.5` and `5.` are numbers; `.` is not.
pub(crate) fn number_parts(text: &str) -> Option<NumberParts<'_>> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (
            &unsigned[..i],
            unsigned[i + 1..]
                .trim_start_matches('+')
                .parse::<i64>()
                .ok()?,
        ),
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits_only = int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit());
    (digits_only && !(int.is_empty() && frac.is_empty())).then_some(NumberParts {
        negative,
        int,
        frac,
        exponent,
    })
}

/// A number as `decimal(p, scale)` holds it, exactly: canonical text (`-1.50` for
/// `-1.5` at scale 2, `100000.00` for `1e5`), or a rejection, never a rounding: digits
/// after the point beyond `scale` that are not zeros are `bad_type`, more than
/// `p - scale` digits before it `out_of_range`.
fn decimal(v: &str, p: u8, scale: u8) -> Result<String, Rejection> {
    let ty = SqlType::Decimal(p, scale);
    let bad = || {
        Rejection::new(
            RejectKind::BadType,
            format!("`{}` is not a decimal number", shorten(v)),
        )
    };
    let Some(NumberParts {
        negative,
        int,
        frac,
        exponent,
    }) = number_parts(v.strip_prefix('+').unwrap_or(v))
    else {
        return Err(bad());
    };
    // All digits, and where the point falls in them after the exponent.
    let digits = format!("{int}{frac}");
    let point = i64::try_from(int.len())
        .map_err(|_| bad())?
        .saturating_add(exponent);
    let significant = digits.trim_start_matches('0');
    let leading = i64::try_from(digits.len() - significant.len()).map_err(|_| bad())?;
    let significant = significant.trim_end_matches('0');
    if significant.is_empty() {
        return Ok(if scale == 0 {
            "0".into()
        } else {
            format!("0.{}", "0".repeat(scale.into()))
        });
    }
    // Digits before the point and after it, of the significant digits.
    let int_digits = point - leading;
    let frac_digits = i64::try_from(significant.len()).map_err(|_| bad())? - int_digits;
    if int_digits > i64::from(p - scale) {
        return Err(Rejection::new(
            RejectKind::OutOfRange,
            format!(
                "`{}` has more than {} digits before the point, more than {ty} holds",
                shorten(v),
                p - scale
            ),
        ));
    }
    if frac_digits > i64::from(scale) {
        return Err(Rejection::new(
            RejectKind::BadType,
            format!(
                "`{}` has more than {scale} digits after the point: {ty} would round it",
                shorten(v)
            ),
        ));
    }
    // Both counts are now within 0..=65 (or negative: leading zeros to add).
    let mut out = String::with_capacity(usize::from(p) + 3);
    if negative {
        out.push('-');
    }
    let sig = significant.as_bytes();
    let int_len = usize::try_from(int_digits.max(0)).unwrap_or(0);
    if int_len == 0 {
        out.push('0');
    } else {
        for i in 0..int_len {
            out.push(sig.get(i).map_or('0', |&b| char::from(b)));
        }
    }
    if scale > 0 {
        out.push('.');
        for k in 0..i64::from(scale) {
            // Position of this fraction digit among the significant digits.
            let at = int_digits + k;
            let c = usize::try_from(at)
                .ok()
                .and_then(|at| sig.get(at))
                .map_or('0', |&b| char::from(b));
            out.push(c);
        }
    }
    Ok(out)
}

fn out_of_range(v: &str, ty: SqlType, lo: i128, hi: i128) -> Rejection {
    let why = if v.starts_with('-') && lo == 0 {
        "is negative"
    } else {
        "is outside"
    };
    Rejection::new(
        RejectKind::OutOfRange,
        format!("`{}` {why} {ty} ({lo}..={hi})", shorten(v)),
    )
}

/// Checks a cast integer against a column's `min` / `max` (no bounds: always fine).
pub fn check_bounds(v: &str, min: Option<i64>, max: Option<i64>) -> Result<(), Rejection> {
    if min.is_none() && max.is_none() {
        return Ok(());
    }
    let n: i128 = v.parse().map_err(|_| {
        Rejection::new(
            RejectKind::BadType,
            format!("`{}` is not an integer", shorten(v)),
        )
    })?;
    if let Some(m) = min.filter(|&m| n < i128::from(m)) {
        return Err(Rejection::new(
            RejectKind::OutOfRange,
            format!("{n} is less than the column's min {m}"),
        ));
    }
    if let Some(m) = max.filter(|&m| n > i128::from(m)) {
        return Err(Rejection::new(
            RejectKind::OutOfRange,
            format!("{n} is more than the column's max {m}"),
        ));
    }
    Ok(())
}

fn shorten(v: &str) -> String {
    if v.chars().count() > 40 {
        let mut s: String = v.chars().take(40).collect();
        s.push('…');
        s
    } else {
        v.to_string()
    }
}

/// Runs a column's whole pipeline on a raw value: steps, value map, default, required,
/// cast. `Ok(None)` is SQL NULL.
pub fn column_value(column: &Column, raw: Option<String>) -> Result<Option<String>, Rejection> {
    let mut v = raw;
    for step in &column.steps {
        v = apply(step, v)?;
    }
    if let (Some(map), Some(value)) = (&column.map, &v) {
        match map.get(value) {
            Some(mapped) => v = Some(mapped.clone()),
            None => {
                return Err(Rejection::new(
                    RejectKind::UnknownValue,
                    format!(
                        "`{}` is not in the value map (known: {})",
                        shorten(value),
                        map.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ))
            }
        }
    }
    if v.is_none() {
        v = column.default.clone();
    }
    match v {
        None if column.required => Err(Rejection::new(
            RejectKind::MissingRequired,
            "required value is missing",
        )),
        None => Ok(None),
        Some(v) => {
            let v = cast(v, column.ty)?;
            check_bounds(&v, column.min, column.max)?;
            Ok(Some(v))
        }
    }
}

#[cfg(test)]
mod tests;
