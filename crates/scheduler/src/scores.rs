//! Scores: of the nodes that passed the filters, which suits the pod best? Pure functions; each gives 0..=100
//! ([`MAX_SCORE`]) and the total weighs them as upstream's default profile does ([`WEIGHTS`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PreferredSchedulingTerm;

use crate::filters::term_matches;

pub const MAX_SCORE: i64 = 100;

/// Upstream's default plugin weights: NodeResourcesFit 1, PodTopologySpread 2, NodeAffinity 2, TaintToleration 3.
pub struct Weights {
    pub least_allocated: i64,
    pub spread: i64,
    pub affinity: i64,
    pub taints: i64,
}

pub const WEIGHTS: Weights = Weights {
    least_allocated: 1,
    spread: 2,
    affinity: 2,
    taints: 3,
};

/// LeastAllocated for one resource: the share left free after placing the pod.
fn least_allocated_one(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_SCORE / capacity
}

/// NodeResourcesFit's LeastAllocated strategy over CPU and memory (equal weights): emptier nodes score higher.
/// `requested_*` include the incoming pod.
pub fn least_allocated(requested_cpu: i64, cap_cpu: i64, requested_mem: i64, cap_mem: i64) -> i64 {
    (least_allocated_one(requested_cpu, cap_cpu) + least_allocated_one(requested_mem, cap_mem)) / 2
}

/// Spreading of a controller's pods: nodes with fewer pods of the same owner score higher. `max_count` is the
/// highest count over the feasible nodes.
pub fn spread(count_on_node: u32, max_count: u32) -> i64 {
    if max_count == 0 {
        return MAX_SCORE;
    }
    MAX_SCORE * i64::from(max_count - count_on_node.min(max_count)) / i64::from(max_count)
}

/// Preferred node affinity, raw: the sum of the weights of the terms the node matches.
pub fn preferred_affinity_raw(
    terms: &[PreferredSchedulingTerm],
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> i64 {
    terms
        .iter()
        .filter(|t| t.weight != 0 && term_matches(&t.preference, node_name, labels))
        .map(|t| i64::from(t.weight))
        .sum()
}

/// Scales raw scores to 0..=100 by the highest one (upstream's `DefaultNormalizeScore`); `reverse` when lower is better.
pub fn normalize(raw: i64, max_raw: i64, reverse: bool) -> i64 {
    if max_raw == 0 {
        return if reverse { MAX_SCORE } else { 0 };
    }
    let s = raw * MAX_SCORE / max_raw;
    if reverse { MAX_SCORE - s } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};

    #[test]
    fn emptier_nodes_score_higher() {
        assert_eq!(least_allocated(1000, 4000, 0, 1000), (75 + 100) / 2);
        assert!(least_allocated(100, 4000, 100, 1000) > least_allocated(3000, 4000, 900, 1000));
        assert_eq!(least_allocated(5000, 4000, 0, 0), 0);
    }

    #[test]
    fn nodes_with_fewer_pods_of_the_same_owner_score_higher() {
        assert_eq!(spread(0, 0), 100);
        assert_eq!(spread(0, 4), 100);
        assert_eq!(spread(4, 4), 0);
        assert_eq!(spread(1, 4), 75);
    }

    #[test]
    fn preferred_terms_add_their_weights_and_normalize_to_the_best_node() {
        let term = |zone: &str, weight| PreferredSchedulingTerm {
            weight,
            preference: NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: "zone".into(),
                    operator: "In".into(),
                    values: Some(vec![zone.into()]),
                }]),
                match_fields: None,
            },
        };
        let terms = [term("a", 10), term("a", 5), term("b", 50)];
        let a: BTreeMap<_, _> = [("zone".to_string(), "a".to_string())].into();
        let b: BTreeMap<_, _> = [("zone".to_string(), "b".to_string())].into();
        assert_eq!(preferred_affinity_raw(&terms, "n", &a), 15);
        assert_eq!(preferred_affinity_raw(&terms, "n", &b), 50);
        assert_eq!(normalize(15, 50, false), 30);
        assert_eq!(normalize(0, 0, false), 0);
        assert_eq!(normalize(1, 2, true), 50);
        assert_eq!(normalize(0, 0, true), 100);
    }
}
