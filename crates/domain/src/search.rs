//! The search vocabulary shared by the use cases and every index: which activities or
//! records to find ([`ActivityQuery`], [`RecordQuery`]), pages of results with an opaque
//! [`Cursor`], aggregations ([`GroupBy`], [`Bucket`]) and per-deal activity facts
//! ([`LatestActivity`]). Plain data: indexes (embedded Tantivy, OpenSearch) implement it.

use crate::synonyms::Synonyms;
use crate::text_query::{TextQuery, TextQueryError};
use crate::{
    ActionType, ActivityLog, Company, Deal, DealStage, Entity, ItemKey, SalesList, Version,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A cursor that is not one this system handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad cursor {cursor:?}: {reason}; pass back the `next_cursor` of a previous page unchanged"
)]
pub struct CursorError {
    pub cursor: String,
    pub reason: String,
}

/// The page size when none is given.
pub const DEFAULT_LIMIT: usize = 20;
/// The largest page a query may ask for.
pub const MAX_LIMIT: usize = 1000;

/// Which live activities to return. Several values on one axis match any of them (OR);
/// axes combine with AND; an empty axis does not filter. Tombstones never match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActivityQuery {
    /// The owning tenant. A multi-tenant caller must always set it.
    pub tenant_id: Option<String>,
    pub deal_ids: Vec<String>,
    pub company_ids: Vec<String>,
    pub user_ids: Vec<String>,
    pub actions: Vec<ActionType>,
    pub results: Vec<String>,
    /// Every one of these tags must be present.
    pub tags_all: Vec<String>,
    /// Inclusive lower bound of `occurred_at`.
    pub occurred_from: Option<DateTime<Utc>>,
    /// Exclusive upper bound of `occurred_at`.
    pub occurred_to: Option<DateTime<Utc>>,
    /// Memo full text in the search syntax ([`crate::text_query`]): every word must occur
    /// in the memo (each word as a phrase of its tokens, so "来週訪問" matches only those
    /// four characters in a row), `"a phrase"` as written, `-word` excludes, `A OR B`
    /// matches either. Blank text is ignored; text the syntax cannot read is refused.
    pub text: Option<String>,
    /// The tenant's synonyms, applied to `text` ([`ActivityQuery::memo_query`]); none by
    /// default.
    pub synonyms: Synonyms,
    /// Page size: 0 counts only; at most [`MAX_LIMIT`]. Ignored by aggregations.
    pub limit: usize,
    /// Resume after the last hit of a previous page. Ignored by aggregations.
    pub cursor: Option<Cursor>,
    /// The result order. Ignored by aggregations.
    pub sort: SortOrder,
}

/// The order of activity hits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    /// `occurred_at` descending (the default).
    #[default]
    Newest,
    /// How well the memo matches the text (BM25), then newest first. Without text every
    /// hit scores the same, so this is newest first.
    Relevance,
}

impl SortOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            SortOrder::Newest => "newest",
            SortOrder::Relevance => "relevance",
        }
    }

    /// Parses the name; the error lists the accepted names.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "newest" => Ok(SortOrder::Newest),
            "relevance" => Ok(SortOrder::Relevance),
            other => Err(format!(
                "unknown order {other:?}; expected newest or relevance"
            )),
        }
    }
}

impl ActivityQuery {
    /// The memo text parsed, with the query's synonyms applied: what every index
    /// translates and what highlights mark. `None` without text (or blank text).
    pub fn memo_query(&self) -> Result<Option<TextQuery>, TextQueryError> {
        let Some(text) = self.text.as_deref() else {
            return Ok(None);
        };
        Ok(TextQuery::parse(text)?.map(|q| q.with_synonyms(&self.synonyms)))
    }

    /// Refuses a cursor handed out by a search in the other order (a relevance cursor
    /// carries the last hit's score, a newest-first one does not).
    pub fn check_cursor(&self) -> Result<(), CursorError> {
        match (self.cursor, self.sort) {
            (Some(c), SortOrder::Newest) if c.score().is_some() => Err(CursorError {
                cursor: c.to_string(),
                reason: "it comes from a search sorted by relevance; pass sort=relevance or start again without the cursor".into(),
            }),
            (Some(c), SortOrder::Relevance) if c.score().is_none() => Err(CursorError {
                cursor: c.to_string(),
                reason: "it comes from a search sorted newest first; leave sort out or start again without the cursor".into(),
            }),
            _ => Ok(()),
        }
    }
}

impl Default for ActivityQuery {
    fn default() -> Self {
        Self {
            tenant_id: None,
            deal_ids: Vec::new(),
            company_ids: Vec::new(),
            user_ids: Vec::new(),
            actions: Vec::new(),
            results: Vec::new(),
            tags_all: Vec::new(),
            occurred_from: None,
            occurred_to: None,
            text: None,
            synonyms: Synonyms::default(),
            limit: DEFAULT_LIMIT,
            cursor: None,
            sort: SortOrder::Newest,
        }
    }
}

/// A position in the result order (`occurred_at` descending, then the key's stable hash
/// ascending; by relevance, the score descending before them). Opaque to callers: pass
/// back a page's `next_cursor` unchanged. As text, 32 hex digits, or 48 with the score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cursor {
    /// The bits of the last hit's score, for a relevance order: an f64, so that an
    /// engine's score goes back to it exactly (Lucene's and Tantivy's are f32, which an
    /// f64 holds exactly; osmem-server's are f64).
    score_bits: Option<u64>,
    occurred_at_us: i64,
    sort_hash: u64,
}

impl Cursor {
    /// Parses the text form; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, CursorError> {
        let bad = |reason: &str| CursorError {
            cursor: text.to_string(),
            reason: reason.to_string(),
        };
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("expected 32 or 48 hexadecimal digits"));
        }
        let (score_bits, rest) = match text.len() {
            32 => (None, text),
            48 => {
                let (score, rest) = text.split_at(16);
                let bits = u64::from_str_radix(score, 16).map_err(|_| bad("unreadable score"))?;
                if !f64::from_bits(bits).is_finite() {
                    return Err(bad("unreadable score"));
                }
                (Some(bits), rest)
            }
            _ => return Err(bad("expected 32 or 48 hexadecimal digits")),
        };
        let (ts, hash) = rest.split_at(16);
        let ts = u64::from_str_radix(ts, 16).map_err(|_| bad("unreadable timestamp"))?;
        let sort_hash = u64::from_str_radix(hash, 16).map_err(|_| bad("unreadable tie-breaker"))?;
        Ok(Self {
            score_bits,
            // The timestamp is stored as the bits of an i64 (dates before 1970 stay valid).
            occurred_at_us: ts as i64,
            sort_hash,
        })
    }

    /// A cursor just after the document with these sort values.
    pub fn new(occurred_at_us: i64, sort_hash: u64) -> Self {
        Self {
            score_bits: None,
            occurred_at_us,
            sort_hash,
        }
    }

    /// A cursor of the relevance order, just after the document with these values.
    pub fn scored(score: f64, occurred_at_us: i64, sort_hash: u64) -> Self {
        Self {
            score_bits: Some(score.to_bits()),
            occurred_at_us,
            sort_hash,
        }
    }

    /// The sort values of the last document of the page it ends.
    pub fn occurred_at_us(self) -> i64 {
        self.occurred_at_us
    }

    pub fn sort_hash(self) -> u64 {
        self.sort_hash
    }

    /// The last hit's score, for a relevance order.
    pub fn score(self) -> Option<f64> {
        self.score_bits.map(f64::from_bits)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(bits) = self.score_bits {
            write!(f, "{bits:016x}")?;
        }
        write!(
            f,
            "{:016x}{:016x}",
            self.occurred_at_us as u64, self.sort_hash
        )
    }
}

impl std::str::FromStr for Cursor {
    type Err = CursorError;
    fn from_str(s: &str) -> Result<Self, CursorError> {
        Cursor::parse(s)
    }
}

impl TryFrom<String> for Cursor {
    type Error = CursorError;
    fn try_from(s: String) -> Result<Self, CursorError> {
        Cursor::parse(&s)
    }
}

impl From<Cursor> for String {
    fn from(c: Cursor) -> String {
        c.to_string()
    }
}

/// One matching activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub key: ItemKey,
    pub version: Version,
    pub activity: ActivityLog,
    /// With memo text: fragments of the memo around what the query's words and phrases
    /// matched, HTML-escaped, each match in `<mark>`…`</mark>`
    /// ([`crate::text::highlight`]); empty without text.
    #[serde(default)]
    pub highlights: Vec<String>,
}

impl Hit {
    /// A hit with the highlights of `text` (the query's parsed memo text,
    /// [`ActivityQuery::memo_query`]) in its memo.
    pub fn new(
        key: ItemKey,
        version: Version,
        activity: ActivityLog,
        text: Option<&TextQuery>,
    ) -> Self {
        Self::with_word_spans(key, version, activity, text, Vec::new())
    }

    /// [`Hit::new`] whose highlights also mark `word_spans` of the memo: what a word
    /// analysis matched that the text does not hold as typed (見積もり for 見積り).
    pub fn with_word_spans(
        key: ItemKey,
        version: Version,
        activity: ActivityLog,
        text: Option<&TextQuery>,
        word_spans: Vec<(usize, usize)>,
    ) -> Self {
        let highlights = highlights_with(&activity.memo, text, word_spans);
        Self {
            key,
            version,
            activity,
            highlights,
        }
    }
}

/// The highlight fragments of `memo` for the parsed search text `text` (none without
/// text): whichever of its words, phrases and synonyms matched.
pub fn highlights_of(memo: &str, text: Option<&TextQuery>) -> Vec<String> {
    highlights_with(memo, text, Vec::new())
}

/// [`highlights_of`] also marking `word_spans` (see [`Hit::with_word_spans`]).
pub fn highlights_with(
    memo: &str,
    text: Option<&TextQuery>,
    mut word_spans: Vec<(usize, usize)>,
) -> Vec<String> {
    let Some(query) = text else {
        return Vec::new();
    };
    word_spans.extend(
        query
            .positive_terms()
            .flat_map(|t| crate::text::match_spans_with(memo, &t.text, t.prefix_last())),
    );
    crate::text::highlight_spans(memo, word_spans)
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    pub hits: Vec<Hit>,
    /// Every match of the query, ignoring the cursor and the limit.
    pub total: u64,
    /// Where the next page starts; `None` on the last page (and for `limit` 0).
    pub next_cursor: Option<Cursor>,
}

/// What to count activities by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Action,
    User,
    Deal,
    Company,
    /// Activities without a result are not counted.
    Result,
    /// An activity counts once for each of its tags.
    Tag,
    /// The calendar day of `occurred_at` in the aggregation's time zone, `YYYY-MM-DD`;
    /// buckets in day order.
    Day,
    /// The ISO week (Monday to Sunday) of `occurred_at` in the aggregation's time zone,
    /// keyed by its Monday, `YYYY-MM-DD`; buckets in week order.
    Week,
    /// The calendar month of `occurred_at` in the aggregation's time zone, `YYYY-MM`;
    /// buckets in month order.
    Month,
}

impl GroupBy {
    pub const ALL: [GroupBy; 9] = [
        GroupBy::Action,
        GroupBy::User,
        GroupBy::Deal,
        GroupBy::Company,
        GroupBy::Result,
        GroupBy::Tag,
        GroupBy::Day,
        GroupBy::Week,
        GroupBy::Month,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Action => "action",
            GroupBy::User => "user",
            GroupBy::Deal => "deal",
            GroupBy::Company => "company",
            GroupBy::Result => "result",
            GroupBy::Tag => "tag",
            GroupBy::Day => "day",
            GroupBy::Week => "week",
            GroupBy::Month => "month",
        }
    }

    /// Parses the name; the error lists the accepted names.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown grouping {s:?}; expected one of {}",
                    Self::ALL.map(GroupBy::as_str).join(", ")
                )
            })
    }

    /// Whether this grouping is by calendar period (its buckets depend on a time zone).
    pub fn is_calendar(self) -> bool {
        matches!(self, GroupBy::Day | GroupBy::Week | GroupBy::Month)
    }

    /// The bucket key of an activity that occurred at `at`, for a calendar grouping in
    /// `zone`; `None` for the other groupings. Every index labels its buckets with this,
    /// so that they answer alike.
    pub fn calendar_key(self, at: DateTime<Utc>, zone: TimeZone) -> Option<String> {
        self.calendar_key_of(at.with_timezone(&zone).date_naive())
    }

    /// The bucket key of a local calendar date, for a calendar grouping; `None` for the
    /// other groupings.
    pub fn calendar_key_of(self, local: NaiveDate) -> Option<String> {
        match self {
            GroupBy::Day => Some(local.format("%Y-%m-%d").to_string()),
            GroupBy::Week => {
                let monday = local.week(chrono::Weekday::Mon).first_day();
                Some(monday.format("%Y-%m-%d").to_string())
            }
            GroupBy::Month => Some(local.format("%Y-%m").to_string()),
            _ => None,
        }
    }
}

/// An IANA time zone (`Asia/Tokyo`, `UTC`): calendar groupings count days, weeks and
/// months in it.
pub type TimeZone = chrono_tz::Tz;

/// Parses an IANA time zone name; the error says what is expected.
pub fn parse_time_zone(name: &str) -> Result<TimeZone, String> {
    name.trim().parse::<TimeZone>().map_err(|_| {
        format!("unknown time zone {name:?}; use an IANA name such as Asia/Tokyo or UTC")
    })
}

/// A point in time as users write it: RFC 3339 (`2026-11-10T09:00:00+09:00`), or a bare
/// date (`2026-11-10`), taken as the start of that day in `zone`.
pub fn parse_time(text: &str, zone: TimeZone) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        format!(
            "{text:?} is not a time: use RFC 3339 (2026-11-10T09:00:00+09:00) or a date \
             (2026-11-10)"
        )
    })?;
    // The first instant of the day: midnight, or later when a DST change skips it.
    date.and_hms_opt(0, 0, 0)
        .and_then(|midnight| {
            (0..=3).find_map(|h| {
                (midnight + chrono::Duration::hours(h))
                    .and_local_timezone(zone)
                    .earliest()
            })
        })
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("{text:?} has no start of day in {zone}"))
}

/// A group and how many activities fall in it. Every group is returned: none is cut off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub key: String,
    pub count: u64,
}

/// Which kind of record a [`RecordQuery`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Company,
    Deal,
    SalesList,
}

impl RecordKind {
    /// Where a record of this kind with this id lives in the primary store.
    pub fn key_for(self, id: &str) -> ItemKey {
        match self {
            RecordKind::Company => Company::key_for(id),
            RecordKind::Deal => Deal::key_for(id),
            RecordKind::SalesList => SalesList::key_for(id),
        }
    }
}

/// Which records to return. Several values on one axis match any of them; axes combine
/// with AND; an empty axis does not filter. Axes that do not apply to the kind (a stage on
/// a company) match nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordQuery {
    pub kind: RecordKind,
    pub tenant_id: Option<String>,
    /// Only these records (by id); `Some(empty)` matches nothing.
    pub only_ids: Option<Vec<String>>,
    /// Never these records.
    pub exclude_ids: Vec<String>,
    pub company_ids: Vec<String>,
    /// Deal owners.
    pub owner_ids: Vec<String>,
    pub stages: Vec<DealStage>,
    /// Every one of these tags (deals).
    pub tags_all: Vec<String>,
    /// Companies only.
    pub prefectures: Vec<String>,
    pub industries: Vec<String>,
    /// Deals: inclusive bounds of the amount.
    pub amount_min: Option<i64>,
    pub amount_max: Option<i64>,
    /// Deals: inclusive bounds of the expected close date.
    pub close_from: Option<NaiveDate>,
    pub close_to: Option<NaiveDate>,
    /// Words of the name or title (as in [`ActivityQuery::text`]).
    pub text: Option<String>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl RecordQuery {
    pub fn new(kind: RecordKind) -> Self {
        Self {
            kind,
            tenant_id: None,
            only_ids: None,
            exclude_ids: Vec::new(),
            company_ids: Vec::new(),
            owner_ids: Vec::new(),
            stages: Vec::new(),
            tags_all: Vec::new(),
            prefectures: Vec::new(),
            industries: Vec::new(),
            amount_min: None,
            amount_max: None,
            close_from: None,
            close_to: None,
            text: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

/// One matching record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordHit {
    pub key: ItemKey,
    pub version: Version,
    pub entity: Entity,
}

/// One page of records.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordPage {
    pub hits: Vec<RecordHit>,
    pub total: u64,
    pub next_cursor: Option<Cursor>,
}

/// A deal's latest activity among those matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestActivity {
    pub occurred_at: DateTime<Utc>,
    pub result: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn times_accept_rfc3339_and_dates_in_the_zone() {
        let tokyo = parse_time_zone("Asia/Tokyo").unwrap();
        assert_eq!(
            parse_time("2026-11-10", chrono_tz::UTC).unwrap(),
            utc("2026-11-10T00:00:00Z")
        );
        assert_eq!(
            parse_time("2026-11-10", tokyo).unwrap(),
            utc("2026-11-09T15:00:00Z")
        );
        assert_eq!(
            parse_time("2026-11-10T09:00:00+09:00", chrono_tz::UTC).unwrap(),
            utc("2026-11-10T00:00:00Z")
        );
        assert!(parse_time("2026-11", tokyo)
            .unwrap_err()
            .contains("RFC 3339"));
        // São Paulo skipped midnight on 2018-11-04: the day starts at 01:00.
        let sao_paulo = parse_time_zone("America/Sao_Paulo").unwrap();
        assert_eq!(
            parse_time("2018-11-04", sao_paulo).unwrap(),
            utc("2018-11-04T03:00:00Z")
        );
        assert!(parse_time_zone("Mars/Olympus")
            .unwrap_err()
            .contains("IANA"));
    }

    /// Issue 19: a relevance cursor carries the score, and is refused by the other order.
    #[test]
    fn relevance_cursors_round_trip_and_stay_in_their_order() {
        let scored = Cursor::scored(1.25, -5, u64::MAX);
        assert_eq!(scored.to_string().len(), 48);
        assert_eq!(Cursor::parse(&scored.to_string()), Ok(scored));
        assert_eq!(scored.score(), Some(1.25));
        let newest = Cursor::new(7, 9);
        assert_eq!(Cursor::parse(&newest.to_string()), Ok(newest));
        assert_eq!(newest.score(), None);
        assert!(Cursor::parse("7ff8000000000000").is_err());
        assert!(Cursor::parse(&format!("7ff8000000000000{}", "0".repeat(32))).is_err());
        let q = |cursor, sort| ActivityQuery {
            cursor: Some(cursor),
            sort,
            ..ActivityQuery::default()
        };
        assert!(q(scored, SortOrder::Relevance).check_cursor().is_ok());
        assert!(q(newest, SortOrder::Newest).check_cursor().is_ok());
        assert!(q(scored, SortOrder::Newest).check_cursor().is_err());
        assert!(q(newest, SortOrder::Relevance).check_cursor().is_err());
        assert_eq!(SortOrder::parse("relevance"), Ok(SortOrder::Relevance));
        assert!(SortOrder::parse("oldest").is_err());
    }

    /// Issue 18: 08:00 JST is the previous day in UTC; grouped in Tokyo it is that day.
    #[test]
    fn calendar_keys_follow_the_zone_iso_weeks_and_months() {
        let tokyo = parse_time_zone("Asia/Tokyo").unwrap();
        let morning = utc("2026-11-09T23:00:00Z"); // 2026-11-10 08:00 JST, a Tuesday
        assert_eq!(
            GroupBy::Day
                .calendar_key(morning, chrono_tz::UTC)
                .as_deref(),
            Some("2026-11-09")
        );
        assert_eq!(
            GroupBy::Day.calendar_key(morning, tokyo).as_deref(),
            Some("2026-11-10")
        );
        assert_eq!(
            GroupBy::Week.calendar_key(morning, tokyo).as_deref(),
            Some("2026-11-09")
        );
        // Sunday 2026-11-15 23:59 JST is still the week of Monday the 9th.
        let sunday = utc("2026-11-15T14:59:00Z");
        assert_eq!(
            GroupBy::Week.calendar_key(sunday, tokyo).as_deref(),
            Some("2026-11-09")
        );
        // 2026-11-30T20:00Z is December 1st in Tokyo.
        let month_end = utc("2026-11-30T20:00:00Z");
        assert_eq!(
            GroupBy::Month.calendar_key(month_end, tokyo).as_deref(),
            Some("2026-12")
        );
        assert_eq!(GroupBy::Action.calendar_key(month_end, tokyo), None);
        for by in GroupBy::ALL {
            assert_eq!(GroupBy::parse(by.as_str()), Ok(by));
        }
    }
}
