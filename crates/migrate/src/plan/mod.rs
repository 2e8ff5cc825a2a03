//! Load order from foreign keys, and the Markdown migration spec document and runbook
//! generated from the spec, so the documents cannot drift from what runs.

mod markdown;

pub use markdown::{runbook, spec_document};

use crate::error::{Error, Result};
use crate::spec::Model;

/// The order tables are exported and loaded in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Groups of table indexes; every table's (non-deferred) parents are in an earlier
    /// group, so the tables of one group are independent and run in parallel.
    pub levels: Vec<Vec<usize>>,
}

impl Plan {
    pub fn order(&self) -> impl Iterator<Item = usize> + '_ {
        self.levels.iter().flatten().copied()
    }
}

/// Orders the tables topologically by their non-deferred foreign keys (Kahn's algorithm
/// by levels; within a level, spec order). A cycle is an error naming its tables.
pub fn plan(model: &Model) -> Result<Plan> {
    let n = model.tables.len();
    let mut parents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, t) in model.tables.iter().enumerate() {
        for fk in t.foreign_keys.iter().filter(|fk| !fk.deferred) {
            if fk.parent != i && !parents[i].contains(&fk.parent) {
                parents[i].push(fk.parent);
            }
        }
    }
    let mut level_of: Vec<Option<usize>> = vec![None; n];
    let mut levels: Vec<Vec<usize>> = Vec::new();
    let mut placed = 0;
    while placed < n {
        let ready: Vec<usize> = (0..n)
            .filter(|&i| level_of[i].is_none())
            .filter(|&i| {
                parents[i]
                    .iter()
                    .all(|&p| level_of[p].is_some_and(|l| l < levels.len()))
            })
            .collect();
        if ready.is_empty() {
            let remaining: Vec<usize> = (0..n).filter(|&i| level_of[i].is_none()).collect();
            return Err(Error::Cycle {
                tables: describe_cycle(model, &parents, &remaining),
            });
        }
        for &i in &ready {
            level_of[i] = Some(levels.len());
        }
        placed += ready.len();
        levels.push(ready);
    }
    Ok(Plan { levels })
}

/// Finds one cycle among the remaining tables and spells it `a → b → a`.
fn describe_cycle(model: &Model, parents: &[Vec<usize>], remaining: &[usize]) -> String {
    let Some(&start) = remaining.first() else {
        return String::new();
    };
    let mut path = vec![start];
    let mut cur = start;
    while let Some(&next) = parents[cur].iter().find(|p| remaining.contains(p)) {
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle: Vec<&str> = path[pos..]
                .iter()
                .map(|&i| model.tables[i].name.as_str())
                .collect();
            cycle.push(&model.tables[next].name);
            return cycle.join(" → ");
        }
        path.push(next);
        cur = next;
    }
    remaining
        .iter()
        .map(|&i| model.tables[i].name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(fks: &[(&str, &str, bool)], tables: &[&str]) -> String {
        let mut s = String::from("version = 1\n");
        for t in tables {
            s.push_str(&format!(
                "[[tables]]\nname = \"{t}\"\nsource = {{ type = \"node\", label = \"{t}\" }}\nprimary_key = [\"id\"]\ncolumns = [{{ name = \"id\", type = \"bigint\" }}, {{ name = \"ref\", type = \"bigint\" }}]\n"
            ));
            for (child, parent, deferred) in fks {
                if child == t {
                    s.push_str(&format!(
                        "[[tables.foreign_keys]]\ncolumns = [\"ref\"]\nreferences = \"{parent}\"\ndeferred = {deferred}\n"
                    ));
                }
            }
        }
        s
    }

    fn names(model: &Model, plan: &Plan) -> Vec<Vec<String>> {
        plan.levels
            .iter()
            .map(|l| l.iter().map(|&i| model.tables[i].name.clone()).collect())
            .collect()
    }

    #[test]
    fn parents_come_first_and_independent_tables_share_a_level() {
        let m = crate::spec::parse(
            &spec(
                &[
                    ("deals", "companies", false),
                    ("logs", "deals", false),
                    ("tags", "users", false),
                ],
                &["logs", "deals", "companies", "users", "tags"],
            ),
            "t",
        )
        .unwrap();
        let p = plan(&m).unwrap();
        assert_eq!(
            names(&m, &p),
            vec![
                vec!["companies", "users"],
                vec!["deals", "tags"],
                vec!["logs"]
            ]
        );
    }

    #[test]
    fn a_cycle_names_its_tables() {
        let m = crate::spec::parse(
            &spec(
                &[("a", "b", false), ("b", "c", false), ("c", "a", false)],
                &["a", "b", "c", "d"],
            ),
            "t",
        )
        .unwrap();
        let e = plan(&m).unwrap_err().to_string();
        assert!(e.contains("a → b → c → a"), "{e}");
        assert!(e.contains("deferred = true"), "{e}");
    }

    #[test]
    fn a_deferred_constraint_breaks_the_cycle() {
        let m = crate::spec::parse(
            &spec(&[("a", "b", false), ("b", "a", true)], &["a", "b"]),
            "t",
        )
        .unwrap();
        let p = plan(&m).unwrap();
        assert_eq!(names(&m, &p), vec![vec!["b"], vec!["a"]]);
    }

    #[test]
    fn self_references_do_not_block() {
        let m = crate::spec::parse(&spec(&[("a", "a", true)], &["a"]), "t").unwrap();
        assert_eq!(plan(&m).unwrap().levels, vec![vec![0]]);
    }
}
