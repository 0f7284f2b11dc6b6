//! `/metrics` of a real server process, read with kubectl 1.20 and the newest kubectl (`get --raw`), as
//! Prometheus scrapes it.

mod common;

use std::process::Command;
use std::time::Duration;

use anyhow::{Result, ensure};
use common::*;

/// The value of the sample whose line starts with `series` (name and labels as printed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn metrics_count_requests_by_verb_and_code_time_the_store_and_follow_open_watches() -> Result<()> {
    let cluster = SingleServer::start()?;
    for bin in [kubectl_1_20(), kubectl_newest()].into_iter().flatten() {
        let k = cluster.kubectl(bin);
        let ns = format!("m{}", free_port()?);
        k.ok(&["create", "namespace", &ns])?;
        k.ok(&["create", "configmap", "a", "-n", &ns, "--from-literal=k=v"])?;
        let refused = k.run(&["create", "configmap", "a", "-n", &ns])?;
        ensure!(
            !refused.status.success(),
            "a second create of the same name must fail"
        );
        let text = k.ok(&["get", "--raw", "/metrics"])?;
        let created = r#"apiserver_request_total{verb="POST",group="",version="v1",resource="configmaps",subresource="",scope="namespace",component="apiserver",code="201"}"#;
        let conflicts = r#"apiserver_request_total{verb="POST",group="",version="v1",resource="configmaps",subresource="",scope="namespace",component="apiserver",code="409"}"#;
        ensure!(
            sample(&text, created).is_some_and(|n| n >= 1.0),
            "no {created} in\n{text}"
        );
        ensure!(
            sample(&text, conflicts).is_some_and(|n| n >= 1.0),
            "no {conflicts}"
        );
        for series in [
            r#"apiserver_request_duration_seconds_count{verb="POST",group="",version="v1",resource="configmaps",subresource="",scope="namespace",component="apiserver"}"#,
            r#"etcd_request_duration_seconds_count{operation="create",type="configmaps"}"#,
            r#"apiserver_storage_objects{resource="configmaps"}"#,
            r#"apiserver_current_inflight_requests{request_kind="mutating"}"#,
        ] {
            ensure!(sample(&text, series).is_some(), "no {series}");
        }
        ensure!(text.contains("# TYPE apiserver_request_duration_seconds histogram"));

        let watching = r#"apiserver_longrunning_requests{verb="WATCH",group="",version="v1",resource="configmaps",subresource="",scope="namespace",component="apiserver"}"#;
        let watch = Streaming::spawn(k.cmd(&["get", "configmaps", "-n", &ns, "--watch", "-o", "name"]))?;
        watch.wait_for(&["configmap/a"], Duration::from_secs(20))?;
        eventually(
            Duration::from_secs(20),
            "the watch counted as long-running",
            || {
                let text = k.ok(&["get", "--raw", "/metrics"]).ok()?;
                (sample(&text, watching)? >= 1.0).then_some(())
            },
        )?;
        drop(watch);
        eventually(
            Duration::from_secs(20),
            "the ended watch no longer counted",
            || {
                let text = k.ok(&["get", "--raw", "/metrics"]).ok()?;
                (sample(&text, watching)? == 0.0).then_some(())
            },
        )?;
    }
    Ok(())
}

#[test]
fn anonymous_clients_may_not_read_metrics() -> Result<()> {
    let cluster = SingleServer::start()?;
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(cluster.pki.pki_dir().join("ca.crt"))
        .arg(format!("https://127.0.0.1:{}/metrics", cluster.server.port))
        .output()?;
    ensure!(
        text(&out.stdout) == "403",
        "anonymous /metrics answered {}",
        text(&out.stdout)
    );
    Ok(())
}
