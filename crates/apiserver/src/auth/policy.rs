//! Upstream's bootstrap RBAC policy (the objects kube-apiserver creates at startup) and kubeadm's RBAC objects.
//!
//! [`super::bootstrap_policy`] returns ClusterRoles, ClusterRoleBindings, and the Roles and RoleBindings upstream
//! creates in `kube-system` and `kube-public`, each labelled `kubernetes.io/bootstrapping: rbac-defaults` and
//! annotated `rbac.authorization.kubernetes.io/autoupdate: "true"`, plus kubeadm's `kubeadm:cluster-admins` binding.
//! `admin`, `edit` and `view` are aggregated roles upstream; here they carry the aggregated rules directly because
//! `aggregationRule` is not evaluated. [`kubeadm_bootstrap_token_policy`] holds what `kubeadm init phase
//! bootstrap-token` creates (CSR rights for token holders, anonymous read of `kube-public/cluster-info`).

use super::rbac::GROUP;
use serde_json::{Value, json};

const API_VERSION: &str = "rbac.authorization.k8s.io/v1";
const CONTROLLER_PREFIX: &str = "system:controller:";
const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const RW: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One PolicyRule over resources.
fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources})
}

fn named(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources, "resourceNames": names})
}

fn urls(verbs: &[&str], urls: &[&str]) -> Value {
    json!({"verbs": verbs, "nonResourceURLs": urls})
}

fn events() -> Value {
    rule(
        &["create", "update", "patch"],
        &["", "events.k8s.io"],
        &["events"],
    )
}

fn defaults() -> Value {
    json!({
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}
    })
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    let mut meta = defaults();
    meta["name"] = json!(name);
    json!({"apiVersion": API_VERSION, "kind": "ClusterRole", "metadata": meta, "rules": rules})
}

fn role(namespace: &str, name: &str, rules: Vec<Value>) -> Value {
    let mut meta = defaults();
    meta["name"] = json!(name);
    meta["namespace"] = json!(namespace);
    json!({"apiVersion": API_VERSION, "kind": "Role", "metadata": meta, "rules": rules})
}

fn user(name: &str) -> Value {
    json!({"apiGroup": GROUP, "kind": "User", "name": name})
}

fn group(name: &str) -> Value {
    json!({"apiGroup": GROUP, "kind": "Group", "name": name})
}

fn service_account(namespace: &str, name: &str) -> Value {
    json!({"kind": "ServiceAccount", "name": name, "namespace": namespace})
}

fn cluster_binding(name: &str, role: &str, subjects: Vec<Value>) -> Value {
    let mut meta = defaults();
    meta["name"] = json!(name);
    let mut b = json!({"apiVersion": API_VERSION, "kind": "ClusterRoleBinding", "metadata": meta,
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role}});
    if !subjects.is_empty() {
        b["subjects"] = Value::Array(subjects);
    }
    b
}

fn role_binding(namespace: &str, name: &str, role_kind: &str, role: &str, subjects: Vec<Value>) -> Value {
    let mut meta = defaults();
    meta["name"] = json!(name);
    meta["namespace"] = json!(namespace);
    json!({"apiVersion": API_VERSION, "kind": "RoleBinding", "metadata": meta,
        "roleRef": {"apiGroup": GROUP, "kind": role_kind, "name": role}, "subjects": subjects})
}

/// Without upstream's labels and annotations: objects kubeadm creates.
fn plain(mut obj: Value) -> Value {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("labels");
        meta.remove("annotations");
    }
    obj
}

fn view_rules() -> Vec<Value> {
    vec![
        rule(
            READ,
            &[""],
            &[
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "configmaps",
            ],
        ),
        rule(
            READ,
            &[""],
            &[
                "limitranges",
                "resourcequotas",
                "bindings",
                "events",
                "pods/status",
                "resourcequotas/status",
                "namespaces/status",
                "replicationcontrollers/status",
                "pods/log",
            ],
        ),
        rule(READ, &[""], &["namespaces"]),
        rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
        rule(
            READ,
            &["apps"],
            &[
                "controllerrevisions",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
            ],
        ),
        rule(
            READ,
            &["autoscaling"],
            &["horizontalpodautoscalers", "horizontalpodautoscalers/status"],
        ),
        rule(
            READ,
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
        ),
        rule(
            READ,
            &["extensions"],
            &[
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "ingresses",
                "ingresses/status",
                "networkpolicies",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "replicationcontrollers/scale",
            ],
        ),
        rule(
            READ,
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        rule(
            READ,
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
        ),
    ]
}

fn edit_rules() -> Vec<Value> {
    let mut rules = vec![
        rule(
            READ,
            &[""],
            &[
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "secrets",
                "services/proxy",
            ],
        ),
        rule(&["impersonate"], &[""], &["serviceaccounts"]),
        rule(
            WRITE,
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
            ],
        ),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(
            WRITE,
            &[""],
            &[
                "configmaps",
                "events",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
        ),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
        rule(
            WRITE,
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
        ),
        rule(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
        rule(WRITE, &["batch"], &["cronjobs", "jobs"]),
        rule(
            WRITE,
            &["extensions"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "ingresses",
                "networkpolicies",
                "replicasets",
                "replicasets/scale",
                "replicationcontrollers/scale",
            ],
        ),
        rule(WRITE, &["policy"], &["poddisruptionbudgets"]),
        rule(WRITE, &["networking.k8s.io"], &["ingresses", "networkpolicies"]),
        rule(WRITE, &["coordination.k8s.io"], &["leases"]),
        rule(READ, &["coordination.k8s.io"], &["leases"]),
    ];
    rules.extend(view_rules());
    rules
}

fn admin_rules() -> Vec<Value> {
    let mut rules = vec![
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
        ),
        rule(RW, &["rbac.authorization.k8s.io"], &["rolebindings", "roles"]),
    ];
    rules.extend(edit_rules());
    rules
}

fn cluster_roles() -> Vec<Value> {
    let token_and_access_reviews = || {
        vec![
            rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
            rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
        ]
    };
    let mut kcm = vec![
        events(),
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
        named(
            &["get", "update"],
            &["coordination.k8s.io"],
            &["leases"],
            &["kube-controller-manager"],
        ),
        rule(&["create"], &[""], &["secrets", "serviceaccounts"]),
        rule(&["delete"], &[""], &["secrets"]),
        rule(
            &["get"],
            &[""],
            &["configmaps", "namespaces", "secrets", "serviceaccounts"],
        ),
        rule(&["update"], &[""], &["secrets", "serviceaccounts"]),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
        // The controller manager's informers list and watch everything.
        rule(&["list", "watch"], &["*"], &["*"]),
    ];
    kcm.extend(token_and_access_reviews());
    let mut scheduler = vec![
        events(),
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
        named(
            &["get", "update"],
            &["coordination.k8s.io"],
            &["leases"],
            &["kube-scheduler"],
        ),
        rule(READ, &[""], &["nodes"]),
        rule(&["delete", "get", "list", "watch"], &[""], &["pods"]),
        rule(&["create"], &[""], &["bindings", "pods/binding"]),
        rule(&["patch", "update"], &[""], &["pods/status"]),
        rule(READ, &[""], &["replicationcontrollers", "services"]),
        rule(READ, &["apps", "extensions"], &["replicasets"]),
        rule(READ, &["apps"], &["statefulsets"]),
        rule(READ, &["policy"], &["poddisruptionbudgets"]),
        rule(READ, &[""], &["persistentvolumeclaims", "persistentvolumes"]),
        rule(
            READ,
            &["storage.k8s.io"],
            &["csinodes", "csidrivers", "csistoragecapacities"],
        ),
        rule(READ, &[""], &["namespaces"]),
    ];
    scheduler.extend(token_and_access_reviews());
    vec![
        cluster_role(
            "cluster-admin",
            vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
        ),
        cluster_role("admin", admin_rules()),
        cluster_role("edit", edit_rules()),
        cluster_role("view", view_rules()),
        cluster_role(
            "system:discovery",
            vec![urls(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        cluster_role(
            "system:basic-user",
            vec![
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(&["create"], &["authentication.k8s.io"], &["selfsubjectreviews"]),
            ],
        ),
        cluster_role(
            "system:monitoring",
            vec![urls(
                &["get"],
                &[
                    "/healthz",
                    "/healthz/*",
                    "/livez",
                    "/livez/*",
                    "/metrics",
                    "/metrics/slis",
                    "/readyz",
                    "/readyz/*",
                ],
            )],
        ),
        cluster_role(
            "system:public-info-viewer",
            vec![urls(
                &["get"],
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            vec![urls(
                &["get"],
                &[
                    "/.well-known/openid-configuration",
                    "/.well-known/openid-configuration/",
                    "/openid/v1/jwks",
                    "/openid/v1/jwks/",
                ],
            )],
        ),
        cluster_role("system:node", super::node::node_rules()),
        cluster_role(
            "system:node-bootstrapper",
            vec![rule(
                &["create", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
            )],
        ),
        cluster_role("system:auth-delegator", token_and_access_reviews()),
        cluster_role("system:kube-controller-manager", kcm),
        cluster_role("system:kube-scheduler", scheduler),
        cluster_role(
            "system:volume-scheduler",
            vec![
                rule(
                    &["get", "list", "patch", "update", "watch"],
                    &[""],
                    &["persistentvolumes"],
                ),
                rule(READ, &["storage.k8s.io"], &["storageclasses"]),
                rule(
                    &["get", "list", "patch", "update", "watch"],
                    &[""],
                    &["persistentvolumeclaims"],
                ),
            ],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![rule(
                &["create"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/nodeclient"],
            )],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![rule(
                &["create"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/selfnodeclient"],
            )],
        ),
        cluster_role(
            "system:certificates.k8s.io:kube-apiserver-client-approver",
            vec![named(
                &["approve"],
                &["certificates.k8s.io"],
                &["signers"],
                &["kubernetes.io/kube-apiserver-client"],
            )],
        ),
        cluster_role(
            "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
            vec![named(
                &["approve"],
                &["certificates.k8s.io"],
                &["signers"],
                &["kubernetes.io/kube-apiserver-client-kubelet"],
            )],
        ),
        cluster_role(
            "system:certificates.k8s.io:kubelet-serving-approver",
            vec![named(
                &["approve"],
                &["certificates.k8s.io"],
                &["signers"],
                &["kubernetes.io/kubelet-serving"],
            )],
        ),
        cluster_role(
            "system:certificates.k8s.io:legacy-unknown-approver",
            vec![named(
                &["approve"],
                &["certificates.k8s.io"],
                &["signers"],
                &["kubernetes.io/legacy-unknown"],
            )],
        ),
    ]
}

fn cluster_role_bindings() -> Vec<Value> {
    vec![
        cluster_binding("cluster-admin", "cluster-admin", vec![group("system:masters")]),
        cluster_binding(
            "system:discovery",
            "system:discovery",
            vec![group("system:authenticated")],
        ),
        cluster_binding(
            "system:basic-user",
            "system:basic-user",
            vec![group("system:authenticated")],
        ),
        cluster_binding(
            "system:monitoring",
            "system:monitoring",
            vec![group("system:monitoring")],
        ),
        cluster_binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            vec![group("system:authenticated"), group("system:unauthenticated")],
        ),
        cluster_binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            vec![group("system:serviceaccounts")],
        ),
        cluster_binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            vec![user("system:kube-controller-manager")],
        ),
        cluster_binding(
            "system:kube-scheduler",
            "system:kube-scheduler",
            vec![user("system:kube-scheduler")],
        ),
        cluster_binding(
            "system:volume-scheduler",
            "system:volume-scheduler",
            vec![user("system:kube-scheduler")],
        ),
        // Upstream keeps this binding without subjects: nodes are authorized by the node authorizer.
        cluster_binding("system:node", "system:node", vec![]),
    ]
}

/// Upstream's controller roles for the controllers bulwark's controller-manager runs, each bound to the
/// `kube-system` ServiceAccount named after it (name without the `system:controller:` prefix).
fn controller_roles() -> Vec<Value> {
    let scale_and_status = |group: &[&str], res: &str| {
        rule(
            &["update"],
            group,
            &[&format!("{res}/status"), &format!("{res}/finalizers")],
        )
    };
    vec![
        cluster_role(
            "system:controller:daemon-set-controller",
            vec![
                rule(READ, &["extensions", "apps"], &["daemonsets"]),
                scale_and_status(&["extensions", "apps"], "daemonsets"),
                rule(&["list", "watch"], &[""], &["nodes"]),
                rule(&["list", "watch", "create", "delete", "patch"], &[""], &["pods"]),
                rule(&["create"], &[""], &["pods/binding"]),
                rule(
                    &["get", "list", "watch", "create", "delete", "update", "patch"],
                    &["apps"],
                    &["controllerrevisions"],
                ),
                events(),
            ],
        ),
        cluster_role(
            "system:controller:deployment-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update"],
                    &["extensions", "apps"],
                    &["deployments"],
                ),
                scale_and_status(&["extensions", "apps"], "deployments"),
                rule(
                    &["get", "list", "watch", "create", "update", "patch", "delete"],
                    &["apps", "extensions"],
                    &["replicasets"],
                ),
                rule(&["get", "list", "watch", "update"], &[""], &["pods"]),
                events(),
            ],
        ),
        cluster_role(
            "system:controller:endpoint-controller",
            vec![
                rule(READ, &[""], &["services", "pods"]),
                rule(
                    &["get", "list", "watch", "create", "update", "delete"],
                    &[""],
                    &["endpoints"],
                ),
                rule(&["create"], &[""], &["endpoints/restricted"]),
                events(),
            ],
        ),
        cluster_role(
            "system:controller:generic-garbage-collector",
            vec![
                rule(
                    &["get", "list", "watch", "patch", "update", "delete"],
                    &["*"],
                    &["*"],
                ),
                events(),
            ],
        ),
        cluster_role(
            "system:controller:namespace-controller",
            vec![
                rule(&["get", "list", "watch", "delete"], &[""], &["namespaces"]),
                rule(&["update"], &[""], &["namespaces/finalize", "namespaces/status"]),
                rule(
                    &["get", "list", "watch", "delete", "deletecollection"],
                    &["*"],
                    &["*"],
                ),
            ],
        ),
        cluster_role(
            "system:controller:node-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update", "delete", "patch"],
                    &[""],
                    &["nodes"],
                ),
                rule(&["patch", "update"], &[""], &["nodes/status"]),
                rule(&["patch", "update"], &[""], &["pods/status"]),
                rule(&["list", "watch", "get", "delete"], &[""], &["pods"]),
                events(),
            ],
        ),
        cluster_role(
            "system:controller:replicaset-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update"],
                    &["apps", "extensions"],
                    &["replicasets"],
                ),
                scale_and_status(&["apps", "extensions"], "replicasets"),
                rule(&["list", "watch", "patch", "create", "delete"], &[""], &["pods"]),
                events(),
            ],
        ),
        cluster_role(
            "system:controller:service-account-controller",
            vec![rule(&["create"], &[""], &["serviceaccounts"]), events()],
        ),
        cluster_role(
            "system:controller:root-ca-cert-publisher",
            vec![rule(&["create", "update"], &[""], &["configmaps"]), events()],
        ),
        cluster_role(
            "system:controller:certificate-controller",
            vec![
                rule(
                    &["get", "list", "watch", "delete"],
                    &["certificates.k8s.io"],
                    &["certificatesigningrequests"],
                ),
                rule(
                    &["update"],
                    &["certificates.k8s.io"],
                    &[
                        "certificatesigningrequests/status",
                        "certificatesigningrequests/approval",
                    ],
                ),
                named(
                    &["approve"],
                    &["certificates.k8s.io"],
                    &["signers"],
                    &["kubernetes.io/kube-apiserver-client-kubelet"],
                ),
                named(
                    &["sign"],
                    &["certificates.k8s.io"],
                    &["signers"],
                    &[
                        "kubernetes.io/legacy-unknown",
                        "kubernetes.io/kube-apiserver-client",
                        "kubernetes.io/kube-apiserver-client-kubelet",
                        "kubernetes.io/kubelet-serving",
                    ],
                ),
                rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
                events(),
            ],
        ),
        cluster_role(
            "system:controller:pod-garbage-collector",
            vec![
                rule(&["list", "watch", "delete"], &[""], &["pods"]),
                rule(READ, &[""], &["nodes"]),
                rule(&["patch"], &[""], &["pods/status"]),
            ],
        ),
        cluster_role(
            "system:controller:ttl-controller",
            vec![
                rule(&["update", "patch", "list", "watch"], &[""], &["nodes"]),
                events(),
            ],
        ),
    ]
}

fn controller_bindings(roles: &[Value]) -> Vec<Value> {
    roles
        .iter()
        .filter_map(|r| r.pointer("/metadata/name").and_then(Value::as_str))
        .filter_map(|name| {
            let sa = name.strip_prefix(CONTROLLER_PREFIX)?;
            Some(cluster_binding(
                name,
                name,
                vec![service_account("kube-system", sa)],
            ))
        })
        .collect()
}

fn namespaced() -> Vec<Value> {
    let bootstrap_signer = format!("{CONTROLLER_PREFIX}bootstrap-signer");
    let token_cleaner = format!("{CONTROLLER_PREFIX}token-cleaner");
    vec![
        role(
            "kube-system",
            "extension-apiserver-authentication-reader",
            vec![named(
                READ,
                &[""],
                &["configmaps"],
                &["extension-apiserver-authentication"],
            )],
        ),
        role(
            "kube-system",
            &bootstrap_signer,
            vec![rule(READ, &[""], &["secrets"])],
        ),
        role(
            "kube-system",
            &token_cleaner,
            vec![
                rule(&["get", "list", "watch", "delete"], &[""], &["secrets"]),
                events(),
            ],
        ),
        role(
            "kube-system",
            "system::leader-locking-kube-controller-manager",
            vec![
                rule(&["watch"], &[""], &["configmaps"]),
                named(
                    &["get", "update"],
                    &[""],
                    &["configmaps"],
                    &["kube-controller-manager"],
                ),
                rule(
                    &["get", "watch", "list", "create", "update"],
                    &["coordination.k8s.io"],
                    &["leases"],
                ),
            ],
        ),
        role(
            "kube-system",
            "system::leader-locking-kube-scheduler",
            vec![
                rule(&["watch"], &[""], &["configmaps"]),
                named(&["get", "update"], &[""], &["configmaps"], &["kube-scheduler"]),
            ],
        ),
        role(
            "kube-public",
            &bootstrap_signer,
            vec![
                rule(READ, &[""], &["configmaps"]),
                named(&["update"], &[""], &["configmaps"], &["cluster-info"]),
                events(),
            ],
        ),
        role_binding(
            "kube-system",
            "system::extension-apiserver-authentication-reader",
            "Role",
            "extension-apiserver-authentication-reader",
            vec![
                user("system:kube-controller-manager"),
                user("system:kube-scheduler"),
            ],
        ),
        role_binding(
            "kube-system",
            "system::leader-locking-kube-controller-manager",
            "Role",
            "system::leader-locking-kube-controller-manager",
            vec![
                user("system:kube-controller-manager"),
                service_account("kube-system", "kube-controller-manager"),
                service_account("kube-system", "leader-election-controller"),
            ],
        ),
        role_binding(
            "kube-system",
            "system::leader-locking-kube-scheduler",
            "Role",
            "system::leader-locking-kube-scheduler",
            vec![
                user("system:kube-scheduler"),
                service_account("kube-system", "kube-scheduler"),
            ],
        ),
        role_binding(
            "kube-system",
            &bootstrap_signer,
            "Role",
            &bootstrap_signer,
            vec![service_account("kube-system", "bootstrap-signer")],
        ),
        role_binding(
            "kube-system",
            &token_cleaner,
            "Role",
            &token_cleaner,
            vec![service_account("kube-system", "token-cleaner")],
        ),
        role_binding(
            "kube-public",
            &bootstrap_signer,
            "Role",
            &bootstrap_signer,
            vec![service_account("kube-system", "bootstrap-signer")],
        ),
    ]
}

/// Every object of the bootstrap policy (see the module docs).
pub fn bootstrap_policy() -> Vec<Value> {
    let mut out = cluster_roles();
    out.extend(cluster_role_bindings());
    let controllers = controller_roles();
    out.extend(controller_bindings(&controllers));
    out.extend(controllers);
    out.extend(namespaced());
    // kubeadm's admin.conf identity (group kubeadm:cluster-admins), created by `kubeadm init`, without upstream's
    // bootstrapping label.
    out.push(plain(cluster_binding(
        "kubeadm:cluster-admins",
        "cluster-admin",
        vec![group("kubeadm:cluster-admins")],
    )));
    out
}

/// The group kubeadm's default bootstrap tokens carry.
pub const KUBEADM_DEFAULT_NODE_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// What `kubeadm init phase bootstrap-token` creates: token holders may create CSRs (`kubeadm:kubelet-bootstrap`),
/// have them auto-approved, get Nodes (`kubeadm:get-nodes`); nodes may renew their client certificates; anonymous
/// users may read `kube-public/cluster-info` (`kubeadm:bootstrap-signer-clusterinfo`).
pub fn kubeadm_bootstrap_token_policy() -> Vec<Value> {
    let token_group = || vec![group(KUBEADM_DEFAULT_NODE_TOKEN_GROUP)];
    [
        cluster_binding(
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            token_group(),
        ),
        cluster_binding(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            token_group(),
        ),
        cluster_binding(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![group("system:nodes")],
        ),
        cluster_role("kubeadm:get-nodes", vec![rule(&["get"], &[""], &["nodes"])]),
        cluster_binding("kubeadm:get-nodes", "kubeadm:get-nodes", token_group()),
        role(
            "kube-public",
            "kubeadm:bootstrap-signer-clusterinfo",
            vec![named(&["get"], &[""], &["configmaps"], &["cluster-info"])],
        ),
        role_binding(
            "kube-public",
            "kubeadm:bootstrap-signer-clusterinfo",
            "Role",
            "kubeadm:bootstrap-signer-clusterinfo",
            vec![user("system:anonymous")],
        ),
    ]
    .into_iter()
    .map(plain)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::authorizers::{build, parse_modes};
    use crate::auth::testutil::{MemoryReader, attrs, user as as_user};
    use crate::auth::{Attributes, Authorizer, Decision, UserInfo};
    use std::sync::Arc;

    fn reader() -> Arc<MemoryReader> {
        let r = MemoryReader::new().with_bootstrap_policy();
        for obj in kubeadm_bootstrap_token_policy() {
            let resource = format!("{}s", obj["kind"].as_str().unwrap().to_lowercase());
            r.put(GROUP, &resource, obj);
        }
        Arc::new(r)
    }

    async fn allowed(a: &Attributes) -> bool {
        build(&parse_modes("Node,RBAC").unwrap(), reader())
            .authorize(a)
            .await
            == Decision::Allow
    }

    fn token_user() -> UserInfo {
        as_user(
            "system:bootstrap:abcdef",
            &[
                "system:bootstrappers",
                KUBEADM_DEFAULT_NODE_TOKEN_GROUP,
                "system:authenticated",
            ],
        )
    }

    #[test]
    fn every_object_has_a_unique_name_and_upstreams_bootstrapping_metadata() {
        let policy = bootstrap_policy();
        let mut seen = std::collections::BTreeSet::new();
        for obj in &policy {
            let key = (
                obj["kind"].as_str().unwrap().to_string(),
                obj["metadata"]["namespace"].as_str().unwrap_or("").to_string(),
                obj["metadata"]["name"].as_str().unwrap().to_string(),
            );
            assert!(seen.insert(key.clone()), "duplicate {key:?}");
            if !key.2.starts_with("kubeadm:") {
                assert_eq!(
                    obj["metadata"]["labels"]["kubernetes.io/bootstrapping"], "rbac-defaults",
                    "{key:?}"
                );
                assert_eq!(
                    obj["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"],
                    "true"
                );
            }
        }
        for name in [
            "system:controller:deployment-controller",
            "system:controller:generic-garbage-collector",
            "system:controller:root-ca-cert-publisher",
        ] {
            assert!(
                seen.contains(&("ClusterRoleBinding".into(), String::new(), name.into())),
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn a_bootstrap_token_can_create_csrs_but_not_read_secrets_or_pods() {
        let t = token_user();
        assert!(
            allowed(&attrs(
                &t,
                "create",
                "certificates.k8s.io",
                "certificatesigningrequests",
                "",
                ""
            ))
            .await
        );
        assert!(
            allowed(&attrs(
                &t,
                "get",
                "certificates.k8s.io",
                "certificatesigningrequests",
                "",
                "csr-1"
            ))
            .await
        );
        assert!(
            !allowed(&attrs(
                &t,
                "get",
                "",
                "secrets",
                "kube-system",
                "bootstrap-token-abcdef"
            ))
            .await
        );
        assert!(!allowed(&attrs(&t, "list", "", "pods", "default", "")).await);
        assert!(
            !allowed(&attrs(
                &t,
                "get",
                "",
                "configmaps",
                "kube-system",
                "kubeadm-config"
            ))
            .await
        );
        assert!(
            !allowed(&attrs(
                &t,
                "update",
                "certificates.k8s.io",
                "certificatesigningrequests/approval",
                "",
                "c"
            ))
            .await
        );
    }

    #[tokio::test]
    async fn a_bootstrap_token_authenticated_end_to_end_may_create_a_csr_and_not_list_secrets() {
        use crate::auth::bootstrap::BootstrapTokenAuthenticator;
        use crate::auth::union::AuthenticatorChain;
        use crate::auth::{Authenticator, Credentials};
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let r = reader();
        r.put("", "secrets", json!({"metadata": {"namespace": "kube-system", "name": "bootstrap-token-abcdef"},
            "type": "bootstrap.kubernetes.io/token",
            "data": {"token-id": b64("abcdef"), "token-secret": b64("0123456789abcdef"),
                     "usage-bootstrap-authentication": b64("true"), "auth-extra-groups": b64(KUBEADM_DEFAULT_NODE_TOKEN_GROUP)}}));
        let authn = AuthenticatorChain::new(
            vec![Arc::new(BootstrapTokenAuthenticator::new(
                r.clone(),
                crate::auth::system_clock(),
            ))],
            true,
        );
        let creds = Credentials {
            bearer_token: Some("abcdef.0123456789abcdef"),
            ..Default::default()
        };
        let token_user = authn.authenticate(&creds).await.unwrap().unwrap();
        assert!(token_user.groups.contains(&"system:authenticated".to_string()));
        let authz = build(&parse_modes("Node,RBAC").unwrap(), r);
        let csr = attrs(
            &token_user,
            "create",
            "certificates.k8s.io",
            "certificatesigningrequests",
            "",
            "",
        );
        assert_eq!(authz.authorize(&csr).await, Decision::Allow);
        let secrets = attrs(&token_user, "list", "", "secrets", "kube-system", "");
        let Decision::Deny(reason) = authz.authorize(&secrets).await else {
            panic!("allowed")
        };
        assert_eq!(
            crate::auth::forbidden(&secrets, &reason).message(),
            r#"secrets is forbidden: User "system:bootstrap:abcdef" cannot list resource "secrets" in API group "" in the namespace "kube-system""#
        );
    }

    #[tokio::test]
    async fn cluster_info_is_readable_without_credentials_and_nothing_else_in_kube_public() {
        let anon = as_user("system:anonymous", &["system:unauthenticated"]);
        assert!(
            allowed(&attrs(
                &anon,
                "get",
                "",
                "configmaps",
                "kube-public",
                "cluster-info"
            ))
            .await
        );
        assert!(!allowed(&attrs(&anon, "get", "", "configmaps", "kube-public", "other")).await);
        assert!(!allowed(&attrs(&anon, "list", "", "configmaps", "kube-public", "")).await);
    }

    #[tokio::test]
    async fn everyone_reads_version_and_health_but_only_the_authenticated_discover_apis() {
        let anon = as_user("system:anonymous", &["system:unauthenticated"]);
        let path = |u: &UserInfo, p: &str| Attributes {
            user: u.clone(),
            verb: "get".into(),
            path: p.into(),
            ..Default::default()
        };
        assert!(allowed(&path(&anon, "/version")).await);
        assert!(allowed(&path(&anon, "/healthz")).await);
        assert!(!allowed(&path(&anon, "/apis")).await);
        assert!(allowed(&path(&token_user(), "/apis/apps/v1")).await);
    }

    #[tokio::test]
    async fn kubeadms_admin_group_is_cluster_admin() {
        let admin = as_user(
            "kubernetes-admin",
            &["kubeadm:cluster-admins", "system:authenticated"],
        );
        assert!(allowed(&attrs(&admin, "delete", "", "nodes", "", "node-1")).await);
        assert!(
            allowed(&Attributes {
                user: admin,
                verb: "get".into(),
                path: "/metrics".into(),
                ..Default::default()
            })
            .await
        );
    }

    #[tokio::test]
    async fn controller_service_accounts_get_their_controller_roles() {
        let rs = crate::auth::serviceaccount::user_info("kube-system", "replicaset-controller", "u");
        assert!(allowed(&attrs(&rs, "create", "", "pods", "default", "")).await);
        assert!(
            allowed(&attrs(
                &rs,
                "update",
                "apps",
                "replicasets/status",
                "default",
                "r"
            ))
            .await
        );
        assert!(!allowed(&attrs(&rs, "delete", "apps", "deployments", "default", "d")).await);
        let kcm = as_user("system:kube-controller-manager", &["system:authenticated"]);
        assert!(
            allowed(&attrs(
                &kcm,
                "update",
                "coordination.k8s.io",
                "leases",
                "kube-system",
                "kube-controller-manager"
            ))
            .await
        );
        assert!(allowed(&attrs(&kcm, "watch", "apps", "deployments", "", "")).await);
    }

    #[tokio::test]
    async fn view_reads_but_cannot_write_or_read_secrets_and_edit_can() {
        let r = reader();
        r.put(GROUP, "rolebindings", json!({"metadata": {"namespace": "dev", "name": "v"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "v"}]}));
        r.put(GROUP, "rolebindings", json!({"metadata": {"namespace": "dev", "name": "e"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "edit"}, "subjects": [{"kind": "User", "name": "e"}]}));
        let chain = build(&parse_modes("RBAC").unwrap(), r);
        let (v, e) = (as_user("v", &[]), as_user("e", &[]));
        assert_eq!(
            chain
                .authorize(&attrs(&v, "list", "apps", "deployments", "dev", ""))
                .await,
            Decision::Allow
        );
        assert_ne!(
            chain
                .authorize(&attrs(&v, "get", "", "secrets", "dev", "s"))
                .await,
            Decision::Allow
        );
        assert_ne!(
            chain.authorize(&attrs(&v, "create", "", "pods", "dev", "")).await,
            Decision::Allow
        );
        assert_eq!(
            chain
                .authorize(&attrs(&e, "get", "", "secrets", "dev", "s"))
                .await,
            Decision::Allow
        );
        assert_eq!(
            chain
                .authorize(&attrs(&e, "patch", "apps", "deployments/scale", "dev", "d"))
                .await,
            Decision::Allow
        );
        assert_ne!(
            chain
                .authorize(&attrs(
                    &e,
                    "create",
                    "rbac.authorization.k8s.io",
                    "rolebindings",
                    "dev",
                    ""
                ))
                .await,
            Decision::Allow
        );
    }
}
