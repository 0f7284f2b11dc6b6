//! Server-side printing: `meta.k8s.io/v1 Table` responses, what kubectl asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! Columns and cell formatting follow upstream's printers for each built-in kind; every column
//! is filled (kubectl hides `priority: 1` columns unless `-o wide`). Unknown kinds get
//! `NAME AGE`; custom resources use [`PrinterColumn`]s from `additionalPrinterColumns`.
//! Input is plain JSON objects plus `now`, so results are deterministic.

use std::collections::BTreeSet;

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
}

impl TableColumn {
    fn new(name: &str, type_: &str, priority: i32, description: &str) -> Self {
        let format = if name == "Name" { "name" } else { "" };
        Self {
            name: name.into(),
            type_: type_.into(),
            format: format.into(),
            description: description.into(),
            priority,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableRow {
    pub cells: Vec<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub kind: String,
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// List metadata (`resourceVersion`, `continue`), filled in by the caller.
    pub metadata: Map<String, Value>,
    #[serde(rename = "columnDefinitions")]
    pub column_definitions: Vec<TableColumn>,
    pub rows: Vec<TableRow>,
}

impl Table {
    pub fn new(column_definitions: Vec<TableColumn>, rows: Vec<TableRow>) -> Self {
        Self {
            kind: "Table".into(),
            api_version: "meta.k8s.io/v1".into(),
            metadata: Map::new(),
            column_definitions,
            rows,
        }
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// `includeObject` of the Table request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    /// A `PartialObjectMetadata` per row; upstream's default.
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "None" => Some(Self::None),
            "Metadata" | "" => Some(Self::Metadata),
            "Object" => Some(Self::Object),
            _ => None,
        }
    }

    fn attach(self, obj: &Value) -> Option<Value> {
        match self {
            Self::None => None,
            Self::Object => Some(obj.clone()),
            Self::Metadata => Some(json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
            })),
        }
    }
}

/// Upstream's `HumanDuration`: `5s`, `3m2s`, `15m`, `4h5m`, `30h`, `2d3h`, `40d`, `2y10d`, `9y`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Age of an RFC 3339 timestamp at `now`, as the AGE column shows it; `<unknown>` when absent.
pub fn age(timestamp: Option<&str>, now: Timestamp) -> String {
    match timestamp.filter(|t| !t.is_empty()).map(str::parse::<Timestamp>) {
        None => "<unknown>".into(),
        Some(Err(_)) => "<invalid>".into(),
        Some(Ok(t)) => human_duration(now.duration_since(t).as_secs()),
    }
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn or_none(s: &str) -> String {
    if s.is_empty() { "<none>".into() } else { s.into() }
}

fn name(obj: &Value) -> Value {
    Value::String(s(obj, "/metadata/name").into())
}

fn created(obj: &Value, now: Timestamp) -> Value {
    Value::String(age(
        obj.pointer("/metadata/creationTimestamp").and_then(Value::as_str),
        now,
    ))
}

/// `labels.FormatLabels`: sorted `k=v` pairs or `<none>`.
fn format_labels(v: Option<&Value>) -> String {
    let pairs: Vec<String> = v
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

fn selector_string(v: Option<&Value>) -> String {
    match crate::labels::Selector::from_label_selector_json(v) {
        Ok(sel) => sel.to_string(),
        Err(_) => "<invalid>".into(),
    }
}

fn containers_and_images(containers: &[Value]) -> (Value, Value) {
    let names: Vec<&str> = containers.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, "/image")).collect();
    (Value::String(names.join(",")), Value::String(images.join(",")))
}

const NAME_DESC: &str = "Name must be unique within a namespace.";
const AGE_DESC: &str = "Time since the object was created.";

fn name_col() -> TableColumn {
    TableColumn::new("Name", "string", 0, NAME_DESC)
}

fn age_col() -> TableColumn {
    TableColumn::new("Age", "string", 0, AGE_DESC)
}

fn workload_wide_cols() -> [TableColumn; 3] {
    [
        TableColumn::new(
            "Containers",
            "string",
            1,
            "Names of each container in the template.",
        ),
        TableColumn::new(
            "Images",
            "string",
            1,
            "Images referenced by each container in the template.",
        ),
        TableColumn::new(
            "Selector",
            "string",
            1,
            "Label query over pods that should match the replica count.",
        ),
    ]
}

/// The columns upstream prints for a kind; `NAME AGE` for kinds it has no printer for.
pub fn columns_for(group: &str, kind: &str) -> Vec<TableColumn> {
    let c = TableColumn::new;
    match (group, kind) {
        ("", "Pod") => vec![
            name_col(),
            c(
                "Ready",
                "string",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            c(
                "Status",
                "string",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            c(
                "Restarts",
                "string",
                0,
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            age_col(),
            c("IP", "string", 1, "IP address allocated to the pod."),
            c("Node", "string", 1, "Node the pod is scheduled onto."),
            c(
                "Nominated Node",
                "string",
                1,
                "Node the scheduler nominated for preemption.",
            ),
            c(
                "Readiness Gates",
                "string",
                1,
                "Readiness gates that are true, out of all.",
            ),
        ],
        ("", "Node") => vec![
            name_col(),
            c("Status", "string", 0, "The status of the node"),
            c("Roles", "string", 0, "The roles of the node"),
            age_col(),
            c("Version", "string", 0, "Kubelet Version reported by the node."),
            c(
                "Internal-IP",
                "string",
                1,
                "List of addresses reachable to the node.",
            ),
            c(
                "External-IP",
                "string",
                1,
                "List of addresses reachable to the node.",
            ),
            c("OS-Image", "string", 1, "OS Image reported by the node."),
            c(
                "Kernel-Version",
                "string",
                1,
                "Kernel Version reported by the node.",
            ),
            c(
                "Container-Runtime",
                "string",
                1,
                "Container runtime version reported by the node.",
            ),
        ],
        ("apps", "Deployment") => {
            let mut v = vec![
                name_col(),
                c("Ready", "string", 0, "Number of the pod with ready state"),
                c(
                    "Up-to-date",
                    "string",
                    0,
                    "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                ),
                c(
                    "Available",
                    "string",
                    0,
                    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                ),
                age_col(),
            ];
            v.extend(workload_wide_cols());
            v
        }
        ("apps", "ReplicaSet") => {
            let mut v = vec![
                name_col(),
                c("Desired", "integer", 0, "Number of desired pods."),
                c(
                    "Current",
                    "integer",
                    0,
                    "The most recently observed number of replicas.",
                ),
                c(
                    "Ready",
                    "integer",
                    0,
                    "The number of ready replicas for this replica set.",
                ),
                age_col(),
            ];
            v.extend(workload_wide_cols());
            v
        }
        ("apps", "DaemonSet") => {
            let mut v = vec![
                name_col(),
                c(
                    "Desired",
                    "integer",
                    0,
                    "The total number of nodes that should be running the daemon pod.",
                ),
                c(
                    "Current",
                    "integer",
                    0,
                    "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
                ),
                c(
                    "Ready",
                    "integer",
                    0,
                    "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
                ),
                c(
                    "Up-to-date",
                    "integer",
                    0,
                    "The total number of nodes that are running updated daemon pod.",
                ),
                c(
                    "Available",
                    "integer",
                    0,
                    "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
                ),
                c(
                    "Node Selector",
                    "string",
                    0,
                    "Selector which must match a node's labels for the pod to be scheduled on that node.",
                ),
                age_col(),
            ];
            v.extend(workload_wide_cols());
            v
        }
        ("", "Service") => vec![
            name_col(),
            c("Type", "string", 0, "How the service is exposed."),
            c(
                "Cluster-IP",
                "string",
                0,
                "IP address of the service, usually assigned randomly.",
            ),
            c(
                "External-IP",
                "string",
                0,
                "IP addresses for which nodes in the cluster also accept traffic for this service.",
            ),
            c("Port(s)", "string", 0, "The ports exposed by this service."),
            age_col(),
            c(
                "Selector",
                "string",
                1,
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ],
        ("", "Endpoints") => vec![
            name_col(),
            c(
                "Endpoints",
                "string",
                0,
                "The set of all endpoints is the union of all subsets.",
            ),
            age_col(),
        ],
        ("", "Namespace") => vec![
            name_col(),
            c("Status", "string", 0, "The status of the namespace"),
            age_col(),
        ],
        ("", "ConfigMap") => vec![
            name_col(),
            c("Data", "string", 0, "Number of data entries."),
            age_col(),
        ],
        ("", "Secret") => vec![
            name_col(),
            c(
                "Type",
                "string",
                0,
                "Used to facilitate programmatic handling of secret data.",
            ),
            c("Data", "string", 0, "Number of data entries."),
            age_col(),
        ],
        ("", "ServiceAccount") => vec![
            name_col(),
            c(
                "Secrets",
                "string",
                0,
                "Number of secrets listed by the service account.",
            ),
            age_col(),
        ],
        ("", "Event") | ("events.k8s.io", "Event") => vec![
            c(
                "Last Seen",
                "string",
                0,
                "The time at which the most recent occurrence of this event was recorded.",
            ),
            c("Type", "string", 0, "Type of this event (Normal, Warning)."),
            c(
                "Reason",
                "string",
                0,
                "Short, machine understandable string that gives the reason for the transition into the object's current status.",
            ),
            c("Object", "string", 0, "The object that this event is about."),
            c(
                "Subobject",
                "string",
                1,
                "The part of the object this event is about.",
            ),
            c("Source", "string", 1, "The component reporting this event."),
            c(
                "Message",
                "string",
                0,
                "A human-readable description of the status of this operation.",
            ),
            c(
                "First Seen",
                "string",
                1,
                "The time at which the event was first recorded.",
            ),
            c(
                "Count",
                "string",
                1,
                "The number of times this event has occurred.",
            ),
            TableColumn {
                format: "name".into(),
                ..c("Name", "string", 1, NAME_DESC)
            },
        ],
        ("coordination.k8s.io", "Lease") => vec![
            name_col(),
            c("Holder", "string", 0, "The holder of the lease."),
            age_col(),
        ],
        ("rbac.authorization.k8s.io", "Role") | ("rbac.authorization.k8s.io", "ClusterRole") => {
            vec![
                name_col(),
                c("Created At", "date", 0, "Time the object was created."),
            ]
        }
        ("rbac.authorization.k8s.io", "RoleBinding")
        | ("rbac.authorization.k8s.io", "ClusterRoleBinding") => vec![
            name_col(),
            c(
                "Role",
                "string",
                0,
                "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
            ),
            age_col(),
            c("Users", "string", 1, "Users in the roleBinding"),
            c("Groups", "string", 1, "Groups in the roleBinding"),
            c(
                "ServiceAccounts",
                "string",
                1,
                "ServiceAccounts in the roleBinding",
            ),
        ],
        ("certificates.k8s.io", "CertificateSigningRequest") => vec![
            name_col(),
            age_col(),
            c(
                "SignerName",
                "string",
                0,
                "The name of the signer the request is for.",
            ),
            c(
                "Requestor",
                "string",
                0,
                "Name of the user that created the request.",
            ),
            c(
                "RequestedDuration",
                "string",
                0,
                "The requested validity of the certificate.",
            ),
            c("Condition", "string", 0, "The state of the request."),
        ],
        _ => vec![name_col(), age_col()],
    }
}

/// The cells of one object's row, in [`columns_for`] order.
pub fn row_cells(group: &str, kind: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    match (group, kind) {
        ("", "Pod") => pod_cells(obj, now),
        ("", "Node") => node_cells(obj, now),
        ("apps", "Deployment") => {
            let (containers, images) = containers_and_images(arr(obj, "/spec/template/spec/containers"));
            let desired = obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
            vec![
                name(obj),
                json!(format!("{}/{}", int(obj, "/status/readyReplicas"), desired)),
                json!(int(obj, "/status/updatedReplicas")),
                json!(int(obj, "/status/availableReplicas")),
                created(obj, now),
                containers,
                images,
                json!(selector_string(obj.pointer("/spec/selector"))),
            ]
        }
        ("apps", "ReplicaSet") => {
            let (containers, images) = containers_and_images(arr(obj, "/spec/template/spec/containers"));
            vec![
                name(obj),
                json!(obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)),
                json!(int(obj, "/status/replicas")),
                json!(int(obj, "/status/readyReplicas")),
                created(obj, now),
                containers,
                images,
                json!(selector_string(obj.pointer("/spec/selector"))),
            ]
        }
        ("apps", "DaemonSet") => {
            let (containers, images) = containers_and_images(arr(obj, "/spec/template/spec/containers"));
            vec![
                name(obj),
                json!(int(obj, "/status/desiredNumberScheduled")),
                json!(int(obj, "/status/currentNumberScheduled")),
                json!(int(obj, "/status/numberReady")),
                json!(int(obj, "/status/updatedNumberScheduled")),
                json!(int(obj, "/status/numberAvailable")),
                json!(format_labels(obj.pointer("/spec/template/spec/nodeSelector"))),
                created(obj, now),
                containers,
                images,
                json!(selector_string(obj.pointer("/spec/selector"))),
            ]
        }
        ("", "Service") => service_cells(obj, now),
        ("", "Endpoints") => vec![name(obj), json!(format_endpoints(obj)), created(obj, now)],
        ("", "Namespace") => vec![name(obj), json!(s(obj, "/status/phase")), created(obj, now)],
        ("", "ConfigMap") => {
            let n = obj.get("data").and_then(Value::as_object).map_or(0, Map::len)
                + obj
                    .get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, Map::len);
            vec![name(obj), json!(n), created(obj, now)]
        }
        ("", "Secret") => {
            let n = obj.get("data").and_then(Value::as_object).map_or(0, Map::len);
            vec![name(obj), json!(s(obj, "/type")), json!(n), created(obj, now)]
        }
        ("", "ServiceAccount") => vec![name(obj), json!(arr(obj, "/secrets").len()), created(obj, now)],
        ("", "Event") => event_cells(&core_event_view(obj), now),
        ("events.k8s.io", "Event") => event_cells(&events_v1_as_core(obj), now),
        ("coordination.k8s.io", "Lease") => vec![
            name(obj),
            json!(s(obj, "/spec/holderIdentity")),
            created(obj, now),
        ],
        ("rbac.authorization.k8s.io", "Role") | ("rbac.authorization.k8s.io", "ClusterRole") => {
            vec![name(obj), json!(s(obj, "/metadata/creationTimestamp"))]
        }
        ("rbac.authorization.k8s.io", "RoleBinding")
        | ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            let (mut users, mut groups, mut sas) = (vec![], vec![], vec![]);
            for subj in arr(obj, "/subjects") {
                match s(subj, "/kind") {
                    "User" => users.push(s(subj, "/name").to_string()),
                    "Group" => groups.push(s(subj, "/name").to_string()),
                    "ServiceAccount" => sas.push(format!("{}:{}", s(subj, "/namespace"), s(subj, "/name"))),
                    _ => {}
                }
            }
            vec![
                name(obj),
                json!(format!("{}/{}", s(obj, "/roleRef/kind"), s(obj, "/roleRef/name"))),
                created(obj, now),
                json!(users.join(", ")),
                json!(groups.join(", ")),
                json!(sas.join(", ")),
            ]
        }
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            let duration = match obj.pointer("/spec/expirationSeconds").and_then(Value::as_i64) {
                Some(secs) => human_duration(secs),
                None => "<none>".into(),
            };
            vec![
                name(obj),
                created(obj, now),
                json!(or_none(s(obj, "/spec/signerName"))),
                json!(s(obj, "/spec/username")),
                json!(duration),
                json!(csr_condition(obj)),
            ]
        }
        _ => vec![name(obj), created(obj, now)],
    }
}

/// Extra per-row conditions upstream attaches (completed pods).
fn row_conditions(group: &str, kind: &str, obj: &Value) -> Vec<Value> {
    if (group, kind) != ("", "Pod") {
        return vec![];
    }
    match s(obj, "/status/phase") {
        "Succeeded" => vec![
            json!({"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}),
        ],
        "Failed" => vec![
            json!({"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}),
        ],
        _ => vec![],
    }
}

/// The whole Table for objects of one built-in (or unknown) kind.
pub fn to_table(group: &str, kind: &str, objects: &[Value], now: Timestamp, include: IncludeObject) -> Table {
    let rows = objects
        .iter()
        .map(|o| TableRow {
            cells: row_cells(group, kind, o, now),
            conditions: row_conditions(group, kind, o),
            object: include.attach(o),
        })
        .collect();
    Table::new(columns_for(group, kind), rows)
}

fn state_reason(state: &Value, prefix: &str) -> Option<String> {
    if let Some(w) = state.get("waiting") {
        let r = s(w, "/reason");
        if !r.is_empty() {
            return Some(format!("{prefix}{r}"));
        }
    }
    if let Some(t) = state.get("terminated") {
        let r = s(t, "/reason");
        if !r.is_empty() {
            return Some(format!("{prefix}{r}"));
        }
        let signal = int(t, "/signal");
        return Some(if signal != 0 {
            format!("{prefix}Signal:{signal}")
        } else {
            format!("{prefix}ExitCode:{}", int(t, "/exitCode"))
        });
    }
    None
}

fn finished_at(status: &Value) -> Option<Timestamp> {
    status
        .pointer("/lastState/terminated/finishedAt")
        .and_then(Value::as_str)
        .and_then(|t| t.parse().ok())
}

fn has_condition(obj: &Value, ty: &str) -> bool {
    arr(obj, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == ty && s(c, "/status") == "True")
}

fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let init_specs = arr(pod, "/spec/initContainers");
    // Sidecars (init containers with restartPolicy Always) count as regular containers.
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| s(c, "/name") == name && s(c, "/restartPolicy") == "Always")
    };
    let total = arr(pod, "/spec/containers").len()
        + init_specs
            .iter()
            .filter(|c| s(c, "/restartPolicy") == "Always")
            .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;
    let phase = s(pod, "/status/phase");
    let mut reason = if s(pod, "/status/reason").is_empty() {
        phase.to_string()
    } else {
        s(pod, "/status/reason").to_string()
    };
    for c in arr(pod, "/status/conditions") {
        if s(c, "/type") == "PodScheduled" && s(c, "/reason") == "SchedulingGated" {
            reason = "SchedulingGated".into();
        }
    }
    let mut initializing = false;
    for (i, cs) in arr(pod, "/status/initContainerStatuses").iter().enumerate() {
        let count = int(cs, "/restartCount");
        restarts += count;
        let fin = finished_at(cs);
        last_restart = last_restart.max(fin);
        let sidecar = is_sidecar(s(cs, "/name"));
        if sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = last_sidecar_restart.max(fin);
        }
        let state = cs.get("state").cloned().unwrap_or(Value::Null);
        let terminated = state.get("terminated");
        if terminated.is_some_and(|t| int(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && cs.get("started").and_then(Value::as_bool) == Some(true) {
            if cs.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        let waiting_reason = s(&state, "/waiting/reason");
        reason = if terminated.is_some() {
            state_reason(&json!({"terminated": terminated}), "Init:").unwrap_or_default()
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }
    if !initializing || has_condition(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in arr(pod, "/status/containerStatuses").iter().rev() {
            restarts += int(cs, "/restartCount");
            last_restart = last_restart.max(finished_at(cs));
            let state = cs.get("state").cloned().unwrap_or(Value::Null);
            if let Some(r) = state_reason(&state, "") {
                reason = r;
            } else if cs.get("ready").and_then(Value::as_bool) == Some(true) && state.get("running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    if pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        if s(pod, "/status/reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }
    let restarts_str = match last_restart {
        Some(t) if restarts != 0 => format!(
            "{restarts} ({} ago)",
            human_duration(now.duration_since(t).as_secs())
        ),
        _ => restarts.to_string(),
    };
    let pod_ip = arr(pod, "/status/podIPs")
        .first()
        .map(|p| s(p, "/ip"))
        .unwrap_or("");
    let pod_ip = if pod_ip.is_empty() {
        s(pod, "/status/podIP")
    } else {
        pod_ip
    };
    let gates = arr(pod, "/spec/readinessGates");
    let readiness = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conds = arr(pod, "/status/conditions");
        let trues = gates
            .iter()
            .filter(|g| {
                conds
                    .iter()
                    .find(|c| s(c, "/type") == s(g, "/conditionType"))
                    .is_some_and(|c| s(c, "/status") == "True")
            })
            .count();
        format!("{trues}/{}", gates.len())
    };
    vec![
        name(pod),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_str),
        created(pod, now),
        json!(or_none(pod_ip)),
        json!(or_none(s(pod, "/spec/nodeName"))),
        json!(or_none(s(pod, "/status/nominatedNodeName"))),
        json!(readiness),
    ]
}

const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";

fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    if let Some(c) = arr(node, "/status/conditions")
        .iter()
        .rev()
        .find(|c| s(c, "/type") == "Ready")
    {
        status.push(if s(c, "/status") == "True" {
            "Ready".into()
        } else {
            "NotReady".into()
        });
    }
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles = BTreeSet::new();
    if let Some(labels) = node.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix(NODE_ROLE_PREFIX) {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role" && v.as_str().is_some_and(|v| !v.is_empty()) {
                roles.insert(v.as_str().unwrap_or_default().to_string());
            }
        }
    }
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };
    let address = |ty: &str| {
        arr(node, "/status/addresses")
            .iter()
            .find(|a| s(a, "/type") == ty)
            .map(|a| s(a, "/address").to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    let unknown = |p: &str| {
        let v = s(node, p);
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        name(node),
        json!(status.join(",")),
        json!(roles),
        created(node, now),
        json!(s(node, "/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(unknown("/status/nodeInfo/osImage")),
        json!(unknown("/status/nodeInfo/kernelVersion")),
        json!(unknown("/status/nodeInfo/containerRuntimeVersion")),
    ]
}

fn service_cells(svc: &Value, now: Timestamp) -> Vec<Value> {
    let ty = s(svc, "/spec/type");
    let ty = if ty.is_empty() { "ClusterIP" } else { ty };
    let cluster_ip = arr(svc, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| s(svc, "/spec/clusterIP"));
    let external_ips: Vec<&str> = arr(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match ty {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let lb: Vec<&str> = arr(svc, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| {
                    let ip = s(i, "/ip");
                    let host = s(i, "/hostname");
                    if !ip.is_empty() {
                        Some(ip)
                    } else if !host.is_empty() {
                        Some(host)
                    } else {
                        None
                    }
                })
                .collect();
            let mut all: Vec<&str> = lb.clone();
            all.extend(external_ips.iter().copied());
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => s(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = arr(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let proto = match s(p, "/protocol") {
                "" => "TCP",
                x => x,
            };
            let node_port = int(p, "/nodePort");
            if node_port > 0 {
                format!("{}:{node_port}/{proto}", int(p, "/port"))
            } else {
                format!("{}/{proto}", int(p, "/port"))
            }
        })
        .collect();
    vec![
        name(svc),
        json!(ty),
        json!(or_none(cluster_ip)),
        json!(external),
        json!(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        }),
        created(svc, now),
        json!(format_labels(svc.pointer("/spec/selector"))),
    ]
}

/// Up to three `ip:port` pairs, then `+ N more...`, as upstream's endpoints printer.
fn format_endpoints(ep: &Value) -> String {
    let subsets = arr(ep, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let max = 3;
    let mut list: Vec<String> = Vec::new();
    let mut count = 0;
    let mut more = false;
    for ss in subsets {
        for port in arr(ss, "/ports") {
            for addr in arr(ss, "/addresses") {
                if list.len() == max {
                    more = true;
                }
                if !more {
                    let ip = s(addr, "/ip");
                    let p = int(port, "/port");
                    list.push(if ip.contains(':') {
                        format!("[{ip}]:{p}")
                    } else {
                        format!("{ip}:{p}")
                    });
                }
                count += 1;
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - max)
    } else {
        joined
    }
}

/// Core events are printed as is.
fn core_event_view(ev: &Value) -> Value {
    ev.clone()
}

/// events.k8s.io/v1 events are printed through the core shape, as upstream converts them.
fn events_v1_as_core(ev: &Value) -> Value {
    let g = |k: &str| ev.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "metadata": g("metadata"),
        "involvedObject": g("regarding"),
        "reason": g("reason"),
        "message": g("note"),
        "type": g("type"),
        "source": g("deprecatedSource"),
        "firstTimestamp": g("deprecatedFirstTimestamp"),
        "lastTimestamp": g("deprecatedLastTimestamp"),
        "count": g("deprecatedCount"),
        "eventTime": g("eventTime"),
        "series": ev.get("series").map(|s| json!({"count": s.get("count"), "lastObservedTime": s.get("lastObservedTime")})),
        "reportingComponent": g("reportingController"),
        "reportingInstance": g("reportingInstance"),
    })
}

fn event_cells(ev: &Value, now: Timestamp) -> Vec<Value> {
    let ts = |p: &str| ev.pointer(p).and_then(Value::as_str).filter(|t| !t.is_empty());
    let first = match ts("/firstTimestamp") {
        Some(t) => age(Some(t), now),
        None => age(ts("/eventTime"), now),
    };
    let mut last = match ts("/lastTimestamp") {
        Some(t) => age(Some(t), now),
        None => first.clone(),
    };
    let mut count = int(ev, "/count");
    if ev.get("series").is_some_and(|v| !v.is_null()) {
        last = age(ts("/series/lastObservedTime"), now);
        count = int(ev, "/series/count");
    } else if count == 0 {
        count = 1;
    }
    let kind = s(ev, "/involvedObject/kind").to_ascii_lowercase();
    let obj_name = s(ev, "/involvedObject/name");
    let target = if obj_name.is_empty() {
        kind
    } else {
        format!("{kind}/{obj_name}")
    };
    let first_non_empty = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            a.to_string()
        }
    };
    let component = first_non_empty(s(ev, "/source/component"), s(ev, "/reportingComponent"));
    let instance = first_non_empty(s(ev, "/source/host"), s(ev, "/reportingInstance"));
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(s(ev, "/type")),
        json!(s(ev, "/reason")),
        json!(target),
        json!(s(ev, "/involvedObject/fieldPath")),
        json!(source),
        json!(s(ev, "/message").trim()),
        json!(first),
        json!(count),
        name(ev),
    ]
}

fn csr_condition(csr: &Value) -> String {
    let conds = arr(csr, "/status/conditions");
    let has = |t: &str| conds.iter().any(|c| s(c, "/type") == t);
    let mut status = if has("Denied") {
        "Denied".to_string()
    } else if has("Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if has("Failed") {
        status.push_str(",Failed");
    }
    if !s(csr, "/status/certificate").is_empty() {
        status.push_str(",Issued");
    }
    status
}

/// One `additionalPrinterColumns` entry of a CRD version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrinterColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub format: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub priority: i32,
    #[serde(rename = "jsonPath")]
    pub json_path: String,
}

impl PrinterColumn {
    /// What a CRD without `additionalPrinterColumns` shows after the name.
    pub fn default_age() -> Self {
        Self {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: AGE_DESC.into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        }
    }
}

/// Evaluates the simple JSONPath subset CRD columns use: `.a.b`, `.a[0].b`, `.a['x.y']`,
/// optionally wrapped in `{}`.
pub fn simple_json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let p = path.trim();
    let p = p.strip_prefix('{').and_then(|x| x.strip_suffix('}')).unwrap_or(p);
    let p = p.strip_prefix('$').unwrap_or(p);
    let b = p.as_bytes();
    let mut cur = obj;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                    j += 1;
                }
                if j > start {
                    cur = cur.get(&p[start..j])?;
                }
                i = j;
            }
            b'[' => {
                let end = p[i..].find(']')? + i;
                let inner = p[i + 1..end].trim();
                // `[?(@.type=='Ready')]`: the first element whose field equals the value.
                if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                    let (field, want) = filter.split_once("==")?;
                    let field = field.trim().strip_prefix('@')?;
                    let want = want.trim();
                    let want = want
                        .strip_prefix('\'')
                        .and_then(|x| x.strip_suffix('\''))
                        .or_else(|| want.strip_prefix('"').and_then(|x| x.strip_suffix('"')))
                        .unwrap_or(want);
                    cur = cur.as_array()?.iter().find(|item| {
                        simple_json_path(item, field).is_some_and(|v| match v {
                            Value::String(s) => s == want,
                            other => serde_json::from_str::<Value>(want).is_ok_and(|w| &w == other),
                        })
                    })?;
                    i = end + 1;
                    continue;
                }
                let quoted = inner
                    .strip_prefix('\'')
                    .and_then(|x| x.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|x| x.strip_suffix('"')));
                cur = match quoted {
                    Some(key) => cur.get(key)?,
                    None => cur.get(inner.parse::<usize>().ok()?)?,
                };
                i = end + 1;
            }
            _ => return None,
        }
    }
    Some(cur)
}

fn custom_cell(col: &PrinterColumn, obj: &Value, now: Timestamp) -> Value {
    let Some(v) = simple_json_path(obj, &col.json_path).filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match col.type_.as_str() {
        "integer" => v
            .as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .map_or(Value::Null, |i| json!(i)),
        "number" => v.as_f64().map_or(Value::Null, |f| json!(f)),
        "boolean" => v.as_bool().map_or(Value::Null, Value::Bool),
        "date" => match v.as_str() {
            Some(t) => match t.parse::<Timestamp>() {
                Ok(ts) => json!(human_duration(now.duration_since(ts).as_secs())),
                Err(_) => json!("<invalid>"),
            },
            None => Value::Null,
        },
        // strings print any value, like kubectl's JSONPath printer
        _ => match v {
            Value::String(s) => json!(s),
            other => json!(other.to_string()),
        },
    }
}

/// A Table for custom resources from their CRD's printer columns (`NAME` comes first; with no
/// columns given, `AGE` is added as upstream does).
pub fn custom_table(
    columns: &[PrinterColumn],
    objects: &[Value],
    now: Timestamp,
    include: IncludeObject,
) -> Table {
    let default;
    let columns = if columns.is_empty() {
        default = [PrinterColumn::default_age()];
        &default[..]
    } else {
        columns
    };
    let mut defs = vec![name_col()];
    defs.extend(columns.iter().map(|c| TableColumn {
        name: c.name.clone(),
        type_: c.type_.clone(),
        format: c.format.clone(),
        description: c.description.clone(),
        priority: c.priority,
    }));
    let rows = objects
        .iter()
        .map(|o| {
            let mut cells = vec![name(o)];
            cells.extend(columns.iter().map(|c| custom_cell(c, o, now)));
            TableRow {
                cells,
                conditions: vec![],
                object: include.attach(o),
            }
        })
        .collect();
    Table::new(defs, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn ago(secs: i64) -> String {
        let t = now()
            .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(secs))
            .unwrap();
        t.to_string()
    }

    fn headers(group: &str, kind: &str) -> Vec<String> {
        columns_for(group, kind)
            .iter()
            .filter(|c| c.priority == 0)
            .map(|c| c.name.to_uppercase())
            .collect()
    }

    #[test]
    fn human_duration_matches_upstream_breakpoints() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (182, "3m2s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (4 * 3600 + 5 * 60, "4h5m"),
            (30 * 3600, "30h"),
            (2 * 86400 + 3 * 3600, "2d3h"),
            (3 * 86400, "3d"),
            (40 * 86400, "40d"),
            (2 * 365 * 86400 + 10 * 86400, "2y10d"),
            (5 * 365 * 86400, "5y"),
            (9 * 365 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
        assert_eq!(age(None, now()), "<unknown>");
        assert_eq!(age(Some(&ago(65)), now()), "65s");
    }

    #[test]
    fn default_headers_per_kind_are_upstreams() {
        assert_eq!(headers("", "Pod"), ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
        assert_eq!(headers("", "Node"), ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
        assert_eq!(
            headers("apps", "Deployment"),
            ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
        );
        assert_eq!(
            headers("apps", "ReplicaSet"),
            ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
        );
        assert_eq!(
            headers("apps", "DaemonSet"),
            [
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "NODE SELECTOR",
                "AGE"
            ]
        );
        assert_eq!(
            headers("", "Service"),
            ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
        );
        assert_eq!(headers("", "Namespace"), ["NAME", "STATUS", "AGE"]);
        assert_eq!(headers("", "ConfigMap"), ["NAME", "DATA", "AGE"]);
        assert_eq!(headers("", "Secret"), ["NAME", "TYPE", "DATA", "AGE"]);
        assert_eq!(headers("coordination.k8s.io", "Lease"), ["NAME", "HOLDER", "AGE"]);
        assert_eq!(
            headers("certificates.k8s.io", "CertificateSigningRequest"),
            [
                "NAME",
                "AGE",
                "SIGNERNAME",
                "REQUESTOR",
                "REQUESTEDDURATION",
                "CONDITION"
            ]
        );
        assert_eq!(
            headers("", "Event"),
            ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        );
        assert_eq!(headers("example.com", "Widget"), ["NAME", "AGE"]);
        let wide: Vec<String> = columns_for("", "Pod")
            .iter()
            .filter(|c| c.priority == 1)
            .map(|c| c.name.to_uppercase())
            .collect();
        assert_eq!(wide, ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]);
    }

    #[test]
    fn every_row_has_one_cell_per_column() {
        let kinds = [
            ("", "Pod"),
            ("", "Node"),
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "DaemonSet"),
            ("", "Service"),
            ("", "Endpoints"),
            ("", "Namespace"),
            ("", "ConfigMap"),
            ("", "Secret"),
            ("", "ServiceAccount"),
            ("", "Event"),
            ("events.k8s.io", "Event"),
            ("coordination.k8s.io", "Lease"),
            ("rbac.authorization.k8s.io", "Role"),
            ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
            ("certificates.k8s.io", "CertificateSigningRequest"),
            ("x", "Unknown"),
        ];
        for (g, k) in kinds {
            assert_eq!(
                row_cells(g, k, &json!({"metadata": {"name": "x"}}), now()).len(),
                columns_for(g, k).len(),
                "{k}"
            );
        }
    }

    fn running_pod() -> Value {
        json!({
            "metadata": {"name": "web", "creationTimestamp": ago(300)},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {
                "phase": "Running",
                "podIPs": [{"ip": "10.1.0.4"}],
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                    {"name": "b", "ready": false, "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(40)}}}
                ]
            }
        })
    }

    #[test]
    fn pod_row_shows_readiness_status_restarts_and_wide_columns() {
        let cells = row_cells("", "Pod", &running_pod(), now());
        assert_eq!(
            cells,
            vec![
                json!("web"),
                json!("1/2"),
                json!("CrashLoopBackOff"),
                json!("2 (40s ago)"),
                json!("5m"),
                json!("10.1.0.4"),
                json!("n1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn pod_status_covers_init_terminating_and_exit_codes() {
        let mut p = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
                {"name": "i2", "state": {"running": {}}}
            ]}
        });
        assert_eq!(row_cells("", "Pod", &p, now())[2], "Init:1/2");
        p["status"]["initContainerStatuses"][1]["state"] = json!({"waiting": {"reason": "ErrImagePull"}});
        assert_eq!(row_cells("", "Pod", &p, now())[2], "Init:ErrImagePull");
        p["status"]["initContainerStatuses"][1]["state"] = json!({"terminated": {"exitCode": 3}});
        assert_eq!(row_cells("", "Pod", &p, now())[2], "Init:ExitCode:3");

        let mut q = running_pod();
        q["status"]["containerStatuses"][1]["state"] = json!({"terminated": {"exitCode": 137, "signal": 9}});
        assert_eq!(row_cells("", "Pod", &q, now())[2], "Signal:9");
        q["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(row_cells("", "Pod", &q, now())[2], "Terminating");
        let pending = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}});
        assert_eq!(
            row_cells("", "Pod", &pending, now())[1..4],
            [json!("0/1"), json!("Pending"), json!("0")]
        );
    }

    #[test]
    fn completed_pods_carry_a_row_condition() {
        let p = json!({"metadata": {"name": "p"}, "status": {"phase": "Succeeded"}});
        let t = to_table("", "Pod", &[p], now(), IncludeObject::None);
        assert_eq!(t.rows[0].conditions[0]["reason"], "Succeeded");
        assert!(t.rows[0].object.is_none());
    }

    #[test]
    fn node_row_shows_status_roles_and_addresses() {
        let node = json!({
            "metadata": {"name": "cp1", "creationTimestamp": ago(3 * 86400 + 3600),
                          "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/etcd": "", "kubernetes.io/hostname": "cp1"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.11"}, {"type": "Hostname", "address": "cp1"}],
                "nodeInfo": {"kubeletVersion": "v1.30.0", "osImage": "Debian GNU/Linux 12", "kernelVersion": "6.1.0", "containerRuntimeVersion": "bulwark://0.1.0"}
            }
        });
        assert_eq!(
            row_cells("", "Node", &node, now()),
            vec![
                json!("cp1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,etcd"),
                json!("3d1h"),
                json!("v1.30.0"),
                json!("127.0.0.11"),
                json!("<none>"),
                json!("Debian GNU/Linux 12"),
                json!("6.1.0"),
                json!("bulwark://0.1.0")
            ]
        );
        let bare = json!({"metadata": {"name": "n"}});
        let cells = row_cells("", "Node", &bare, now());
        assert_eq!(
            (cells[1].clone(), cells[2].clone(), cells[7].clone()),
            (json!("Unknown"), json!("<none>"), json!("<unknown>"))
        );
        let not_ready = json!({"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(row_cells("", "Node", &not_ready, now())[1], "NotReady");
    }

    #[test]
    fn workload_rows_count_replicas_and_list_containers() {
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(7200)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1"}, {"name": "side", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        assert_eq!(
            row_cells("apps", "Deployment", &d, now()),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("120m"),
                json!("nginx,side"),
                json!("nginx:1,busybox"),
                json!("app=web")
            ]
        );
        let rs = json!({"metadata": {"name": "web-1"}, "spec": {"replicas": 2}, "status": {"replicas": 2, "readyReplicas": 1}});
        assert_eq!(
            row_cells("apps", "ReplicaSet", &rs, now())[1..4],
            [json!(2), json!(2), json!(1)]
        );
        let ds = json!({"metadata": {"name": "proxy"}, "spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}},
                        "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}});
        assert_eq!(
            row_cells("apps", "DaemonSet", &ds, now())[6],
            "kubernetes.io/os=linux"
        );
    }

    #[test]
    fn service_rows_format_ips_and_ports() {
        let svc = json!({"metadata": {"name": "kubernetes"}, "spec": {"type": "ClusterIP", "clusterIPs": ["10.96.0.1"], "ports": [{"port": 443, "protocol": "TCP"}]}});
        assert_eq!(
            row_cells("", "Service", &svc, now())[1..5],
            [
                json!("ClusterIP"),
                json!("10.96.0.1"),
                json!("<none>"),
                json!("443/TCP")
            ]
        );
        let np = json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.9", "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP"}], "selector": {"app": "x"}}});
        let cells = row_cells("", "Service", &np, now());
        assert_eq!(
            (cells[4].clone(), cells[6].clone()),
            (json!("80:30080/TCP,53/UDP"), json!("app=x"))
        );
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer"}});
        assert_eq!(row_cells("", "Service", &lb, now())[3], "<pending>");
        let en = json!({"metadata": {"name": "en"}, "spec": {"type": "ExternalName", "externalName": "example.com"}});
        assert_eq!(
            row_cells("", "Service", &en, now())[2..4],
            [json!("<none>"), json!("example.com")]
        );
    }

    #[test]
    fn endpoints_show_three_addresses_then_a_count() {
        let ep = json!({"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}, {"ip": "10.0.0.4"}], "ports": [{"port": 80}]}]});
        assert_eq!(
            row_cells("", "Endpoints", &ep, now())[1],
            "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 1 more..."
        );
        assert_eq!(row_cells("", "Endpoints", &json!({}), now())[1], "<none>");
    }

    #[test]
    fn config_secret_namespace_and_lease_rows() {
        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}});
        assert_eq!(row_cells("", "ConfigMap", &cm, now())[1], 3);
        let sec = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "MQ=="}});
        assert_eq!(
            row_cells("", "Secret", &sec, now())[1..3],
            [json!("Opaque"), json!(1)]
        );
        let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        assert_eq!(row_cells("", "Namespace", &ns, now())[1], "Active");
        let lease = json!({"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "cp1_abc"}});
        assert_eq!(
            row_cells("coordination.k8s.io", "Lease", &lease, now())[1],
            "cp1_abc"
        );
    }

    #[test]
    fn event_rows_name_the_object_and_source() {
        let ev = json!({
            "metadata": {"name": "web.17"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
            "reason": "Pulled", "type": "Normal", "message": " pulled \n",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": ago(600), "lastTimestamp": ago(60), "count": 4
        });
        assert_eq!(
            row_cells("", "Event", &ev, now()),
            vec![
                json!("60s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web"),
                json!("spec.containers{app}"),
                json!("kubelet, n1"),
                json!("pulled"),
                json!("10m"),
                json!(4),
                json!("web.17")
            ]
        );
        let v1 = json!({"metadata": {"name": "e"}, "regarding": {"kind": "Node", "name": "n1"}, "note": "hi", "reason": "R", "type": "Warning",
                        "eventTime": ago(5), "reportingController": "bulwark-controller", "reportingInstance": "cp1"});
        let cells = row_cells("events.k8s.io", "Event", &v1, now());
        assert_eq!(
            (
                cells[0].clone(),
                cells[3].clone(),
                cells[5].clone(),
                cells[8].clone()
            ),
            (
                json!("5s"),
                json!("node/n1"),
                json!("bulwark-controller, cp1"),
                json!(1)
            )
        );
    }

    #[test]
    fn rbac_and_csr_rows() {
        let rb = json!({"metadata": {"name": "rb"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
                        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"}, {"kind": "ServiceAccount", "namespace": "ns", "name": "sa"}]});
        assert_eq!(
            row_cells("rbac.authorization.k8s.io", "RoleBinding", &rb, now())[3..],
            [json!("alice"), json!("devs"), json!("ns:sa")]
        );
        assert_eq!(
            row_cells("rbac.authorization.k8s.io", "RoleBinding", &rb, now())[1],
            "ClusterRole/view"
        );
        let role = json!({"metadata": {"name": "r", "creationTimestamp": "2024-01-01T00:00:00Z"}});
        assert_eq!(
            row_cells("rbac.authorization.k8s.io", "ClusterRole", &role, now())[1],
            "2024-01-01T00:00:00Z"
        );
        let csr = json!({"metadata": {"name": "csr-1"}, "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet", "username": "system:bootstrap:abcdef", "expirationSeconds": 86400},
                         "status": {"conditions": [{"type": "Approved"}], "certificate": "LS0t"}});
        assert_eq!(
            row_cells("certificates.k8s.io", "CertificateSigningRequest", &csr, now())[2..],
            [
                json!("kubernetes.io/kube-apiserver-client-kubelet"),
                json!("system:bootstrap:abcdef"),
                json!("24h"),
                json!("Approved,Issued")
            ]
        );
        let pending = json!({"metadata": {"name": "c"}, "spec": {}});
        assert_eq!(
            row_cells(
                "certificates.k8s.io",
                "CertificateSigningRequest",
                &pending,
                now()
            )[5],
            "Pending"
        );
    }

    #[test]
    fn table_json_has_upstream_shape_and_partial_metadata() {
        let t = to_table(
            "",
            "ConfigMap",
            &[json!({"metadata": {"name": "c", "resourceVersion": "5"}, "data": {}})],
            now(),
            IncludeObject::Metadata,
        );
        let v = t.to_value();
        assert_eq!(v["kind"], "Table");
        assert_eq!(v["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(
            v["columnDefinitions"][0],
            json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DESC, "priority": 0})
        );
        assert_eq!(
            v["rows"][0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"name": "c", "resourceVersion": "5"}})
        );
        assert_eq!(v["rows"][0]["cells"], json!(["c", 0, "<unknown>"]));
        assert!(v["rows"][0].get("conditions").is_none());
        let full = to_table(
            "",
            "ConfigMap",
            &[json!({"metadata": {"name": "c"}})],
            now(),
            IncludeObject::Object,
        );
        assert_eq!(full.rows[0].object, Some(json!({"metadata": {"name": "c"}})));
        assert_eq!(IncludeObject::parse("Object"), Some(IncludeObject::Object));
        assert_eq!(IncludeObject::parse("bogus"), None);
    }

    #[test]
    fn custom_resource_columns_use_json_paths() {
        let cols = vec![
            PrinterColumn {
                name: "Spec".into(),
                type_: "string".into(),
                format: String::new(),
                description: String::new(),
                priority: 0,
                json_path: ".spec.cronSpec".into(),
            },
            PrinterColumn {
                name: "Replicas".into(),
                type_: "integer".into(),
                format: String::new(),
                description: String::new(),
                priority: 0,
                json_path: ".spec.replicas".into(),
            },
            PrinterColumn {
                name: "First".into(),
                type_: "string".into(),
                format: String::new(),
                description: String::new(),
                priority: 1,
                json_path: ".spec.items[0]['a.b']".into(),
            },
            PrinterColumn {
                name: "Age".into(),
                type_: "date".into(),
                format: String::new(),
                description: String::new(),
                priority: 0,
                json_path: ".metadata.creationTimestamp".into(),
            },
            PrinterColumn {
                name: "Missing".into(),
                type_: "string".into(),
                format: String::new(),
                description: String::new(),
                priority: 0,
                json_path: ".status.nope".into(),
            },
        ];
        let obj = json!({"metadata": {"name": "ct", "creationTimestamp": ago(90)}, "spec": {"cronSpec": "* * * * */5", "replicas": 2.0, "items": [{"a.b": "x"}]}});
        let t = custom_table(&cols, std::slice::from_ref(&obj), now(), IncludeObject::None);
        assert_eq!(t.column_definitions.len(), 6);
        assert_eq!(
            t.rows[0].cells,
            vec![
                json!("ct"),
                json!("* * * * */5"),
                json!(2),
                json!("x"),
                json!("90s"),
                Value::Null
            ]
        );
        let d = custom_table(&[], &[obj], now(), IncludeObject::None);
        assert_eq!(
            d.column_definitions
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["Name", "Age"]
        );
        assert_eq!(d.rows[0].cells, vec![json!("ct"), json!("90s")]);
        assert_eq!(
            simple_json_path(&json!({"a": {"b": [1, 2]}}), "{.a.b[1]}"),
            Some(&json!(2))
        );
    }

    #[test]
    fn a_filter_picks_the_condition_of_a_type_as_kubefed_printer_columns_ask() {
        let obj = json!({"status": {"conditions": [
            {"type": "Offline", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(
            simple_json_path(&obj, ".status.conditions[?(@.type=='Ready')].status"),
            Some(&json!("True"))
        );
        assert_eq!(
            simple_json_path(&obj, ".status.conditions[?(@.type==\"Gone\")].status"),
            None
        );
    }
}
