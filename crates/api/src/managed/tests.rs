use serde_json::{Value, json};

use super::*;

const T0: &str = "2024-01-01T00:00:00Z";
const T1: &str = "2024-01-01T00:01:00Z";

fn writer<'a>(manager: &'a str, now: &'a str) -> Writer<'a> {
    Writer {
        manager,
        api_version: "apps/v1",
        subresource: "",
        now,
        schema: Schema::root("apps", "Deployment", None),
        scope: Scope::NoStatus,
    }
}

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}},
    })
}

fn owned(obj: &Value, manager: &str) -> Vec<String> {
    entries(obj)
        .iter()
        .filter(|e| e.manager == manager)
        .flat_map(|e| e.fields.members())
        .map(|p| path_string(&p))
        .collect()
}

#[test]
fn a_create_records_an_update_entry_in_upstreams_format() {
    let mut obj = deployment(1, "nginx");
    obj["metadata"]["labels"] = json!({"app": "web"});
    record_update(None, &mut obj, &writer("kubectl-create", T0));
    assert_eq!(
        obj["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1", "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:replicas": {}, "f:template": {".": {}, "f:spec": {".": {}, "f:containers": {
                    "k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}}}}},
            },
        }])
    );
}

#[test]
fn an_update_takes_the_fields_it_changed_and_leaves_the_rest_with_their_owners() {
    let mut obj = deployment(1, "nginx");
    record_update(None, &mut obj, &writer("creator", T0));
    let old = obj.clone();
    let mut new = deployment(3, "nginx");
    resolve_incoming(Some(&old), &mut new);
    record_update(Some(&old), &mut new, &writer("scaler", T1));
    assert_eq!(owned(&new, "scaler"), [".spec.replicas"]);
    assert!(!owned(&new, "creator").contains(&".spec.replicas".to_string()));
    assert!(
        owned(&new, "creator").contains(&r#".spec.template.spec.containers[name="c"].image"#.to_string())
    );
    // Nothing changed: nothing recorded, not even a time.
    let mut same = new.clone();
    record_update(Some(&new), &mut same, &writer("other", T1));
    assert_eq!(same, new);
}

#[test]
fn incoming_managed_fields_are_kept_replaced_or_reset() {
    let old = json!({"metadata": {"managedFields": [{"manager": "a"}]}});
    let mut absent = json!({"metadata": {}});
    resolve_incoming(Some(&old), &mut absent);
    assert_eq!(absent["metadata"]["managedFields"], json!([{"manager": "a"}]));
    let mut reset = json!({"metadata": {"managedFields": [{}]}});
    resolve_incoming(Some(&old), &mut reset);
    assert!(reset["metadata"].get("managedFields").is_none());
    let mut replaced = json!({"metadata": {"managedFields": [{"manager": "b"}]}});
    resolve_incoming(Some(&old), &mut replaced);
    assert_eq!(replaced["metadata"]["managedFields"], json!([{"manager": "b"}]));
}

#[test]
fn apply_creates_merges_and_records_an_apply_entry() {
    let live = json!({});
    let out = apply(&live, &deployment(2, "nginx"), &writer("mgr", T0), false).unwrap();
    assert_eq!(out["spec"]["replicas"], 2);
    let e = &entries(&out)[0];
    assert_eq!((e.manager.as_str(), e.operation), ("mgr", Operation::Apply));
    assert_eq!(
        owned(&out, "mgr"),
        [
            ".spec.replicas",
            r#".spec.template.spec.containers[name="c"]"#,
            r#".spec.template.spec.containers[name="c"].image"#,
            r#".spec.template.spec.containers[name="c"].name"#,
        ]
    );
}

#[test]
fn changing_a_field_another_manager_owns_conflicts_unless_forced() {
    let live = apply(&json!({}), &deployment(2, "nginx"), &writer("first", T0), false).unwrap();
    // The same value is shared, not a conflict.
    let shared = apply(&live, &deployment(2, "nginx"), &writer("second", T1), false).unwrap();
    assert!(owned(&shared, "first").contains(&".spec.replicas".to_string()));
    assert!(owned(&shared, "second").contains(&".spec.replicas".to_string()));

    let err = apply(&live, &deployment(5, "nginx"), &writer("second", T1), false).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "first": .spec.replicas"#
    );
    let status = err.to_api_error().status();
    assert_eq!(status.code, 409);
    assert_eq!(status.reason, "Conflict");
    let cause = &status.details.unwrap().causes[0];
    assert_eq!(
        (
            cause.reason.as_str(),
            cause.message.as_str(),
            cause.field.as_str()
        ),
        (
            "FieldManagerConflict",
            r#"conflict with "first""#,
            ".spec.replicas"
        )
    );

    let forced = apply(&live, &deployment(5, "nginx"), &writer("second", T1), true).unwrap();
    assert_eq!(forced["spec"]["replicas"], 5);
    assert!(!owned(&forced, "first").contains(&".spec.replicas".to_string()));
    assert!(owned(&forced, "second").contains(&".spec.replicas".to_string()));
}

#[test]
fn conflicts_with_update_managers_name_their_version_and_time_and_group_by_manager() {
    let mut live = deployment(1, "nginx");
    record_update(None, &mut live, &writer("kubectl-create", T0));
    let err = apply(&live, &deployment(3, "httpd"), &writer("mgr", T1), false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-create\" using apps/v1 at 2024-01-01T00:00:00Z:\n\
         - .spec.replicas\n- .spec.template.spec.containers[name=\"c\"].image"
    );
}

#[test]
fn fields_an_applier_stops_applying_are_removed_unless_someone_else_owns_them() {
    let mut cfg = deployment(2, "nginx");
    cfg["metadata"]["labels"] = json!({"a": "1", "b": "2"});
    let live = apply(&json!({}), &cfg, &writer("mgr", T0), false).unwrap();
    // Another manager takes label b (an update that changes it).
    let mut taken = live.clone();
    taken["metadata"]["labels"]["b"] = json!("3");
    record_update(Some(&live), &mut taken, &writer("editor", T0));
    // The applier drops both labels and the replicas.
    let mut less = deployment(2, "nginx");
    less["spec"].as_object_mut().unwrap().remove("replicas");
    let out = apply(&taken, &less, &writer("mgr", T1), false).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"b": "3"}));
    assert!(out["spec"].get("replicas").is_none());
    assert!(!owned(&out, "mgr").contains(&".spec.replicas".to_string()));
}

#[test]
fn a_container_dropped_from_the_configuration_leaves_the_list() {
    let mut two = deployment(1, "nginx");
    two["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "c", "image": "nginx"}, {"name": "side", "image": "busybox"}]);
    let live = apply(&json!({}), &two, &writer("mgr", T0), false).unwrap();
    let out = apply(&live, &deployment(1, "nginx"), &writer("mgr", T1), false).unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "c", "image": "nginx"}])
    );
}

#[test]
fn managers_come_from_the_user_agent_and_are_validated() {
    assert_eq!(
        manager_from_user_agent("kubectl/v1.20.0 (linux/amd64) kubernetes/abc"),
        "kubectl"
    );
    assert_eq!(manager_from_user_agent(""), "");
    assert!(validate_manager("kubectl").is_empty());
    let errs = validate_manager(&"x".repeat(129));
    assert_eq!(
        errs[0].to_string(),
        "fieldManager: Too long: may not be more than 128 bytes"
    );
    assert!(!validate_manager("a\nb").is_empty());
}

#[test]
fn apply_is_total_on_odd_inputs() {
    for (live, applied) in [
        (json!(null), json!({"spec": 1})),
        (json!({"spec": [1, 2]}), json!({"spec": {"a": 1}})),
        (
            json!({"metadata": {"managedFields": "junk"}}),
            json!({"metadata": {"labels": {}}}),
        ),
        (
            json!({"spec": {"template": {"spec": {"containers": [1]}}}}),
            deployment(1, "x"),
        ),
        (deployment(1, "x"), json!([])),
    ] {
        let _ = apply(&live, &applied, &writer("m", T0), false);
    }
}
