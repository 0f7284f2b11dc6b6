//! The queue of pods waiting for a node, as upstream's three sub-queues:
//! - active: ready to be tried, highest `spec.priority` first, then oldest first;
//! - backoff: failed recently, retried after `1s * 2^(attempts-1)` capped at 10 s;
//! - unschedulable: no node fitted; they wait for a cluster change ([`Queue::move_all_to_backoff`]) or, at the
//!   latest, [`UNSCHEDULABLE_MAX`].
//!
//! Heap entries are invalidated lazily: each carries the sequence number the pod had when pushed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

use crate::cache::PodKey;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Upstream's `podMaxInUnschedulablePodsDuration`.
pub const UNSCHEDULABLE_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Active,
    Backoff,
    Unschedulable,
}

struct Entry {
    pod: Arc<Pod>,
    attempts: u32,
    seq: u64,
    state: State,
    last_attempt: Instant,
}

/// A pod handed out for one scheduling attempt.
pub struct Popped {
    pub key: PodKey,
    pub pod: Arc<Pod>,
    /// Attempts before this one.
    pub attempts: u32,
}

#[derive(Default)]
pub struct Queue {
    entries: HashMap<PodKey, Entry>,
    active: BinaryHeap<(i32, Reverse<u64>, PodKey)>,
    backoff: BinaryHeap<Reverse<(Instant, u64, PodKey)>>,
    /// When each unschedulable pod is retried anyway.
    flush: BinaryHeap<Reverse<(Instant, u64, PodKey)>>,
    unschedulable: usize,
    seq: u64,
}

pub fn backoff_for(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    INITIAL_BACKOFF.saturating_mul(1 << exp).min(MAX_BACKOFF)
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

impl Queue {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    pub fn keys(&self) -> Vec<PodKey> {
        self.entries.keys().cloned().collect()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn push_active(&mut self, key: PodKey, pod: Arc<Pod>, attempts: u32, last_attempt: Instant) {
        let seq = self.next_seq();
        self.active.push((priority(&pod), Reverse(seq), key.clone()));
        self.set(
            key,
            Entry {
                pod,
                attempts,
                seq,
                state: State::Active,
                last_attempt,
            },
        );
    }

    fn push_backoff(&mut self, key: PodKey, pod: Arc<Pod>, attempts: u32, last_attempt: Instant) {
        let seq = self.next_seq();
        self.backoff
            .push(Reverse((last_attempt + backoff_for(attempts), seq, key.clone())));
        self.set(
            key,
            Entry {
                pod,
                attempts,
                seq,
                state: State::Backoff,
                last_attempt,
            },
        );
    }

    fn set(&mut self, key: PodKey, entry: Entry) {
        if entry.state == State::Unschedulable {
            self.unschedulable += 1;
        }
        if let Some(old) = self.entries.insert(key, entry)
            && old.state == State::Unschedulable
        {
            self.unschedulable -= 1;
        }
    }

    /// A pending pod was added or changed. A new pod becomes active; a changed spec gives an unschedulable pod
    /// another chance (after its backoff); other changes (such as our own status patch) only refresh the copy.
    pub fn upsert(&mut self, key: PodKey, pod: Arc<Pod>, now: Instant) {
        let Some(entry) = self.entries.get_mut(&key) else {
            self.push_active(key, pod, 0, now);
            return;
        };
        let changed = entry.pod.spec != pod.spec || entry.pod.metadata.labels != pod.metadata.labels;
        if changed && entry.state == State::Unschedulable {
            let (attempts, last) = (entry.attempts, entry.last_attempt);
            self.push_backoff(key, pod, attempts, last);
        } else {
            entry.pod = pod;
        }
    }

    pub fn remove(&mut self, key: &str) {
        if let Some(old) = self.entries.remove(key)
            && old.state == State::Unschedulable
        {
            self.unschedulable -= 1;
        }
    }

    /// No node fitted: wait for a cluster change.
    pub fn add_unschedulable(&mut self, key: PodKey, pod: Arc<Pod>, attempts: u32, now: Instant) {
        let seq = self.next_seq();
        self.flush
            .push(Reverse((now + UNSCHEDULABLE_MAX, seq, key.clone())));
        self.set(
            key,
            Entry {
                pod,
                attempts,
                seq,
                state: State::Unschedulable,
                last_attempt: now,
            },
        );
    }

    /// A transient failure (binding refused, API error): retry after the backoff.
    pub fn add_backoff(&mut self, key: PodKey, pod: Arc<Pod>, attempts: u32, now: Instant) {
        self.push_backoff(key, pod, attempts, now);
    }

    /// Something changed that may let unschedulable pods fit: they are retried once their backoff has passed.
    pub fn move_all_to_backoff(&mut self) {
        if self.unschedulable == 0 {
            return;
        }
        let keys: Vec<PodKey> = self
            .entries
            .iter()
            .filter(|(_, e)| e.state == State::Unschedulable)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(e) = self.entries.remove(&key) {
                self.unschedulable -= 1;
                self.push_backoff(key, e.pod, e.attempts, e.last_attempt);
            }
        }
    }

    /// Moves due backoff pods (and long-unschedulable ones) to active.
    fn promote(&mut self, now: Instant) {
        while let Some(Reverse((due, _, _))) = self.backoff.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((_, seq, key))) = self.backoff.pop() else {
                break;
            };
            if let Some(e) = self.entries.get(&key)
                && e.seq == seq
                && e.state == State::Backoff
            {
                let seq = self.next_seq();
                if let Some(e) = self.entries.get_mut(&key) {
                    e.seq = seq;
                    e.state = State::Active;
                    self.active.push((priority(&e.pod), Reverse(seq), key));
                }
            }
        }
        while let Some(Reverse((due, _, _))) = self.flush.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((_, seq, key))) = self.flush.pop() else {
                break;
            };
            if self
                .entries
                .get(&key)
                .is_some_and(|e| e.seq == seq && e.state == State::Unschedulable)
                && let Some(e) = self.entries.remove(&key)
            {
                self.unschedulable -= 1;
                self.push_active(key, e.pod, e.attempts, e.last_attempt);
            }
        }
    }

    /// The next pod to try, if any is due.
    pub fn pop(&mut self, now: Instant) -> Option<Popped> {
        self.promote(now);
        while let Some((_, Reverse(seq), key)) = self.active.pop() {
            let valid = self
                .entries
                .get(&key)
                .is_some_and(|e| e.seq == seq && e.state == State::Active);
            if valid && let Some(e) = self.entries.remove(&key) {
                return Some(Popped {
                    key,
                    pod: e.pod,
                    attempts: e.attempts,
                });
            }
        }
        None
    }

    /// When something next becomes due without outside help (possibly earlier, for entries since superseded).
    pub fn next_due(&self) -> Option<Instant> {
        let backoff = self.backoff.peek().map(|Reverse((due, _, _))| *due);
        let flush = self.flush.peek().map(|Reverse((due, _, _))| *due);
        [backoff, flush].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn pod(prio: i32) -> Arc<Pod> {
        Arc::new(Pod {
            spec: Some(PodSpec {
                priority: Some(prio),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_ten() {
        let secs: Vec<u64> = (1..=6).map(|a| backoff_for(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn higher_priority_pods_go_first_then_oldest() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.upsert("a".into(), pod(0), now);
        q.upsert("b".into(), pod(10), now);
        q.upsert("c".into(), pod(0), now);
        let order: Vec<String> = std::iter::from_fn(|| q.pop(now).map(|p| p.key)).collect();
        assert_eq!(order, ["b", "a", "c"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_cluster_change_then_their_backoff() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.add_unschedulable("a".into(), pod(0), 2, now);
        assert!(q.pop(now + Duration::from_secs(60)).is_none());
        q.move_all_to_backoff();
        assert!(q.pop(now + Duration::from_millis(1500)).is_none());
        assert_eq!(q.next_due(), Some(now + Duration::from_secs(2)));
        assert_eq!(q.pop(now + Duration::from_secs(2)).map(|p| p.attempts), Some(2));
    }

    #[test]
    fn a_status_only_update_does_not_retry_an_unschedulable_pod_but_a_spec_change_does() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.add_unschedulable("a".into(), pod(0), 1, now);
        q.upsert("a".into(), pod(0), now);
        assert!(q.pop(now + Duration::from_secs(5)).is_none());
        q.upsert("a".into(), pod(5), now);
        assert!(q.pop(now + Duration::from_secs(5)).is_some());
        assert!(q.is_empty());
    }

    #[test]
    fn pods_unschedulable_for_five_minutes_are_retried_anyway() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.add_unschedulable("a".into(), pod(0), 1, now);
        assert_eq!(q.next_due(), Some(now + UNSCHEDULABLE_MAX));
        assert!(q.pop(now + UNSCHEDULABLE_MAX).is_some());
    }
}
