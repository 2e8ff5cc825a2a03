//! What the load writes: activities on `deals` deals picked uniformly or by a Zipf law,
//! as a mix of inserts, updates of live activities and deletes.

use crate::sample::Sample;
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use tsunagu_domain::{ActivityLog, Entity};
use tsunagu_embedded_store::{Condition, WriteOp};

/// How deals are picked.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Skew {
    Uniform,
    /// Zipf with this exponent: a few hot deals get most writes.
    Zipf {
        exponent: f64,
    },
}

impl FromStr for Skew {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(Skew::Uniform),
            "zipf" => Ok(Skew::Zipf { exponent: 1.0 }),
            _ => match s.strip_prefix("zipf:").map(str::parse::<f64>) {
                Some(Ok(exponent)) if exponent > 0.0 && exponent.is_finite() => {
                    Ok(Skew::Zipf { exponent })
                }
                _ => Err(format!(
                    "{s:?} is not a skew: use `uniform`, `zipf` or `zipf:EXPONENT` (EXPONENT > 0)"
                )),
            },
        }
    }
}

impl fmt::Display for Skew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skew::Uniform => f.write_str("uniform"),
            Skew::Zipf { exponent } => write!(f, "zipf:{exponent}"),
        }
    }
}

/// Shares of inserts, updates and deletes, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mix {
    pub insert: u32,
    pub update: u32,
    pub delete: u32,
}

impl FromStr for Mix {
    type Err = String;
    /// `INSERT,UPDATE,DELETE` in percent, summing to 100 (for example `70,25,5`).
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<u32> = s
            .split(',')
            .map(|p| p.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                format!("{s:?} is not a mix: use INSERT,UPDATE,DELETE percentages such as 70,25,5")
            })?;
        match parts.as_slice() {
            [insert, update, delete] if insert + update + delete == 100 && *insert > 0 => Ok(Mix {
                insert: *insert,
                update: *update,
                delete: *delete,
            }),
            _ => Err(format!(
                "{s:?} is not a mix: three percentages (insert,update,delete) that sum to 100, with inserts above 0"
            )),
        }
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{}", self.insert, self.update, self.delete)
    }
}

/// Generates the writes of a run.
pub struct Workload {
    rng: StdRng,
    sample: Sample,
    zipf: Option<Zipf<f64>>,
    mix: Mix,
    /// Live activity ids per deal (ids only, so memory stays small on long runs).
    live: Vec<Vec<u64>>,
    next_id: u64,
    run_id: i64,
}

impl Workload {
    pub fn new(seed: u64, deals: u32, skew: Skew, mix: Mix) -> Self {
        let deals = deals.max(1);
        let zipf = match skew {
            Skew::Uniform => None,
            Skew::Zipf { exponent } => Zipf::new(f64::from(deals), exponent).ok(),
        };
        Self {
            rng: StdRng::seed_from_u64(seed),
            sample: Sample::new(seed, deals, Utc::now()),
            zipf,
            mix,
            live: vec![Vec::new(); deals as usize],
            next_id: 0,
            run_id: Utc::now().timestamp_millis(),
        }
    }

    fn pick_deal(&mut self) -> usize {
        let n = self.live.len();
        match &self.zipf {
            Some(z) => (z.sample(&mut self.rng) as usize)
                .saturating_sub(1)
                .min(n - 1),
            None => self.rng.random_range(0..n),
        }
    }

    fn activity(&mut self, deal: usize, id: u64) -> ActivityLog {
        let deal = self.sample.deals[deal].clone();
        let mut activity = self.sample.activity_on(&deal, Utc::now());
        activity.id = format!("bench-{}-{id}", self.run_id);
        activity
    }

    /// The next write.
    pub fn next_op(&mut self) -> WriteOp {
        let deal = self.pick_deal();
        let roll = self.rng.random_range(0..100);
        let has_live = !self.live[deal].is_empty();
        if roll >= self.mix.insert && has_live {
            let slot = self.rng.random_range(0..self.live[deal].len());
            let id = self.live[deal][slot];
            if roll >= self.mix.insert + self.mix.update {
                self.live[deal].swap_remove(slot);
                let key = self.activity(deal, id).key();
                return WriteOp::Delete {
                    key,
                    condition: Condition::None,
                };
            }
            let activity = self.activity(deal, id);
            return WriteOp::Put {
                key: activity.key(),
                body: Entity::ActivityLog(activity).to_json(),
                condition: Condition::None,
            };
        }
        self.next_id += 1;
        let id = self.next_id;
        self.live[deal].push(id);
        let activity = self.activity(deal, id);
        WriteOp::Put {
            key: activity.key(),
            body: Entity::ActivityLog(activity).to_json(),
            condition: Condition::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_and_skews_parse_with_clear_errors() {
        assert_eq!(
            "70,25,5".parse::<Mix>(),
            Ok(Mix {
                insert: 70,
                update: 25,
                delete: 5
            })
        );
        assert!("70,25"
            .parse::<Mix>()
            .unwrap_err()
            .contains("three percentages"));
        assert!("50,50,10".parse::<Mix>().is_err());
        assert_eq!("zipf:1.2".parse::<Skew>(), Ok(Skew::Zipf { exponent: 1.2 }));
        assert!("zipf:-1".parse::<Skew>().is_err());
        assert!("pareto".parse::<Skew>().unwrap_err().contains("uniform"));
    }

    #[test]
    fn the_mix_is_respected_and_updates_hit_live_items() {
        let mut w = Workload::new(
            1,
            20,
            Skew::Zipf { exponent: 1.1 },
            "60,30,10".parse().unwrap(),
        );
        let (mut puts, mut deletes) = (0, 0);
        for _ in 0..5_000 {
            match w.next_op() {
                WriteOp::Put { .. } => puts += 1,
                WriteOp::Delete { .. } => deletes += 1,
            }
        }
        assert!((350..650).contains(&deletes), "deletes: {deletes}");
        assert_eq!(puts + deletes, 5_000);
    }
}
