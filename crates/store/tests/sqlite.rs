//! The conformance suite on the embedded SQLite backend, plus what only it has (a file that survives reopening,
//! watchers that fall behind the in-process broadcast).

#[macro_use]
mod conformance;

use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use bytes::Bytes;
use conformance::Harness;
use store::{ManualClock, SqliteConfig, SqliteStore, Store, WatchOptions};
use tokio_util::sync::CancellationToken;

fn config(dir: &tempfile::TempDir, clock: &ManualClock) -> SqliteConfig {
    SqliteConfig::new(dir.path().join("state.db"))
        .with_clock(Arc::new(clock.clone()))
        .with_sweep_interval(Duration::from_millis(20))
        .with_compaction(None)
}

async fn harness() -> anyhow::Result<Harness> {
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::default();
    let store = SqliteStore::open(config(&dir, &clock), CancellationToken::new()).await?;
    Ok(Harness {
        store: Arc::new(store),
        advance_clock: Box::new(move |by| clock.advance(by)),
        keep: Box::new(dir),
    })
}

conformance_tests!(harness);

#[tokio::test]
async fn data_and_revisions_survive_reopening_the_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::default();
    let written = {
        let store = SqliteStore::open(config(&dir, &clock), CancellationToken::new()).await?;
        let kv = store
            .create("/registry/pods/default/a", Bytes::from_static(b"a"), None)
            .await?;
        store
            .update(
                "/registry/pods/default/a",
                Bytes::from_static(b"b"),
                kv.mod_revision,
                None,
            )
            .await?
    };
    let store = SqliteStore::open(config(&dir, &clock), CancellationToken::new()).await?;
    ensure!(store.get("/registry/pods/default/a").await? == written);
    ensure!(store.current_revision().await? == written.mod_revision);
    let next = store
        .create("/registry/pods/default/b", Bytes::from_static(b"c"), None)
        .await?;
    ensure!(next.mod_revision == written.mod_revision + 1);
    Ok(())
}

#[tokio::test]
async fn an_empty_store_is_at_revision_one_like_etcd() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(config(&dir, &ManualClock::default()), CancellationToken::new()).await?;
    ensure!(store.current_revision().await? == 1);
    Ok(())
}

#[tokio::test]
async fn a_watcher_that_falls_behind_the_broadcast_catches_up_from_the_log() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = config(&dir, &ManualClock::default());
    config.broadcast_capacity = 4;
    let store = SqliteStore::open(config, CancellationToken::new()).await?;
    let mut watch = store
        .watch(
            "/registry/pods/",
            WatchOptions {
                prefix: true,
                start_revision: None,
            },
        )
        .await?;
    // Far more writes than the broadcast holds, while nobody reads the watch.
    for i in 0..40 {
        store
            .create(
                &format!("/registry/pods/default/p{i:02}"),
                Bytes::from_static(b"x"),
                None,
            )
            .await?;
    }
    for i in 0..40 {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.next()).await?;
        let event = event.ok_or_else(|| anyhow::anyhow!("watch ended"))??;
        ensure!(
            event.key == format!("/registry/pods/default/p{i:02}"),
            "{event:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn watches_end_when_the_store_shuts_down() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let shutdown = CancellationToken::new();
    let store = SqliteStore::open(config(&dir, &ManualClock::default()), shutdown.clone()).await?;
    let mut watch = store
        .watch(
            "/registry/pods/",
            WatchOptions {
                prefix: true,
                start_revision: None,
            },
        )
        .await?;
    shutdown.cancel();
    let end = tokio::time::timeout(Duration::from_secs(10), watch.next()).await?;
    ensure!(end.is_none(), "{end:?}");
    Ok(())
}

#[tokio::test]
async fn periodic_compaction_keeps_recent_history() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let policy = store::compactor::CompactionPolicy {
        interval: Duration::from_millis(50),
        keep_revisions: 5,
    };
    let config = config(&dir, &ManualClock::default()).with_compaction(Some(policy));
    let store = SqliteStore::open(config, CancellationToken::new()).await?;
    let mut kv = store
        .create("/registry/pods/default/a", Bytes::from_static(b"0"), None)
        .await?;
    for i in 1..20 {
        kv = store
            .update(
                "/registry/pods/default/a",
                Bytes::from(i.to_string()),
                kv.mod_revision,
                None,
            )
            .await?;
    }
    let first = kv.mod_revision - 19;
    testkit::eventually(Duration::from_secs(10), || async {
        match store
            .list(
                "/registry/pods/",
                store::ListOptions {
                    revision: Some(first),
                    ..Default::default()
                },
            )
            .await
        {
            Err(store::Error::Compacted { compact_revision }) => Ok(compact_revision),
            other => Err(format!("not compacted yet: {other:?}")),
        }
    })
    .await?;
    let recent = store::ListOptions {
        revision: Some(kv.mod_revision - 5),
        ..Default::default()
    };
    ensure!(
        store.list("/registry/pods/", recent).await.is_ok(),
        "the last revisions were compacted"
    );
    Ok(())
}

/// Set in the child process of the crash test: the database it writes to until it is killed.
const CRASH_CHILD_DB: &str = "STORE_SQLITE_CRASH_CHILD_DB";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_the_process_being_killed() -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, BufReader};

    if let Ok(path) = std::env::var(CRASH_CHILD_DB) {
        // The child: write and acknowledge on stdout until killed (bounded, in case nobody kills it).
        let store = SqliteStore::open(SqliteConfig::new(path), CancellationToken::new()).await?;
        for i in 0..20_000 {
            store
                .create(
                    &format!("/registry/pods/default/p{i:05}"),
                    Bytes::from(i.to_string()),
                    None,
                )
                .await?;
            println!("ack {i}");
        }
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("crash.db");
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "acknowledged_writes_survive_the_process_being_killed",
            "--exact",
            "--nocapture",
        ])
        .env(CRASH_CHILD_DB, &path)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await? {
            if let Some(i) = line.strip_prefix("ack ") {
                acked.push(i.parse::<usize>()?);
                if acked.len() == 300 {
                    break;
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(60), read).await??;
    child.start_kill()?;
    child.wait().await?;
    // Acknowledgements already in the pipe when the child died count too.
    while let Some(line) = lines.next_line().await? {
        if let Some(i) = line.strip_prefix("ack ") {
            acked.push(i.parse()?);
        }
    }

    let store = SqliteStore::open(SqliteConfig::new(&path), CancellationToken::new()).await?;
    for i in &acked {
        let kv = store.get(&format!("/registry/pods/default/p{i:05}")).await?;
        ensure!(kv.value == Bytes::from(i.to_string()));
    }
    // The log is consistent: the revision is past every acknowledged write, and writing goes on from there.
    let next = store
        .create("/registry/pods/default/after", Bytes::from_static(b"x"), None)
        .await?;
    ensure!(next.mod_revision > 300);
    drop(dir);
    Ok(())
}
