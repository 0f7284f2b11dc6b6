//! Replica scheduling: how many replicas of a ReplicaSchedulingPreference each member cluster runs.
//!
//! As upstream's planner: a cluster takes part when the preference names it or has a `"*"` entry; each first gets its
//! `minReplicas`, then what is left is shared in proportion to the weights, no cluster going above its
//! `maxReplicas`; shares that do not divide evenly go to the heaviest clusters first, ties by name. Only clusters
//! that are ready are given to the planner, so replicas of an offline member move to the others (beyond KubeFed,
//! whose planner only sees clusters by their capacity).
//!
//! `rebalance: false` (upstream's default) is [`plan_keeping`]: after the minimums, each cluster keeps the replicas
//! it runs now (heaviest first, up to its maximum and to the total), as upstream's "preallocation"; only the rest is
//! placed, on the clusters furthest below their weighted share. Scaling up therefore adds replicas where they are
//! missing, scaling down takes them from the lightest clusters, and a member that comes back gets nothing until
//! the total changes. `rebalance: true` is [`plan`]: the weighted split, whatever runs now.

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

/// Whether the preference moves running replicas to reach the weighted split (`spec.rebalance`, false unless set).
pub fn rebalance(spec: &Value) -> bool {
    spec.get("rebalance").and_then(Value::as_bool).unwrap_or(false)
}

/// The clusters that take part, with their preference, by name.
fn participants(prefs: &BTreeMap<String, Preference>, clusters: &[String]) -> Vec<(String, Preference)> {
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
    named.dedup_by(|a, b| a.0 == b.0);
    named
}

fn cap(p: &Preference) -> i64 {
    p.max_replicas.unwrap_or(i64::MAX)
}

/// Every participant at its minimum (as far as `total` reaches); returns what is left.
fn minimums(total: i64, named: &[(String, Preference)], out: &mut BTreeMap<String, i64>) -> i64 {
    let mut left = total.max(0);
    for (c, p) in named {
        let give = p.min_replicas.min(cap(p)).min(left).max(0);
        out.insert(c.clone(), give);
        left -= give;
    }
    left
}

/// Shares `left` over `(cluster, weight, room)` in proportion to the weights, none above its room; remainders one
/// each to the heaviest, ties by name. Returns what could not be placed.
fn distribute(mut left: i64, open: &[(String, i64, i64)], out: &mut BTreeMap<String, i64>) -> i64 {
    let mut room: BTreeMap<&str, i64> = open.iter().map(|(c, _, r)| (c.as_str(), *r)).collect();
    while left > 0 {
        let open: Vec<&(String, i64, i64)> = open
            .iter()
            .filter(|(c, w, _)| *w > 0 && room[c.as_str()] > 0)
            .collect();
        let weights: i64 = open.iter().map(|(_, w, _)| *w).sum();
        if open.is_empty() || weights == 0 {
            break;
        }
        let mut given = 0;
        for (c, w, _) in &open {
            let r = room[c.as_str()];
            // i128: a large total times a large weight must not overflow.
            let share = i64::try_from(i128::from(left) * i128::from(*w) / i128::from(weights))
                .unwrap_or(i64::MAX)
                .min(r);
            *out.entry(c.clone()).or_default() += share;
            room.insert(c.as_str(), r - share);
            given += share;
        }
        left -= given;
        if given == 0 {
            let mut by_weight = open.clone();
            by_weight.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            for (c, _, _) in by_weight {
                if left == 0 {
                    break;
                }
                if room[c.as_str()] > 0 {
                    *out.entry(c.clone()).or_default() += 1;
                    room.insert(c.as_str(), room[c.as_str()] - 1);
                    left -= 1;
                }
            }
        }
    }
    left
}

/// Replicas per cluster for `total` over `clusters` (the ready ones), as `rebalance: true`: the weighted split.
/// Clusters without a preference get none; with no preferences at all every cluster weighs the same, as upstream
/// defaults `"*": {weight: 1}`.
pub fn plan(total: i64, prefs: &BTreeMap<String, Preference>, clusters: &[String]) -> BTreeMap<String, i64> {
    let named = participants(prefs, clusters);
    let mut out = BTreeMap::new();
    let left = minimums(total, &named, &mut out);
    let open: Vec<(String, i64, i64)> = named
        .iter()
        .map(|(c, p)| (c.clone(), p.weight, cap(p).saturating_sub(out[c])))
        .collect();
    distribute(left, &open, &mut out);
    out
}

/// Replicas per cluster as `rebalance: false`: `current` (replicas running now per cluster) stay where they are
/// as far as the total, the minimums and the maximums allow; the rest fill the clusters furthest below the
/// weighted split of [`plan`].
pub fn plan_keeping(
    total: i64,
    prefs: &BTreeMap<String, Preference>,
    clusters: &[String],
    current: &BTreeMap<String, i64>,
) -> BTreeMap<String, i64> {
    let named = participants(prefs, clusters);
    let ideal = plan(total, prefs, clusters);
    let mut out = BTreeMap::new();
    let mut left = minimums(total, &named, &mut out);
    // Heaviest first keep theirs, as upstream, so a shrinking total takes replicas from the light clusters.
    let mut by_weight: Vec<&(String, Preference)> = named.iter().collect();
    by_weight.sort_by(|a, b| b.1.weight.cmp(&a.1.weight).then(a.0.cmp(&b.0)));
    for (c, p) in by_weight {
        let now = current.get(c).copied().unwrap_or(0).min(cap(p));
        let keep = (now - out[c]).min(left).max(0);
        *out.entry(c.clone()).or_default() += keep;
        left -= keep;
    }
    let deficits: Vec<(String, i64, i64)> = named
        .iter()
        .filter_map(|(c, _)| {
            let missing = ideal.get(c).copied().unwrap_or(0) - out[c];
            (missing > 0).then(|| (c.clone(), missing, missing))
        })
        .collect();
    distribute(left, &deficits, &mut out);
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

    fn counts(v: &[(&str, i64)]) -> BTreeMap<String, i64> {
        v.iter().map(|(c, n)| (c.to_string(), *n)).collect()
    }

    #[test]
    fn rebalance_is_off_unless_the_preference_asks_for_it() {
        assert!(!rebalance(&json!({"totalReplicas": 3})));
        assert!(!rebalance(&json!({"rebalance": false})));
        assert!(rebalance(&json!({"rebalance": true})));
    }

    #[test]
    fn without_rebalance_a_member_that_comes_back_gets_nothing_until_the_total_changes() {
        let prefs = preferences(&json!({"clusters": {"member1": {"weight": 2}, "member2": {"weight": 1}}}));
        let both = names(&["member1", "member2"]);
        // member1 was offline: member2 runs all nine.
        let now = counts(&[("member2", 9)]);
        assert_eq!(
            plan_keeping(9, &prefs, &both, &now),
            counts(&[("member1", 0), ("member2", 9)])
        );
        // With rebalance the weighted split comes back.
        assert_eq!(plan(9, &prefs, &both), counts(&[("member1", 6), ("member2", 3)]));
        // Scaling up places the new replicas where they are missing.
        assert_eq!(
            plan_keeping(12, &prefs, &both, &now),
            counts(&[("member1", 3), ("member2", 9)])
        );
    }

    #[test]
    fn without_rebalance_scaling_keeps_what_runs_and_moves_only_the_difference() {
        let prefs = preferences(&json!({"clusters": {"a": {"weight": 2}, "b": {"weight": 1}}}));
        let ab = names(&["a", "b"]);
        let now = counts(&[("a", 6), ("b", 3)]);
        assert_eq!(plan_keeping(9, &prefs, &ab, &now), now);
        assert_eq!(plan_keeping(12, &prefs, &ab, &now), counts(&[("a", 8), ("b", 4)]));
        // Shrinking takes from the lightest cluster first, as upstream's heaviest-first preallocation.
        assert_eq!(plan_keeping(7, &prefs, &ab, &now), counts(&[("a", 6), ("b", 1)]));
        // Nothing runs yet: the weighted split.
        assert_eq!(
            plan_keeping(9, &prefs, &ab, &BTreeMap::new()),
            plan(9, &prefs, &ab)
        );
    }

    #[test]
    fn without_rebalance_minimums_and_maximums_still_hold() {
        let prefs = preferences(&json!({"clusters": {
            "a": {"weight": 1, "maxReplicas": 4}, "b": {"weight": 1, "minReplicas": 3}}}));
        let ab = names(&["a", "b"]);
        // a runs more than its maximum, b less than its minimum.
        let p = plan_keeping(8, &prefs, &ab, &counts(&[("a", 7), ("b", 1)]));
        assert_eq!(p, counts(&[("a", 4), ("b", 4)]));
    }

    #[test]
    fn without_rebalance_replicas_of_an_offline_member_still_move() {
        let prefs =
            preferences(&json!({"clusters": {"a": {"weight": 1}, "b": {"weight": 1}, "c": {"weight": 1}}}));
        // c went offline: only a and b are ready; they keep theirs and share c's three.
        let now = counts(&[("a", 3), ("b", 3), ("c", 3)]);
        let p = plan_keeping(9, &prefs, &names(&["a", "b"]), &now);
        assert_eq!(p.values().sum::<i64>(), 9);
        assert!(p["a"] >= 3 && p["b"] >= 3 && !p.contains_key("c"), "{p:?}");
    }
}
