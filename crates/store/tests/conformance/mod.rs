//! The storage conformance suite: every case is written once against `dyn Store` and run on every backend by
//! `conformance_tests!(make_harness)` in that backend's test file.

#![allow(dead_code)]

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use store::{Error, EventKind, ListOptions, MAX_VALUE_SIZE, Store, WatchEvent, WatchOptions, WatchStream};
use testkit::eventually;

/// A fresh, empty store and what keeps it alive.
pub struct Harness {
    pub store: Arc<dyn Store>,
    /// Moves the store's clock forward (TTL expiry); backends on real time ignore it.
    pub advance_clock: Box<dyn Fn(Duration) + Send + Sync>,
    /// Fixtures (temp dirs, processes) dropped after the store.
    pub keep: Box<dyn Any + Send + Sync>,
}

/// Generates one `#[tokio::test]` per conformance case, each on a fresh harness from `$make`.
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@cases $make;
            get_returns_what_create_wrote_with_its_revisions,
            create_of_an_existing_key_fails_with_already_exists_and_keeps_the_value,
            get_update_and_delete_of_a_missing_key_fail_with_not_found,
            update_with_a_stale_revision_fails_with_conflict_naming_the_current_revision,
            delete_returns_the_deleted_value_and_honours_the_expected_revision,
            concurrent_compare_and_swap_increments_lose_no_update,
            revisions_are_global_and_grow_with_every_write,
            list_returns_the_keys_under_a_prefix_in_order_and_nothing_else,
            list_pages_at_a_fixed_revision_see_one_snapshot_under_concurrent_writes,
            list_at_a_past_revision_shows_the_state_then_and_rejects_future_revisions,
            watch_delivers_added_modified_deleted_in_revision_order_with_previous_values,
            watch_resumes_from_a_given_revision,
            watch_of_one_key_ignores_other_keys,
            watch_from_now_sees_a_write_made_right_after_it_returns,
            watch_from_an_old_revision_replays_a_long_history_in_order,
            keys_with_a_ttl_expire_with_a_deleted_event_and_others_stay,
            compaction_makes_older_revisions_fail_with_compacted,
            invalid_keys_are_rejected_and_write_nothing,
            values_over_the_limit_are_rejected_and_write_nothing,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() -> anyhow::Result<()> {
                let harness = $make().await?;
                conformance::$case(&harness).await
            }
        )*
    };
}

const WAIT: Duration = Duration::from_secs(15);

fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next_event(watch: &mut WatchStream) -> anyhow::Result<WatchEvent> {
    match tokio::time::timeout(WAIT, watch.next()).await {
        Ok(Some(Ok(event))) => Ok(event),
        Ok(Some(Err(e))) => bail!("watch failed: {e}"),
        Ok(None) => bail!("watch ended"),
        Err(_) => bail!("no watch event within {WAIT:?}"),
    }
}

async fn next_error(watch: &mut WatchStream) -> anyhow::Result<Error> {
    match tokio::time::timeout(WAIT, watch.next()).await {
        Ok(Some(Err(e))) => Ok(e),
        Ok(Some(Ok(event))) => bail!("expected an error, got {event:?}"),
        Ok(None) => bail!("watch ended without an error"),
        Err(_) => bail!("no watch error within {WAIT:?}"),
    }
}

fn value_of(event: &WatchEvent) -> Option<&[u8]> {
    event.current.as_ref().map(|kv| &kv.value[..])
}

fn prev_value_of(event: &WatchEvent) -> Option<&[u8]> {
    event.prev.as_ref().map(|kv| &kv.value[..])
}

pub async fn get_returns_what_create_wrote_with_its_revisions(h: &Harness) -> anyhow::Result<()> {
    let s = &h.store;
    let before = s.current_revision().await?;
    let created = s.create("/registry/pods/default/web", bytes("v1"), None).await?;
    ensure!(
        created.mod_revision > before,
        "revision did not grow: {before} -> {}",
        created.mod_revision
    );
    ensure!(created.create_revision == created.mod_revision);
    let got = s.get("/registry/pods/default/web").await?;
    ensure!(got == created, "{got:?} != {created:?}");
    ensure!(s.current_revision().await? == created.mod_revision);
    Ok(())
}

pub async fn create_of_an_existing_key_fails_with_already_exists_and_keeps_the_value(
    h: &Harness,
) -> anyhow::Result<()> {
    let s = &h.store;
    let first = s.create("/registry/pods/default/a", bytes("first"), None).await?;
    let again = s.create("/registry/pods/default/a", bytes("second"), None).await;
    ensure!(matches!(again, Err(Error::AlreadyExists { .. })), "{again:?}");
    ensure!(s.get("/registry/pods/default/a").await? == first);
    ensure!(
        s.current_revision().await? == first.mod_revision,
        "a failed create wrote something"
    );
    Ok(())
}

pub async fn get_update_and_delete_of_a_missing_key_fail_with_not_found(h: &Harness) -> anyhow::Result<()> {
    let s = &h.store;
    let key = "/registry/pods/default/missing";
    let get = s.get(key).await;
    ensure!(matches!(get, Err(Error::NotFound { .. })), "{get:?}");
    let update = s.update(key, bytes("x"), 5, None).await;
    ensure!(matches!(update, Err(Error::NotFound { .. })), "{update:?}");
    // An expected revision of 0 must not turn an update into a create.
    let update = s.update(key, bytes("x"), 0, None).await;
    ensure!(matches!(update, Err(Error::NotFound { .. })), "{update:?}");
    let delete = s.delete(key, None).await;
    ensure!(matches!(delete, Err(Error::NotFound { .. })), "{delete:?}");
    let delete = s.delete(key, Some(3)).await;
    ensure!(matches!(delete, Err(Error::NotFound { .. })), "{delete:?}");
    ensure!(matches!(s.get(key).await, Err(Error::NotFound { .. })));
    Ok(())
}

pub async fn update_with_a_stale_revision_fails_with_conflict_naming_the_current_revision(
    h: &Harness,
) -> anyhow::Result<()> {
    let s = &h.store;
    let key = "/registry/configmaps/default/c";
    let v1 = s.create(key, bytes("1"), None).await?;
    let v2 = s.update(key, bytes("2"), v1.mod_revision, None).await?;
    ensure!(v2.mod_revision > v1.mod_revision);
    ensure!(
        v2.create_revision == v1.create_revision,
        "update changed the create revision"
    );
    ensure!(&v2.value[..] == b"2");
    let stale = s.update(key, bytes("3"), v1.mod_revision, None).await;
    match stale {
        Err(Error::Conflict { current_revision, .. }) => ensure!(current_revision == v2.mod_revision),
        other => bail!("expected a conflict, got {other:?}"),
    }
    let zero = s.update(key, bytes("3"), 0, None).await;
    ensure!(matches!(zero, Err(Error::Conflict { .. })), "{zero:?}");
    ensure!(s.get(key).await? == v2);
    Ok(())
}

pub async fn delete_returns_the_deleted_value_and_honours_the_expected_revision(
    h: &Harness,
) -> anyhow::Result<()> {
    let s = &h.store;
    let key = "/registry/secrets/default/s";
    let v1 = s.create(key, bytes("one"), None).await?;
    let v2 = s.update(key, bytes("two"), v1.mod_revision, None).await?;
    let stale = s.delete(key, Some(v1.mod_revision)).await;
    match stale {
        Err(Error::Conflict { current_revision, .. }) => ensure!(current_revision == v2.mod_revision),
        other => bail!("expected a conflict, got {other:?}"),
    }
    let deleted = s.delete(key, Some(v2.mod_revision)).await?;
    ensure!(deleted.prev == v2, "{:?} != {v2:?}", deleted.prev);
    ensure!(deleted.revision > v2.mod_revision);
    ensure!(s.current_revision().await? == deleted.revision);
    ensure!(matches!(s.get(key).await, Err(Error::NotFound { .. })));
    // Unconditional delete, and a key recreated after deletion starts a new life.
    let again = s.create(key, bytes("three"), None).await?;
    ensure!(again.create_revision > deleted.revision);
    let deleted = s.delete(key, None).await?;
    ensure!(&deleted.prev.value[..] == b"three");
    Ok(())
}

pub async fn concurrent_compare_and_swap_increments_lose_no_update(h: &Harness) -> anyhow::Result<()> {
    const WORKERS: usize = 4;
    const INCREMENTS: usize = 10;
    let key = "/registry/counters/default/n";
    h.store.create(key, bytes("0"), None).await?;
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let store = h.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0usize;
            for _ in 0..INCREMENTS {
                loop {
                    let current = store.get(key).await?;
                    let n: usize = std::str::from_utf8(&current.value)?.parse()?;
                    match store
                        .update(key, bytes(&(n + 1).to_string()), current.mod_revision, None)
                        .await
                    {
                        Ok(_) => break,
                        Err(Error::Conflict { .. }) => conflicts += 1,
                        Err(e) => return Err(anyhow::Error::from(e)),
                    }
                }
            }
            Ok::<_, anyhow::Error>(conflicts)
        }));
    }
    for task in tasks {
        task.await??;
    }
    let last = h.store.get(key).await?;
    ensure!(
        &last.value[..] == (WORKERS * INCREMENTS).to_string().as_bytes(),
        "lost updates: {:?}",
        last.value
    );
    Ok(())
}

pub async fn revisions_are_global_and_grow_with_every_write(h: &Harness) -> anyhow::Result<()> {
    let s = &h.store;
    let a = s.create("/registry/pods/ns1/a", bytes("a"), None).await?;
    let b = s.create("/registry/services/ns2/b", bytes("b"), None).await?;
    let a2 = s
        .update("/registry/pods/ns1/a", bytes("a2"), a.mod_revision, None)
        .await?;
    let gone = s.delete("/registry/services/ns2/b", None).await?;
    let revisions = [a.mod_revision, b.mod_revision, a2.mod_revision, gone.revision];
    ensure!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "not increasing: {revisions:?}"
    );
    ensure!(s.current_revision().await? == gone.revision);
    // A failed write does not use up a revision.
    let _ = s.create("/registry/pods/ns1/a", bytes("dup"), None).await;
    ensure!(s.current_revision().await? == gone.revision);
    Ok(())
}

pub async fn list_returns_the_keys_under_a_prefix_in_order_and_nothing_else(
    h: &Harness,
) -> anyhow::Result<()> {
    let s = &h.store;
    for key in [
        "/registry/pods/b/2",
        "/registry/pods/a/1",
        "/registry/pods/b/1",
        "/registry/podtemplates/a/x",
    ] {
        s.create(key, bytes(key), None).await?;
    }
    s.create("/registry/services/a/svc", bytes("svc"), None).await?;
    let all = s.list("/registry/pods/", ListOptions::default()).await?;
    let keys: Vec<&str> = all.items.iter().map(|kv| kv.key.as_str()).collect();
    ensure!(
        keys == ["/registry/pods/a/1", "/registry/pods/b/1", "/registry/pods/b/2"],
        "{keys:?}"
    );
    ensure!(all.items.iter().all(|kv| kv.value == bytes(&kv.key)));
    ensure!(!all.more && all.next_key.is_none() && all.remaining == 0);
    ensure!(all.revision == s.current_revision().await?);
    let ns = s.list("/registry/pods/b/", ListOptions::default()).await?;
    ensure!(ns.items.len() == 2);
    let everything = s.list("/registry/", ListOptions::default()).await?;
    ensure!(everything.items.len() == 5);
    let none = s.list("/registry/nodes/", ListOptions::default()).await?;
    ensure!(none.items.is_empty() && !none.more);
    Ok(())
}

pub async fn list_pages_at_a_fixed_revision_see_one_snapshot_under_concurrent_writes(
    h: &Harness,
) -> anyhow::Result<()> {
    const KEYS: usize = 30;
    let s = &h.store;
    let key = |i: usize| format!("/registry/things/default/k{i:03}");
    for i in 0..KEYS {
        s.create(&key(i), bytes("original"), None).await?;
    }
    let first = s
        .list(
            "/registry/things/",
            ListOptions {
                limit: Some(7),
                ..Default::default()
            },
        )
        .await?;
    ensure!(
        first.items.len() == 7 && first.more && first.remaining == (KEYS - 7) as u64,
        "{first:?}"
    );
    let snapshot = first.revision;

    // A writer churns the range while the pages are read.
    let store = h.store.clone();
    let churn = tokio::spawn(async move {
        for round in 0..20 {
            let i = round % KEYS;
            if let Ok(kv) = store.get(&key(i)).await {
                let _ = store
                    .update(&key(i), bytes("changed"), kv.mod_revision, None)
                    .await;
            }
            let _ = store.delete(&key((i + 11) % KEYS), None).await;
            let _ = store.create(&key(KEYS + round), bytes("new"), None).await;
            let _ = store
                .create(
                    &format!("/registry/things/default/a{round:03}"),
                    bytes("new"),
                    None,
                )
                .await;
        }
    });
    let mut items = first.items;
    let mut next = first.next_key;
    let mut pages = 1;
    while let Some(start) = next {
        // Writes between pages, whatever the churn task's timing.
        s.create(
            &format!("/registry/things/default/z{pages:03}"),
            bytes("new"),
            None,
        )
        .await?;
        let page = s
            .list(
                "/registry/things/",
                ListOptions {
                    revision: Some(snapshot),
                    limit: Some(7),
                    start_key: Some(start),
                },
            )
            .await?;
        ensure!(
            page.revision == snapshot,
            "page served at {} instead of {snapshot}",
            page.revision
        );
        ensure!(
            page.remaining == (KEYS - items.len() - page.items.len()) as u64,
            "{page:?}"
        );
        items.extend(page.items);
        next = page.next_key;
        pages += 1;
        ensure!(pages < 20, "paging does not end");
    }
    churn.await?;
    let keys: Vec<String> = items.iter().map(|kv| kv.key.clone()).collect();
    let expected: Vec<String> = (0..KEYS).map(key).collect();
    ensure!(keys == expected, "pages saw {keys:?}");
    ensure!(
        items
            .iter()
            .all(|kv| &kv.value[..] == b"original" && kv.mod_revision <= snapshot)
    );
    let now = s.list("/registry/things/", ListOptions::default()).await?;
    ensure!(
        now.revision > snapshot && now.items.len() != KEYS,
        "the writes did not happen"
    );
    Ok(())
}

pub async fn list_at_a_past_revision_shows_the_state_then_and_rejects_future_revisions(
    h: &Harness,
) -> anyhow::Result<()> {
    let s = &h.store;
    let a = s.create("/registry/pods/default/a", bytes("a1"), None).await?;
    let b = s.create("/registry/pods/default/b", bytes("b1"), None).await?;
    let then = b.mod_revision;
    s.update("/registry/pods/default/a", bytes("a2"), a.mod_revision, None)
        .await?;
    s.delete("/registry/pods/default/b", None).await?;
    s.create("/registry/pods/default/c", bytes("c1"), None).await?;
    let past = s
        .list(
            "/registry/pods/",
            ListOptions {
                revision: Some(then),
                ..Default::default()
            },
        )
        .await?;
    let seen: Vec<(&str, &[u8])> = past
        .items
        .iter()
        .map(|kv| (kv.key.as_str(), &kv.value[..]))
        .collect();
    ensure!(
        seen == [
            ("/registry/pods/default/a", &b"a1"[..]),
            ("/registry/pods/default/b", &b"b1"[..])
        ],
        "{seen:?}"
    );
    ensure!(past.revision == then);
    let future = s.current_revision().await? + 100;
    let result = s
        .list(
            "/registry/pods/",
            ListOptions {
                revision: Some(future),
                ..Default::default()
            },
        )
        .await;
    ensure!(
        matches!(result, Err(Error::FutureRevision { requested }) if requested == future),
        "{result:?}"
    );
    Ok(())
}

pub async fn watch_delivers_added_modified_deleted_in_revision_order_with_previous_values(
    h: &Harness,
) -> anyhow::Result<()> {
    let s = &h.store;
    let mut watch = s
        .watch(
            "/registry/pods/",
            WatchOptions {
                prefix: true,
                start_revision: None,
            },
        )
        .await?;
    let a1 = s.create("/registry/pods/default/a", bytes("a1"), None).await?;
    let a2 = s
        .update("/registry/pods/default/a", bytes("a2"), a1.mod_revision, None)
        .await?;
    s.create("/registry/services/default/not-a-pod", bytes("x"), None)
        .await?;
    let b = s.create("/registry/pods/default/b", bytes("b1"), None).await?;
    let gone = s.delete("/registry/pods/default/a", None).await?;

    let e = next_event(&mut watch).await?;
    ensure!(
        e.kind == EventKind::Added && e.key == "/registry/pods/default/a" && e.revision == a1.mod_revision,
        "{e:?}"
    );
    ensure!(value_of(&e) == Some(b"a1") && e.prev.is_none(), "{e:?}");
    let e = next_event(&mut watch).await?;
    ensure!(
        e.kind == EventKind::Modified && e.revision == a2.mod_revision,
        "{e:?}"
    );
    ensure!(
        value_of(&e) == Some(b"a2") && prev_value_of(&e) == Some(b"a1"),
        "{e:?}"
    );
    ensure!(e.current.as_ref().map(|kv| kv.create_revision) == Some(a1.create_revision));
    let e = next_event(&mut watch).await?;
    ensure!(
        e.kind == EventKind::Added && e.key == "/registry/pods/default/b" && e.revision == b.mod_revision,
        "{e:?}"
    );
    let e = next_event(&mut watch).await?;
    ensure!(
        e.kind == EventKind::Deleted && e.key == "/registry/pods/default/a" && e.revision == gone.revision,
        "{e:?}"
    );
    ensure!(e.current.is_none() && prev_value_of(&e) == Some(b"a2"), "{e:?}");
    Ok(())
}

pub async fn watch_resumes_from_a_given_revision(h: &Harness) -> anyhow::Result<()> {
    let s = &h.store;
    let a1 = s.create("/registry/pods/default/a", bytes("a1"), None).await?;
    let a2 = s
        .update("/registry/pods/default/a", bytes("a2"), a1.mod_revision, None)
        .await?;
    let b = s.create("/registry/pods/default/b", bytes("b1"), None).await?;
    // As a client that saw a1 resumes with resourceVersion = a1.
    let mut watch = s
        .watch(
            "/registry/pods/",
            WatchOptions {
                prefix: true,
                start_revision: Some(a1.mod_revision + 1),
            },
        )
        .await?;
    let e = next_event(&mut watch).await?;
    ensure!(
        e.revision == a2.mod_revision && e.kind == EventKind::Modified && prev_value_of(&e) == Some(b"a1"),
        "{e:?}"
    );
    let e = next_event(&mut watch).await?;
    ensure!(
        e.revision == b.mod_revision && e.kind == EventKind::Added,
        "{e:?}"
    );
    // Then it goes on live.
    let c = s.create("/registry/pods/default/c", bytes("c1"), None).await?;
    let e = next_event(&mut watch).await?;
    ensure!(
        e.revision == c.mod_revision && e.key == "/registry/pods/default/c",
        "{e:?}"
    );
    Ok(())
}

pub async fn watch_of_one_key_ignores_other_keys(h: &Harness) -> anyhow::Result<()> {
    let s = &h.store;
    let mut watch = s
        .watch("/registry/pods/default/a", WatchOptions::default())
        .await?;
    s.create("/registry/pods/default/ab", bytes("no"), None).await?;
    s.create("/registry/pods/default/b", bytes("no"), None).await?;
    let a = s.create("/registry/pods/default/a", bytes("yes"), None).await?;
    let e = next_event(&mut watch).await?;
    ensure!(
        e.key == "/registry/pods/default/a" && e.revision == a.mod_revision,
        "{e:?}"
    );
    Ok(())
}

pub async fn watch_from_now_sees_a_write_made_right_after_it_returns(h: &Harness) -> anyhow::Result<()> {
    let s = &h.store;
    let old = s.create("/registry/pods/default/old", bytes("old"), None).await?;
    let mut watch = s
        .watch(
            "/registry/pods/",
            WatchOptions {
                prefix: true,
                start_revision: None,
            },
        )
        .await?;
    let new = s.create("/registry/pods/default/new", bytes("new"), None).await?;
    let e = next_event(&mut watch).await?;
    ensure!(
        e.revision == new.mod_revision && e.revision > old.mod_revision,
        "{e:?}"
    );
    Ok(())
}

pub async fn watch_from_an_old_revision_replays_a_long_history_in_order(h: &Harness) -> anyhow::Result<()> {
    const WRITES: usize = 600;
    let start = h.store.current_revision().await? + 1;
    let mut tasks = Vec::new();
    for worker in 0..6 {
        let store = h.store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (worker..WRITES).step_by(6) {
                store
                    .create(&format!("/registry/events/default/e{i:04}"), bytes("x"), None)
                    .await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let mut watch = h
        .store
        .watch(
            "/registry/events/",
            WatchOptions {
                prefix: true,
                start_revision: Some(start),
            },
        )
        .await?;
    let mut last = 0;
    let mut keys = BTreeSet::new();
    for _ in 0..WRITES {
        let e = next_event(&mut watch).await?;
        ensure!(e.revision > last, "out of order: {} after {last}", e.revision);
        last = e.revision;
        keys.insert(e.key);
    }
    ensure!(keys.len() == WRITES);
    Ok(())
}

pub async fn keys_with_a_ttl_expire_with_a_deleted_event_and_others_stay(h: &Harness) -> anyhow::Result<()> {
    let s = &h.store;
    let mut watch = s
        .watch(
            "/registry/events/",
            WatchOptions {
                prefix: true,
                start_revision: None,
            },
        )
        .await?;
    let short = s
        .create(
            "/registry/events/default/short",
            bytes("bye"),
            Some(Duration::from_secs(1)),
        )
        .await?;
    s.create("/registry/events/default/forever", bytes("stay"), None)
        .await?;
    let long = s
        .create(
            "/registry/events/default/long",
            bytes("later"),
            Some(Duration::from_secs(3600)),
        )
        .await?;
    for _ in 0..3 {
        next_event(&mut watch).await?;
    }
    (h.advance_clock)(Duration::from_secs(2));
    let e = next_event(&mut watch).await.context("waiting for the expiry")?;
    ensure!(e.kind == EventKind::Deleted && e.key == short.key, "{e:?}");
    ensure!(prev_value_of(&e) == Some(&b"bye"[..]));
    eventually(WAIT, || async {
        match s.get(&short.key).await {
            Err(Error::NotFound { .. }) => Ok(()),
            other => Err(format!("still there: {other:?}")),
        }
    })
    .await?;
    ensure!(&s.get("/registry/events/default/forever").await?.value[..] == b"stay");
    ensure!(s.get(&long.key).await? == long);
    Ok(())
}

pub async fn compaction_makes_older_revisions_fail_with_compacted(h: &Harness) -> anyhow::Result<()> {
    let s = &h.store;
    let a1 = s.create("/registry/pods/default/a", bytes("a1"), None).await?;
    let a2 = s
        .update("/registry/pods/default/a", bytes("a2"), a1.mod_revision, None)
        .await?;
    let b = s.create("/registry/pods/default/b", bytes("b1"), None).await?;
    s.delete("/registry/pods/default/b", None).await?;
    let a3 = s
        .update("/registry/pods/default/a", bytes("a3"), a2.mod_revision, None)
        .await?;
    let at = b.mod_revision;
    s.compact(at).await?;

    let old = s
        .list(
            "/registry/pods/",
            ListOptions {
                revision: Some(at - 1),
                ..Default::default()
            },
        )
        .await;
    ensure!(
        matches!(old, Err(Error::Compacted { compact_revision }) if compact_revision == at),
        "{old:?}"
    );
    // The compacted revision itself stays readable.
    let kept = s
        .list(
            "/registry/pods/",
            ListOptions {
                revision: Some(at),
                ..Default::default()
            },
        )
        .await?;
    let seen: Vec<(&str, &[u8])> = kept
        .items
        .iter()
        .map(|kv| (kv.key.as_str(), &kv.value[..]))
        .collect();
    ensure!(
        seen == [
            ("/registry/pods/default/a", &b"a2"[..]),
            ("/registry/pods/default/b", &b"b1"[..])
        ],
        "{seen:?}"
    );
    let mut watch = s
        .watch(
            "/registry/pods/",
            WatchOptions {
                prefix: true,
                start_revision: Some(at - 1),
            },
        )
        .await?;
    let err = next_error(&mut watch).await?;
    ensure!(err == Error::Compacted { compact_revision: at }, "{err:?}");
    ensure!(
        watch.next().await.is_none(),
        "the watch goes on after a compaction error"
    );
    let mut watch = s
        .watch(
            "/registry/pods/",
            WatchOptions {
                prefix: true,
                start_revision: Some(at),
            },
        )
        .await?;
    let e = next_event(&mut watch).await?;
    ensure!(e.revision == at && e.kind == EventKind::Added, "{e:?}");
    let e = next_event(&mut watch).await?;
    ensure!(
        e.kind == EventKind::Deleted && prev_value_of(&e) == Some(b"b1"),
        "{e:?}"
    );
    let e = next_event(&mut watch).await?;
    ensure!(
        e.revision == a3.mod_revision && prev_value_of(&e) == Some(b"a2"),
        "{e:?}"
    );
    ensure!(s.get("/registry/pods/default/a").await? == a3);
    let again = s.compact(at).await;
    ensure!(matches!(again, Err(Error::Compacted { .. })), "{again:?}");
    Ok(())
}

pub async fn invalid_keys_are_rejected_and_write_nothing(h: &Harness) -> anyhow::Result<()> {
    let s = &h.store;
    let before = s.current_revision().await?;
    for key in [
        "",
        "pods/default/a",
        "/pods/default/a",
        "/registry/",
        "/registry/pods/",
        "/registry//a",
    ] {
        let create = s.create(key, bytes("x"), None).await;
        ensure!(
            matches!(create, Err(Error::InvalidKey { .. })),
            "create {key:?}: {create:?}"
        );
        let update = s.update(key, bytes("x"), 1, None).await;
        ensure!(
            matches!(update, Err(Error::InvalidKey { .. })),
            "update {key:?}: {update:?}"
        );
        ensure!(
            matches!(s.delete(key, None).await, Err(Error::InvalidKey { .. })),
            "delete {key:?}"
        );
        ensure!(
            matches!(s.get(key).await, Err(Error::InvalidKey { .. })),
            "get {key:?}"
        );
    }
    for prefix in ["", "/registry", "/registry/pods", "/other/"] {
        let list = s.list(prefix, ListOptions::default()).await;
        ensure!(
            matches!(list, Err(Error::InvalidKey { .. })),
            "list {prefix:?}: {list:?}"
        );
        let watch = s
            .watch(
                prefix,
                WatchOptions {
                    prefix: true,
                    start_revision: None,
                },
            )
            .await;
        ensure!(matches!(watch, Err(Error::InvalidKey { .. })), "watch {prefix:?}");
    }
    let outside = ListOptions {
        start_key: Some("/registry/secrets/a".into()),
        ..Default::default()
    };
    ensure!(matches!(
        s.list("/registry/pods/", outside).await,
        Err(Error::InvalidKey { .. })
    ));
    ensure!(s.current_revision().await? == before, "bad input wrote something");
    Ok(())
}

pub async fn values_over_the_limit_are_rejected_and_write_nothing(h: &Harness) -> anyhow::Result<()> {
    let s = &h.store;
    let before = s.current_revision().await?;
    let too_big = Bytes::from(vec![b'x'; MAX_VALUE_SIZE + 1]);
    let create = s
        .create("/registry/configmaps/default/big", too_big.clone(), None)
        .await;
    ensure!(
        matches!(create, Err(Error::ValueTooLarge { size, limit }) if size == MAX_VALUE_SIZE + 1 && limit == MAX_VALUE_SIZE),
        "{create:?}"
    );
    ensure!(
        s.current_revision().await? == before,
        "an oversized create wrote something"
    );
    let at_limit = Bytes::from(vec![b'y'; MAX_VALUE_SIZE]);
    let kv = s
        .create("/registry/configmaps/default/big", at_limit.clone(), None)
        .await?;
    ensure!(s.get("/registry/configmaps/default/big").await?.value == at_limit);
    let update = s
        .update("/registry/configmaps/default/big", too_big, kv.mod_revision, None)
        .await;
    ensure!(matches!(update, Err(Error::ValueTooLarge { .. })), "{update:?}");
    ensure!(
        s.current_revision().await? == kv.mod_revision,
        "an oversized update wrote something"
    );
    Ok(())
}
