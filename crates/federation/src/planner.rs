//! Replica scheduling: how many replicas of a ReplicaSchedulingPreference each member cluster runs.
//!
//! As upstream's planner: a cluster takes part when the preference names it or has a `"*"` entry; each first gets its
//! `minReplicas`, then what is left is shared in proportion to the weights, no cluster going above its
//! `maxReplicas`; shares that do not divide evenly go to the heaviest clusters first, ties by name. Only clusters
//! that are ready are given to the planner, so replicas of an offline member move to the others.

use std::collections::BTreeMap;

use serde_json::Value;

/// One cluster's entry in `spec.clusters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preference {
    pub weight: i64,
    pub min_replicas: i64,
    pub max_replicas: Option<i64>,
}

impl Preference {
    fn from_value(v: &Value) -> Self {
        Self {
            weight: v.get("weight").and_then(Value::as_i64).unwrap_or(0),
            min_replicas: v.get("minReplicas").and_then(Value::as_i64).unwrap_or(0),
            max_replicas: v.get("maxReplicas").and_then(Value::as_i64),
        }
    }
}

/// `spec.clusters` of a ReplicaSchedulingPreference, by cluster name (`*` for every other cluster).
pub fn preferences(spec: &Value) -> BTreeMap<String, Preference> {
    spec.get("clusters")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), Preference::from_value(v)))
                .collect()
        })
        .unwrap_or_default()
}

/// Replicas per cluster for `total` over `clusters` (the ready ones). Clusters without a preference get none; with no
/// preferences at all every cluster weighs the same, as upstream defaults `"*": {weight: 1}`.
pub fn plan(total: i64, prefs: &BTreeMap<String, Preference>, clusters: &[String]) -> BTreeMap<String, i64> {
    let even = Preference {
        weight: 1,
        min_replicas: 0,
        max_replicas: None,
    };
    let mut named: Vec<(String, Preference)> = clusters
        .iter()
        .filter_map(|c| {
            let p = if prefs.is_empty() {
                Some(even)
            } else {
                prefs.get(c).or_else(|| prefs.get("*")).copied()
            };
            p.map(|p| (c.clone(), p))
        })
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: BTreeMap<String, i64> = named.iter().map(|(c, _)| (c.clone(), 0)).collect();
    let cap = |p: &Preference| p.max_replicas.unwrap_or(i64::MAX);
    let mut left = total.max(0);
    for (c, p) in &named {
        let give = p.min_replicas.min(cap(p)).min(left).max(0);
        out.insert(c.clone(), give);
        left -= give;
    }
    while left > 0 {
        let open: Vec<&(String, Preference)> = named
            .iter()
            .filter(|(c, p)| p.weight > 0 && out[c] < cap(p))
            .collect();
        let weights: i64 = open.iter().map(|(_, p)| p.weight).sum();
        if open.is_empty() || weights == 0 {
            break;
        }
        let mut given = 0;
        for (c, p) in &open {
            let share = (left * p.weight / weights).min(cap(p) - out[c]);
            *out.entry(c.clone()).or_default() += share;
            given += share;
        }
        left -= given;
        if given == 0 {
            // Remainders: one each to the heaviest clusters that can take more.
            let mut by_weight = open.clone();
            by_weight.sort_by(|a, b| b.1.weight.cmp(&a.1.weight).then(a.0.cmp(&b.0)));
            for (c, p) in by_weight {
                if left == 0 {
                    break;
                }
                if out[c] < cap(p) {
                    *out.entry(c.clone()).or_default() += 1;
                    left -= 1;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nine_replicas_weighted_two_to_one_split_six_and_three() {
        let prefs = preferences(&json!({"clusters": {"member1": {"weight": 2}, "member2": {"weight": 1}}}));
        let p = plan(9, &prefs, &names(&["member1", "member2"]));
        assert_eq!(p, BTreeMap::from([("member1".into(), 6), ("member2".into(), 3)]));
    }

    #[test]
    fn replicas_of_a_cluster_that_is_not_ready_go_to_the_others() {
        let prefs = preferences(&json!({"clusters": {"member1": {"weight": 2}, "member2": {"weight": 1}}}));
        let p = plan(9, &prefs, &names(&["member2"]));
        assert_eq!(p, BTreeMap::from([("member2".into(), 9)]));
    }

    #[test]
    fn minimums_come_first_maximums_cap_and_remainders_go_to_the_heaviest() {
        let prefs = preferences(&json!({"clusters": {
            "a": {"weight": 1, "minReplicas": 4}, "b": {"weight": 1, "maxReplicas": 2}, "*": {"weight": 3}}}));
        let p = plan(10, &prefs, &names(&["a", "b", "c"]));
        assert_eq!(p["a"] + p["b"] + p["c"], 10);
        assert!(p["a"] >= 4 && p["b"] <= 2);
        assert_eq!(
            p,
            BTreeMap::from([("a".into(), 5), ("b".into(), 1), ("c".into(), 4)])
        );
        let even = plan(5, &BTreeMap::new(), &names(&["x", "y"]));
        assert_eq!(even, BTreeMap::from([("x".into(), 3), ("y".into(), 2)]));
    }

    #[test]
    fn clusters_without_a_preference_get_nothing_and_capped_totals_stay_unplaced() {
        let prefs = preferences(&json!({"clusters": {"a": {"weight": 1, "maxReplicas": 3}}}));
        let p = plan(10, &prefs, &names(&["a", "b"]));
        assert_eq!(p, BTreeMap::from([("a".into(), 3)]));
    }
}
