//! The watch cache through the HTTP API with real clients: kube-rs watchers and reflectors (with a list first,
//! with `resourceVersion=0` lists, and with streaming lists), the watch-list bookmark, and reads at
//! `resourceVersion=0`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, ensure};
use common::*;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{reflector, watcher};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(30);

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([("app".into(), "cached".into())])),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_reflectors_with_lists_any_lists_and_streaming_lists_follow_every_change() -> Result<()> {
    let server = SingleServer::start()?;
    let client = client::from_kubeconfig(&server.kubeconfig()).await?;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let pp = PostParams::default();
    api.create(&pp, &config_map("before")).await?;

    let configs = [
        ("list", watcher::Config::default()),
        ("any-list", watcher::Config::default().any_semantic()),
        ("streaming-list", watcher::Config::default().streaming_lists()),
    ];
    let mut readers = Vec::new();
    let mut tasks = Vec::new();
    for (what, config) in configs {
        let (reader, writer) = reflector::store::<ConfigMap>();
        let stream = reflector(writer, watcher(api.clone(), config.labels("app=cached")));
        tasks.push(tokio::spawn(stream.for_each(|_| async {})));
        readers.push((what, reader));
    }
    for (what, reader) in &readers {
        tokio::time::timeout(DEADLINE, reader.wait_until_ready())
            .await
            .map_err(|_| anyhow::anyhow!("{what}: reflector never got its initial state"))??;
    }

    api.create(&pp, &config_map("after")).await?;
    api.patch(
        "after",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await?;
    api.delete("before", &DeleteParams::default()).await?;
    let mut left = config_map("left");
    api.create(&pp, &left).await?;
    // Leaving the selection is a deletion for the watchers.
    left.metadata.labels = Some(BTreeMap::from([("app".into(), "other".into())]));
    api.replace("left", &pp, &left).await?;

    for (what, reader) in &readers {
        testkit::eventually(DEADLINE, || async {
            let mut state: Vec<(String, Option<String>)> = reader
                .state()
                .iter()
                .map(|cm| {
                    let v = cm.data.as_ref().and_then(|d| d.get("k").cloned());
                    (cm.metadata.name.clone().unwrap_or_default(), v)
                })
                .collect();
            state.sort();
            if state == [("after".to_string(), Some("v".to_string()))] {
                Ok(())
            } else {
                Err(format!("{what}: {state:?}"))
            }
        })
        .await?;
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}

fn lines(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_gets_and_watch_lists_at_resource_version_zero_are_served_and_end_the_initial_events_with_a_bookmark()
-> Result<()> {
    let server = SingleServer::start()?;
    let (pki, port) = (&server.pki, server.server.port);
    let cms = "/api/v1/namespaces/default/configmaps";
    let body =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "zero", "labels": {"a": "b"}}});
    let (code, created) = curl(
        pki,
        port,
        &[
            cms,
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
        ],
    )?;
    ensure!(code == 201, "{code} {created}");
    let created: Value = serde_json::from_str(&created)?;
    let rv: i64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .parse()?;

    // The cache may trail the write by a moment: RV=0 means "any", so poll until it shows up.
    let listed = testkit::eventually(DEADLINE, || async {
        let (code, list) = curl(
            pki,
            port,
            &[&format!("{cms}?resourceVersion=0&labelSelector=a%3Db")],
        )
        .map_err(|e| e.to_string())?;
        let list: Value = serde_json::from_str(&list).map_err(|e| e.to_string())?;
        let names: Vec<&str> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["metadata"]["name"].as_str())
            .collect();
        if code == 200 && names == ["zero"] {
            Ok(list)
        } else {
            Err(format!("{code} {names:?}"))
        }
    })
    .await?;
    let list_rv: i64 = listed["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .parse()?;
    ensure!(list_rv >= rv, "list at {list_rv} is older than the write at {rv}");
    let (code, got) = curl(pki, port, &[&format!("{cms}/zero?resourceVersion=0")])?;
    ensure!(code == 200 && got.contains("\"zero\""), "{code} {got}");
    let (code, _) = curl(pki, port, &[&format!("{cms}/missing?resourceVersion=0")])?;
    ensure!(code == 404, "{code}");

    // A watch list: the matching objects as ADDED, then the bookmark that ends the initial events.
    let (code, watched) = curl(
        pki,
        port,
        &[&format!(
            "{cms}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&labelSelector=a%3Db&timeoutSeconds=1"
        )],
    )?;
    ensure!(code == 200, "{code} {watched}");
    let events = lines(&watched);
    ensure!(events.len() >= 2, "{watched}");
    ensure!(
        events[0]["type"] == "ADDED" && events[0]["object"]["metadata"]["name"] == "zero",
        "{watched}"
    );
    let mark = &events[1];
    ensure!(mark["type"] == "BOOKMARK", "{watched}");
    ensure!(
        mark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true",
        "{watched}"
    );
    let mark_rv: i64 = mark["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .parse()?;
    ensure!(mark_rv >= rv, "{watched}");

    // Without resourceVersionMatch=NotOlderThan a watch list is refused, as upstream.
    let (code, _) = curl(pki, port, &[&format!("{cms}?watch=true&sendInitialEvents=true")])?;
    ensure!(code == 400, "{code}");
    Ok(())
}
