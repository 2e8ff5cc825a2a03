//! `tsunagu bench search-quality` (issue 19): how well memo search finds what a salesperson
//! means. Loads the judged data set (`crates/bench/data/search-quality`, compiled in: 150
//! memos, 159 queries in ten classes, the synonym groups of the synonym class) into a fresh
//! embedded index, runs each query in the relevance order and prints precision, recall
//! and nDCG@10 per class; exits 1 when a class's nDCG@10 or precision falls under its
//! recorded floor (`floors.tsv`).
//!
//! Two analyses can be measured: character bigrams only (the default), and with
//! `--dictionary DIR` the Japanese word analysis of a MeCab IPADIC dictionary
//! ([`tsunagu_embedded_index::morphology`], as `sinks.NAME.dictionary` configures it).
//! `floors.tsv` holds a floor pair for each: its 4th and 5th columns are the floors with
//! the dictionary (the 2nd and 3rd when absent).
//!
//! The queries of the `synonym` class run with the groups of `synonyms.tsv`, as a tenant's
//! list (`/api/v1/synonyms`) is applied; the other classes run without synonyms, so that
//! each measures its own analysis.
//!
//! Relevance is binary (a memo is relevant to a query or not); a query judged to find
//! nothing scores 1 when it finds nothing and 0 otherwise. Text the search syntax refuses
//! scores 0.

use anyhow::Context;
use clap::Args;
use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::sync::Arc;
use tsunagu_domain::search::{ActivityQuery, SortOrder, MAX_LIMIT};
use tsunagu_domain::synonyms::Synonyms;
use tsunagu_domain::{
    ActionType, ActivityLog, ChangeKind, ChangeRecord, Entity, Image, Position, ShardId, Version,
};
use tsunagu_embedded_index::{ActivityIndex, Dictionary, IndexOptions};
use tsunagu_engine::ports::Sink;
use tsunagu_runtime::outln;
use tsunagu_service::ports::SearchIndex;

const MEMOS: &str = include_str!("../data/search-quality/memos.tsv");
const QUERIES: &str = include_str!("../data/search-quality/queries.tsv");
const FLOORS: &str = include_str!("../data/search-quality/floors.tsv");
const SYNONYMS: &str = include_str!("../data/search-quality/synonyms.tsv");

/// The class whose queries run with the data set's synonyms.
pub const SYNONYM_CLASS: &str = "synonym";

const TENANT: &str = "bench";

#[derive(Debug, Clone, Args)]
pub struct SearchQualityArgs {
    /// Also print each query's hits and scores.
    #[arg(long)]
    pub verbose: bool,
    /// Analyze memos with the Japanese word analysis of this MeCab IPADIC dictionary's
    /// sources (`apt-get install mecab-ipadic`: `/usr/share/mecab/dic/ipadic`), as
    /// `sinks.NAME.dictionary` does, and hold the run to the with-dictionary floors.
    #[arg(long, value_name = "DIR")]
    pub dictionary: Option<std::path::PathBuf>,
    /// Where the compiled dictionary is kept between runs (compiling takes seconds).
    /// Default: `tsunagu-dictionaries` in the system's temporary directory.
    #[arg(long, value_name = "DIR", requires = "dictionary")]
    pub dictionary_cache: Option<std::path::PathBuf>,
}

/// The memo analysis a run measures; each has its floors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Analysis {
    /// Character bigrams with folding (no dictionary).
    Bigrams,
    /// With a Japanese dictionary (`--dictionary`).
    Dictionary,
}

/// One judged query.
#[derive(Debug, Clone)]
pub struct Judged {
    pub class: String,
    pub query: String,
    pub relevant: HashSet<String>,
}

/// Lines of a TSV file without comments and blank lines, split on tabs.
fn rows(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').collect())
}

/// The memos (id, text) of the data set.
pub fn memos() -> Vec<(String, String)> {
    rows(MEMOS)
        .filter_map(|r| Some((r.first()?.to_string(), r.get(1)?.to_string())))
        .collect()
}

/// The judged queries of the data set.
pub fn queries() -> Vec<Judged> {
    rows(QUERIES)
        .filter_map(|r| {
            Some(Judged {
                class: r.first()?.to_string(),
                query: r.get(1)?.to_string(),
                relevant: r
                    .get(2)
                    .map(|ids| {
                        ids.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The recorded floors of nDCG@10 and precision per class for `analysis`: columns 2 and
/// 3 of `floors.tsv` without a dictionary, 4 and 5 with one (2 and 3 when absent).
pub fn floors(analysis: Analysis) -> BTreeMap<String, (f64, f64)> {
    parse_floors(FLOORS, analysis)
}

/// The floors of `text` in the format of `floors.tsv` (see [`floors`]).
fn parse_floors(text: &str, analysis: Analysis) -> BTreeMap<String, (f64, f64)> {
    rows(text)
        .filter_map(|r| {
            let column = |i: usize| r.get(i).and_then(|v| v.trim().parse::<f64>().ok());
            let (ndcg, precision) = (column(1)?, column(2)?);
            let floor = match analysis {
                Analysis::Bigrams => (ndcg, precision),
                Analysis::Dictionary => (column(3).unwrap_or(ndcg), column(4).unwrap_or(precision)),
            };
            Some((r.first()?.to_string(), floor))
        })
        .collect()
}

/// The synonym groups of the synonym class (`synonyms.tsv`: one group a line, terms
/// separated by tabs), validated as the API validates a tenant's list.
pub fn synonyms() -> anyhow::Result<Synonyms> {
    let groups = rows(SYNONYMS)
        .map(|r| {
            r.iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect()
        })
        .collect();
    Synonyms::new(groups).context("the data set's synonyms.tsv")
}

/// Precision, recall and nDCG@10 of one ranked answer.
pub fn score(hits: &[String], relevant: &HashSet<String>) -> (f64, f64, f64) {
    if relevant.is_empty() {
        let perfect = if hits.is_empty() { 1.0 } else { 0.0 };
        return (perfect, 1.0, perfect);
    }
    let found = hits.iter().filter(|h| relevant.contains(*h)).count() as f64;
    let precision = if hits.is_empty() {
        0.0
    } else {
        found / hits.len() as f64
    };
    let recall = found / relevant.len() as f64;
    let gain = |rank: usize| 1.0 / ((rank + 2) as f64).log2();
    let dcg: f64 = hits
        .iter()
        .take(10)
        .enumerate()
        .filter(|(_, h)| relevant.contains(*h))
        .map(|(rank, _)| gain(rank))
        .sum();
    let ideal: f64 = (0..relevant.len().min(10)).map(gain).sum();
    // An empty f64 sum is -0.0: add 0.0 so that a miss prints as 0.00.
    (precision, recall, dcg / ideal + 0.0)
}

/// Per-class means: (queries, precision, recall, nDCG@10).
pub type ClassFigures = BTreeMap<String, (usize, f64, f64, f64)>;

/// Runs every judged query against `index`, already loaded with [`memos`] as activity
/// ids; the queries of [`SYNONYM_CLASS`] with the data set's [`synonyms`].
pub async fn evaluate(index: &dyn SearchIndex, verbose: bool) -> anyhow::Result<ClassFigures> {
    let synonyms = synonyms()?;
    let mut sums: ClassFigures = BTreeMap::new();
    for judged in queries() {
        let query = ActivityQuery {
            tenant_id: Some(TENANT.into()),
            text: Some(judged.query.clone()),
            sort: SortOrder::Relevance,
            limit: MAX_LIMIT,
            synonyms: if judged.class == SYNONYM_CLASS {
                synonyms.clone()
            } else {
                Synonyms::default()
            },
            ..ActivityQuery::default()
        };
        let hits: Vec<String> = match index.search_activities(&query).await {
            Ok(page) => page.hits.into_iter().map(|h| h.activity.id).collect(),
            Err(e) => {
                outln!("  {} {:?}: refused: {e}", judged.class, judged.query)?;
                Vec::new()
            }
        };
        let (p, r, n) = score(&hits, &judged.relevant);
        if verbose {
            outln!(
                "  {:<14} {:<24} P {p:.2} R {r:.2} nDCG {n:.2}  {}",
                judged.class,
                judged.query,
                hits.join(",")
            )?;
        }
        let entry = sums.entry(judged.class).or_default();
        entry.0 += 1;
        entry.1 += p;
        entry.2 += r;
        entry.3 += n;
    }
    for (_, (count, p, r, n)) in sums.iter_mut() {
        let k = *count as f64;
        *p /= k;
        *r /= k;
        *n /= k;
    }
    Ok(sums)
}

/// A fresh embedded index in `dir` holding the data set's memos, analyzed with
/// `dictionary` when there is one.
pub async fn load(
    dir: &std::path::Path,
    dictionary: Option<Arc<Dictionary>>,
) -> anyhow::Result<Arc<ActivityIndex>> {
    let index = Arc::new(
        ActivityIndex::open(
            dir,
            IndexOptions {
                refresh_interval: std::time::Duration::ZERO,
                dictionary,
                ..IndexOptions::default()
            },
        )
        .context("opening the index")?,
    );
    let base =
        chrono::DateTime::<chrono::Utc>::from_timestamp(1_790_000_000, 0).context("a base time")?;
    let mut records = Vec::new();
    for (n, (id, memo)) in memos().into_iter().enumerate() {
        let at = base + chrono::Duration::hours(n as i64);
        let activity = Entity::ActivityLog(ActivityLog {
            id,
            tenant_id: TENANT.into(),
            deal_id: "deal".into(),
            company_id: "company".into(),
            user_id: "user".into(),
            action: ActionType::Visit,
            result: None,
            occurred_at: at,
            memo,
            tags: Vec::new(),
            created_at: at,
            updated_at: at,
        });
        let version = n as u64 + 1;
        records.push(ChangeRecord {
            shard: ShardId("0".into()),
            position: Position(format!("{version:020}")),
            key: activity.key(),
            kind: ChangeKind::Insert,
            version: Version(version),
            old_image: None,
            new_image: Some(Image {
                version: Version(version),
                body: activity.to_json(),
            }),
            committed_at_us: at.timestamp_micros(),
        });
    }
    index
        .apply(&records)
        .await
        .map_err(|e| anyhow::anyhow!("loading the memos: {e:?}"))?;
    Ok(index)
}

/// The dictionary of `--dictionary`, compiled or loaded from its cache.
fn dictionary(args: &SearchQualityArgs) -> anyhow::Result<Option<Arc<Dictionary>>> {
    let Some(source) = &args.dictionary else {
        return Ok(None);
    };
    let cache = args
        .dictionary_cache
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("tsunagu-dictionaries"));
    let started = std::time::Instant::now();
    let dictionary = Dictionary::load(source, &cache)
        .with_context(|| format!("--dictionary {}", source.display()))?;
    outln!(
        "dictionary {} ready in {:.1} s (compiled copy in {})",
        source.display(),
        started.elapsed().as_secs_f64(),
        cache.display()
    )?;
    Ok(Some(Arc::new(dictionary)))
}

/// The bytes of the files under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

pub async fn run(args: &SearchQualityArgs) -> anyhow::Result<ExitCode> {
    let dictionary = dictionary(args)?;
    let analysis = if dictionary.is_some() {
        Analysis::Dictionary
    } else {
        Analysis::Bigrams
    };
    let dir = tempfile_dir()?;
    let started = std::time::Instant::now();
    let index = load(&dir, dictionary).await?;
    let load_time = started.elapsed();
    outln!(
        "search quality: {} memos, {} judged queries, embedded index, sort=relevance, {}",
        memos().len(),
        queries().len(),
        match analysis {
            Analysis::Bigrams => "character bigrams (no dictionary)".to_string(),
            Analysis::Dictionary => format!(
                "dictionary {}",
                args.dictionary
                    .as_deref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default()
            ),
        }
    )?;
    outln!(
        "memos indexed in {:.0} ms (opening the index and one commit included), index {} KiB",
        load_time.as_secs_f64() * 1000.0,
        dir_bytes(&dir) / 1024
    )?;
    let figures = evaluate(index.as_ref(), args.verbose).await?;
    let floors = floors(analysis);
    outln!(
        "{:<14} {:>7} {:>9} {:>7} {:>8} {:>12}",
        "class",
        "queries",
        "precision",
        "recall",
        "nDCG@10",
        "floors n / p"
    )?;
    let mut failed = Vec::new();
    for (class, (count, p, r, n)) in &figures {
        let (floor_n, floor_p) = floors.get(class).copied().unwrap_or((0.0, 0.0));
        outln!("{class:<14} {count:>7} {p:>9.3} {r:>7.3} {n:>8.3} {floor_n:>6.2} {floor_p:>5.2}")?;
        if *n + 1e-9 < floor_n {
            failed.push(format!("{class} nDCG@10 {n:.3} < {floor_n:.2}"));
        }
        if *p + 1e-9 < floor_p {
            failed.push(format!("{class} precision {p:.3} < {floor_p:.2}"));
        }
    }
    drop(index);
    let _ = std::fs::remove_dir_all(&dir);
    if failed.is_empty() {
        outln!("every class at or above its floor")?;
        Ok(ExitCode::SUCCESS)
    } else {
        outln!("under the floor: {}", failed.join(", "))?;
        Ok(ExitCode::from(1))
    }
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("tsunagu-search-quality-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_precision_recall_and_ndcg() {
        let relevant: HashSet<String> = ["a".to_string(), "b".to_string()].into();
        let (p, r, n) = score(&["a".into(), "x".into(), "b".into()], &relevant);
        assert!((p - 2.0 / 3.0).abs() < 1e-9 && (r - 1.0).abs() < 1e-9);
        let ideal = 1.0 + 1.0 / 3f64.log2();
        assert!((n - (1.0 + 0.5) / ideal).abs() < 1e-9, "{n}");
        assert_eq!(score(&[], &HashSet::new()), (1.0, 1.0, 1.0));
        assert_eq!(score(&["x".into()], &HashSet::new()).2, 0.0);
    }

    #[test]
    fn the_data_set_reads_and_every_judged_id_is_a_memo() {
        let memos = memos();
        let ids: HashSet<String> = memos.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(ids.len(), 150);
        assert_eq!(memos.len(), 150, "ids are unique");
        let queries = queries();
        assert!(queries.len() >= 150, "{} queries", queries.len());
        let mut per_class: BTreeMap<&str, usize> = BTreeMap::new();
        for q in &queries {
            *per_class.entry(q.class.as_str()).or_default() += 1;
            for id in &q.relevant {
                assert!(ids.contains(id), "{}: {id}", q.query);
            }
        }
        let classes = floors(Analysis::Bigrams);
        assert_eq!(classes.len(), 10, "a floor per class");
        for class in classes.keys() {
            let count = per_class.remove(class.as_str()).unwrap_or(0);
            assert!(count >= 10, "{class}: {count} queries");
        }
        assert!(per_class.is_empty(), "queries of no class: {per_class:?}");
        assert!(!synonyms().expect("valid synonyms").is_empty());
    }

    #[test]
    fn floors_with_the_dictionary_default_to_those_without() {
        let text = "# class\tn\tp\na\t0.5\t0.6\t0.7\t0.8\nb\t0.1\t0.2\n";
        let bigrams = parse_floors(text, Analysis::Bigrams);
        let dictionary = parse_floors(text, Analysis::Dictionary);
        assert_eq!(bigrams.get("a"), Some(&(0.5, 0.6)));
        assert_eq!(dictionary.get("a"), Some(&(0.7, 0.8)));
        assert_eq!(dictionary.get("b"), Some(&(0.1, 0.2)));
        assert_eq!(floors(Analysis::Bigrams).len(), 10);
        assert_eq!(floors(Analysis::Dictionary).len(), 10);
    }

    async fn check_floors(dictionary: Option<Arc<Dictionary>>, analysis: Analysis) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let index = load(dir.path(), dictionary).await.expect("loading");
        let figures = evaluate(index.as_ref(), false).await.expect("evaluating");
        let floors = floors(analysis);
        assert_eq!(floors.len(), 10, "a floor per class");
        for (class, (floor_n, floor_p)) in floors {
            let (_, p, _, n) = figures.get(&class).copied().unwrap_or_default();
            assert!(
                n + 1e-9 >= floor_n,
                "{class}: nDCG@10 {n:.3} under {floor_n}"
            );
            assert!(
                p + 1e-9 >= floor_p,
                "{class}: precision {p:.3} under {floor_p}"
            );
        }
    }

    /// Every class stays at or above its recorded floor on the embedded index.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_class_is_at_or_above_its_floor() {
        check_floors(None, Analysis::Bigrams).await;
    }

    /// The same with the dictionary (skipped without `TSUNAGU_TEST_IPADIC_DIR`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_class_is_at_or_above_its_floor_with_the_dictionary() {
        let Some(dictionary) = tsunagu_embedded_index::morphology::test_dictionary(
            "every_class_is_at_or_above_its_floor_with_the_dictionary",
        ) else {
            return;
        };
        check_floors(Some(dictionary), Analysis::Dictionary).await;
    }
}
