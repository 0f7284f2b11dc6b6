//! kube-rs, the Rust client, against a real server process: typed CRUD with upstream's error codes, lists with
//! selectors and pages, the watcher and reflector of `kube::runtime`, and a custom resource used as a typed kind
//! with its `status` and `scale` subresources.

mod common;

use std::time::Duration;

use anyhow::{Result, anyhow, ensure};
use common::*;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, CustomResource};
use serde::{Deserialize, Serialize};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(20);

async fn start() -> Result<(SingleServer, Client)> {
    let server = SingleServer::start()?;
    let client = client::from_kubeconfig(&server.kubeconfig()).await?;
    Ok((server, client))
}

async fn namespace(client: &Client, name: &str) -> Result<()> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

fn config_map(name: &str, app: &str) -> Result<ConfigMap> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "data": {"k": "v"},
    }))?)
}

fn api_code<T: std::fmt::Debug>(r: kube::Result<T>) -> Option<u16> {
    match r {
        Err(kube::Error::Api(status)) => Some(status.code),
        _ => None,
    }
}

#[tokio::test]
async fn kube_rs_does_typed_crud_and_paged_selected_lists_and_sees_upstreams_error_codes() -> Result<()> {
    let (_server, client) = start().await?;
    namespace(&client, "typed").await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "typed");
    for i in 0..5 {
        let app = if i % 2 == 0 { "even" } else { "odd" };
        cms.create(&PostParams::default(), &config_map(&format!("cm-{i}"), app)?)
            .await?;
    }
    ensure!(
        api_code(
            cms.create(&PostParams::default(), &config_map("cm-0", "even")?)
                .await
        ) == Some(409)
    );
    ensure!(api_code(cms.get("missing").await) == Some(404));
    ensure!(cms.get_opt("missing").await?.is_none());

    let mut cm = cms.get("cm-1").await?;
    cm.data = Some([("k".to_string(), "replaced".to_string())].into());
    let replaced = cms.replace("cm-1", &PostParams::default(), &cm).await?;
    ensure!(replaced.metadata.resource_version != cm.metadata.resource_version);
    // A replace with the old resourceVersion lost the race: 409.
    ensure!(api_code(cms.replace("cm-1", &PostParams::default(), &cm).await) == Some(409));
    let patched = cms
        .patch(
            "cm-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"patched": "yes"}}})),
        )
        .await?;
    ensure!(
        patched
            .metadata
            .labels
            .unwrap_or_default()
            .get("patched")
            .map(String::as_str)
            == Some("yes")
    );

    let even = cms.list(&ListParams::default().labels("app=even")).await?;
    ensure!(even.items.len() == 3, "app=even listed {}", even.items.len());
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(2);
    loop {
        let page = cms.list(&params).await?;
        ensure!(page.items.len() <= 2);
        names.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    ensure!(
        names == ["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"],
        "pages gave {names:?}"
    );

    cms.delete("cm-4", &DeleteParams::default()).await?;
    ensure!(api_code(cms.delete("cm-4", &DeleteParams::default()).await) == Some(404));
    cms.delete_collection(&DeleteParams::default(), &ListParams::default().labels("app=odd"))
        .await?;
    let left: Vec<String> = cms
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    ensure!(left == ["cm-0", "cm-2"], "left {left:?}");
    Ok(())
}

/// Runs a reflector over the namespace's ConfigMaps until dropped; its store is what the test reads.
fn reflect(
    cms: Api<ConfigMap>,
    config: watcher::Config,
) -> (reflector::Store<ConfigMap>, tokio::task::JoinHandle<()>) {
    let (reader, writer) = reflector::store();
    let task = tokio::spawn(async move {
        let mut stream = watcher(cms, config).reflect(writer).applied_objects().boxed();
        while stream.next().await.is_some() {}
    });
    (reader, task)
}

fn data_of(store: &reflector::Store<ConfigMap>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = store
        .state()
        .iter()
        .map(|cm| {
            let name = cm.metadata.name.clone().unwrap_or_default();
            let value = cm
                .data
                .as_ref()
                .and_then(|d| d.get("k").cloned())
                .unwrap_or_default();
            (name, value)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn kube_rs_reflectors_follow_creates_updates_and_deletes_with_and_without_streaming_lists() -> Result<()>
{
    let (_server, client) = start().await?;
    namespace(&client, "watched").await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "watched");
    cms.create(&PostParams::default(), &config_map("before", "a")?)
        .await?;
    let (listing, t1) = reflect(cms.clone(), watcher::Config::default());
    let (streaming, t2) = reflect(cms.clone(), watcher::Config::default().streaming_lists());
    for store in [&listing, &streaming] {
        tokio::time::timeout(DEADLINE, store.wait_until_ready()).await??;
    }
    cms.create(&PostParams::default(), &config_map("after", "a")?)
        .await?;
    cms.patch(
        "before",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "changed"}})),
    )
    .await?;
    cms.create(&PostParams::default(), &config_map("gone", "a")?)
        .await?;
    cms.delete("gone", &DeleteParams::default()).await?;
    let want = vec![
        ("after".to_string(), "v".to_string()),
        ("before".to_string(), "changed".to_string()),
    ];
    for (what, store) in [("listing", &listing), ("streaming", &streaming)] {
        testkit::eventually(DEADLINE, || async {
            let got = data_of(store);
            if got == want {
                Ok(())
            } else {
                Err(anyhow!("{what} reflector holds {got:?}"))
            }
        })
        .await?;
    }
    t1.abort();
    t2.abort();
    Ok(())
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kubers.example.com",
    version = "v1",
    kind = "Gadget",
    namespaced,
    status = "GadgetStatus",
    schema = "disabled"
)]
pub struct GadgetSpec {
    replicas: i32,
    colour: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct GadgetStatus {
    replicas: i32,
}

fn gadget_crd() -> Result<CustomResourceDefinition> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": "gadgets.kubers.example.com"},
        "spec": {
            "group": "kubers.example.com",
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}, "scale": {
                    "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "replicas": {"type": "integer", "minimum": 0},
                        "colour": {"type": "string", "enum": ["red", "blue"]}}},
                    "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}}
            }]
        }
    }))?)
}

#[tokio::test]
async fn a_custom_resource_is_a_typed_kind_for_kube_rs_with_validation_status_and_scale() -> Result<()> {
    let (_server, client) = start().await?;
    namespace(&client, "gadgets").await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &gadget_crd()?).await?;
    let gadgets: Api<Gadget> = Api::namespaced(client.clone(), "gadgets");
    let spec = GadgetSpec {
        replicas: 2,
        colour: "red".into(),
    };
    // The new kind is served as soon as the CRD is established.
    testkit::eventually(DEADLINE, || async {
        gadgets
            .create(&PostParams::default(), &Gadget::new("g1", spec.clone()))
            .await
    })
    .await?;
    let bad = Gadget::new(
        "g2",
        GadgetSpec {
            replicas: 1,
            colour: "green".into(),
        },
    );
    ensure!(api_code(gadgets.create(&PostParams::default(), &bad).await) == Some(422));

    let got = gadgets.get("g1").await?;
    ensure!(got.spec == spec && got.status.is_none());
    gadgets
        .patch_status(
            "g1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 2}})),
        )
        .await?;
    // The main resource ignores status, the status subresource ignores spec.
    let after = gadgets
        .patch(
            "g1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"colour": "blue"}, "status": {"replicas": 9}})),
        )
        .await?;
    ensure!(after.spec.colour == "blue" && after.status == Some(GadgetStatus { replicas: 2 }));

    let scale = gadgets.get_scale("g1").await?;
    ensure!(scale.spec.and_then(|s| s.replicas) == Some(2));
    ensure!(scale.status.map(|s| s.replicas) == Some(2));
    gadgets
        .patch_scale(
            "g1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await?;
    ensure!(gadgets.get("g1").await?.spec.replicas == 5);

    let listed = gadgets.list(&ListParams::default()).await?;
    ensure!(listed.items.len() == 1);
    // Deleting the CRD deletes its objects.
    crds.delete("gadgets.kubers.example.com", &DeleteParams::default())
        .await?;
    testkit::eventually(DEADLINE, || async {
        match crds.get_opt("gadgets.kubers.example.com").await? {
            None => Ok(()),
            Some(_) => Err(anyhow!("the CRD is still there")),
        }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_crd_with_two_versions_serves_each_object_in_the_version_asked_for_and_stores_the_storage_version()
-> Result<()> {
    let etcd = testkit::etcd::EtcdCluster::start_single().await?;
    let port = free_port()?;
    let pki = Pki::new(port)?;
    let _server = ApiServer::start(
        &pki,
        port,
        &[format!("--etcd-servers={}", etcd.endpoints().join(","))],
    )?;
    let client = client::from_kubeconfig(&pki.kubeconfig()).await?;
    namespace(&client, "versions").await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let schema = json!({"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}});
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "tools.kubers.example.com"},
        "spec": {
            "group": "kubers.example.com",
            "scope": "Namespaced",
            "names": {"plural": "tools", "kind": "Tool"},
            "versions": [
                {"name": "v1beta1", "served": true, "storage": false, "schema": schema},
                {"name": "v1", "served": true, "storage": true, "schema": schema},
            ]
        }
    }))?;
    crds.create(&PostParams::default(), &crd).await?;
    let resource = |version: &str| {
        kube::discovery::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("kubers.example.com", version, "Tool"),
            "tools",
        )
    };
    let old: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), "versions", &resource("v1beta1"));
    let new: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), "versions", &resource("v1"));
    let made: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubers.example.com/v1beta1", "kind": "Tool",
        "metadata": {"name": "hammer"}, "spec": {"weight": 3}
    }))?;
    testkit::eventually(DEADLINE, || async {
        old.create(&PostParams::default(), &made).await
    })
    .await?;
    let as_v1 = new.get("hammer").await?;
    ensure!(
        as_v1.types.as_ref().map(|t| t.api_version.as_str()) == Some("kubers.example.com/v1"),
        "read through v1: {:?}",
        as_v1.types
    );
    let as_beta = old.get("hammer").await?;
    ensure!(as_beta.types.as_ref().map(|t| t.api_version.as_str()) == Some("kubers.example.com/v1beta1"));
    let listed = new.list(&ListParams::default()).await?;
    ensure!(
        listed
            .items
            .iter()
            .all(|o| o.types.as_ref().map(|t| t.api_version.as_str()) == Some("kubers.example.com/v1"))
    );
    let (code, body) = curl(
        &pki,
        port,
        &["/apis/kubers.example.com/v1/namespaces/versions/tools"],
    )?;
    let list: serde_json::Value = serde_json::from_str(&body)?;
    ensure!(
        code == 200
            && list["items"][0]["kind"] == "Tool"
            && list["items"][0]["apiVersion"] == "kubers.example.com/v1",
        "custom list items carry their kind and version: {code} {body}"
    );
    // Written through v1beta1, kept in etcd as the storage version v1.
    let stored = etcd
        .client()
        .await?
        .get("/registry/kubers.example.com/tools/versions/hammer", None)
        .await?;
    let value: serde_json::Value =
        serde_json::from_slice(stored.kvs().first().map(|kv| kv.value()).unwrap_or_default())?;
    ensure!(value["apiVersion"] == "kubers.example.com/v1", "stored {value}");
    Ok(())
}
