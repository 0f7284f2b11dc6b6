//! List and map semantics of built-in types, for strategic merge patch, server-side apply and
//! OpenAPI (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`,
//! `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`).
//!
//! The table is keyed by OpenAPI definition name and field. It lists every field that carries
//! a list semantic, plus the object-typed fields needed to reach them from a kind's root type.
//! The facts were taken from the `patchStrategy`/`patchMergeKey` tags and `+listType`/
//! `+listMapKey` markers of upstream's API types (k8s.io/api, Kubernetes 1.3x).

/// `x-kubernetes-list-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// The list is replaced as a whole.
    Atomic,
    /// Scalars, unique, merged as a set.
    Set,
    /// Objects identified by `map_keys`.
    Map,
}

impl ListType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Atomic => "atomic",
            Self::Set => "set",
            Self::Map => "map",
        }
    }
}

/// What upstream declares about one field of one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSchema {
    /// OpenAPI definition name of the type that has the field.
    pub owner: &'static str,
    /// JSON field name.
    pub field: &'static str,
    /// Definition name of the field's type (or its element type for lists) when that type has
    /// entries of its own in the table.
    pub elem_type: Option<&'static str>,
    /// `x-kubernetes-patch-strategy`: `""`, `"merge"`, `"retainKeys"` or `"merge,retainKeys"`.
    pub patch_strategy: &'static str,
    /// `x-kubernetes-patch-merge-key`.
    pub merge_key: Option<&'static str>,
    pub list_type: Option<ListType>,
    /// `x-kubernetes-list-map-keys`.
    pub map_keys: &'static [&'static str],
}

impl FieldSchema {
    pub fn merges(&self) -> bool {
        self.patch_strategy.split(',').any(|s| s == "merge")
    }

    pub fn retains_keys(&self) -> bool {
        self.patch_strategy.split(',').any(|s| s == "retainKeys")
    }
}

const fn f(
    owner: &'static str,
    field: &'static str,
    elem_type: Option<&'static str>,
    patch_strategy: &'static str,
    merge_key: Option<&'static str>,
    list_type: Option<ListType>,
    map_keys: &'static [&'static str],
) -> FieldSchema {
    FieldSchema {
        owner,
        field,
        elem_type,
        patch_strategy,
        merge_key,
        list_type,
        map_keys,
    }
}

/// Every entry, grouped by owning type. One row per field keeps the table reviewable.
#[rustfmt::skip]
pub static FIELDS: &[FieldSchema] = &[
    f("io.k8s.api.core.v1.Pod", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Pod", "spec", Some("io.k8s.api.core.v1.PodSpec"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Pod", "status", Some("io.k8s.api.core.v1.PodStatus"), "", None, None, &[]),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", None, "merge", Some("uid"), Some(ListType::Map), &["uid"]),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", None, "merge", None, Some(ListType::Set), &[]),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "managedFields", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PodSpec", "volumes", Some("io.k8s.api.core.v1.Volume"), "merge,retainKeys", Some("name"), Some(ListType::Map), &["name"]),
    f("io.k8s.api.core.v1.PodSpec", "initContainers", Some("io.k8s.api.core.v1.Container"), "merge", Some("name"), Some(ListType::Map), &["name"]),
    f("io.k8s.api.core.v1.PodSpec", "containers", Some("io.k8s.api.core.v1.Container"), "merge", Some("name"), Some(ListType::Map), &["name"]),
    f("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", Some("io.k8s.api.core.v1.EphemeralContainer"), "merge", Some("name"), Some(ListType::Map), &["name"]),
    f("io.k8s.api.core.v1.PodSpec", "securityContext", Some("io.k8s.api.core.v1.PodSecurityContext"), "", None, None, &[]),
    f("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", None, "merge", Some("name"), Some(ListType::Map), &["name"]),
    f("io.k8s.api.core.v1.PodSpec", "affinity", Some("io.k8s.api.core.v1.Affinity"), "", None, None, &[]),
    f("io.k8s.api.core.v1.PodSpec", "tolerations", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PodSpec", "hostAliases", Some("io.k8s.api.core.v1.HostAlias"), "merge", Some("ip"), Some(ListType::Map), &["ip"]),
    f("io.k8s.api.core.v1.PodSpec", "dnsConfig", Some("io.k8s.api.core.v1.PodDNSConfig"), "", None, None, &[]),
    f("io.k8s.api.core.v1.PodSpec", "readinessGates", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", Some("io.k8s.api.core.v1.TopologySpreadConstraint"), "merge", Some("topologyKey"), Some(ListType::Map), &["topologyKey", "whenUnsatisfiable"]),
    f("io.k8s.api.core.v1.PodSpec", "schedulingGates", None, "merge", Some("name"), Some(ListType::Map), &["name"]),
    f("io.k8s.api.core.v1.PodSpec", "resourceClaims", None, "merge,retainKeys", Some("name"), Some(ListType::Map), &["name"]),
    f("io.k8s.api.core.v1.PodSpec", "resources", Some("io.k8s.api.core.v1.ResourceRequirements"), "", None, None, &[]),
    f("io.k8s.api.core.v1.PodSpec", "evictionResponders", None, "merge", Some("name"), Some(ListType::Map), &["name"]),
    f("io.k8s.api.core.v1.Volume", "secret", Some("io.k8s.api.core.v1.SecretVolumeSource"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Volume", "iscsi", Some("io.k8s.api.core.v1.ISCSIVolumeSource"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Volume", "rbd", Some("io.k8s.api.core.v1.RBDVolumeSource"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Volume", "cephfs", Some("io.k8s.api.core.v1.CephFSVolumeSource"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Volume", "downwardAPI", Some("io.k8s.api.core.v1.DownwardAPIVolumeSource"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Volume", "fc", Some("io.k8s.api.core.v1.FCVolumeSource"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Volume", "configMap", Some("io.k8s.api.core.v1.ConfigMapVolumeSource"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Volume", "projected", Some("io.k8s.api.core.v1.ProjectedVolumeSource"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Volume", "ephemeral", Some("io.k8s.api.core.v1.EphemeralVolumeSource"), "", None, None, &[]),
    f("io.k8s.api.core.v1.SecretVolumeSource", "items", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.ISCSIVolumeSource", "portals", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.RBDVolumeSource", "monitors", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.CephFSVolumeSource", "monitors", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.DownwardAPIVolumeSource", "items", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.FCVolumeSource", "targetWWNs", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.FCVolumeSource", "wwids", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.ConfigMapVolumeSource", "items", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.ProjectedVolumeSource", "sources", Some("io.k8s.api.core.v1.VolumeProjection"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.VolumeProjection", "secret", Some("io.k8s.api.core.v1.SecretProjection"), "", None, None, &[]),
    f("io.k8s.api.core.v1.VolumeProjection", "downwardAPI", Some("io.k8s.api.core.v1.DownwardAPIProjection"), "", None, None, &[]),
    f("io.k8s.api.core.v1.VolumeProjection", "configMap", Some("io.k8s.api.core.v1.ConfigMapProjection"), "", None, None, &[]),
    f("io.k8s.api.core.v1.VolumeProjection", "clusterTrustBundle", Some("io.k8s.api.core.v1.ClusterTrustBundleProjection"), "", None, None, &[]),
    f("io.k8s.api.core.v1.SecretProjection", "items", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.DownwardAPIProjection", "items", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.ConfigMapProjection", "items", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.ClusterTrustBundleProjection", "labelSelector", Some("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"), "", None, None, &[]),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", "matchExpressions", Some("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement", "values", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.EphemeralVolumeSource", "volumeClaimTemplate", Some("io.k8s.api.core.v1.PersistentVolumeClaimTemplate"), "", None, None, &[]),
    f("io.k8s.api.core.v1.PersistentVolumeClaimTemplate", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.core.v1.PersistentVolumeClaimTemplate", "spec", Some("io.k8s.api.core.v1.PersistentVolumeClaimSpec"), "", None, None, &[]),
    f("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "accessModes", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "selector", Some("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Container", "command", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.Container", "args", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.Container", "ports", None, "merge", Some("containerPort"), Some(ListType::Map), &["containerPort", "protocol"]),
    f("io.k8s.api.core.v1.Container", "envFrom", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.Container", "env", None, "merge", Some("name"), Some(ListType::Map), &["name"]),
    f("io.k8s.api.core.v1.Container", "resources", Some("io.k8s.api.core.v1.ResourceRequirements"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Container", "resizePolicy", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.Container", "restartPolicyRules", Some("io.k8s.api.core.v1.ContainerRestartRule"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.Container", "volumeMounts", Some("io.k8s.api.core.v1.VolumeMount"), "merge", Some("mountPath"), Some(ListType::Map), &["mountPath"]),
    f("io.k8s.api.core.v1.Container", "volumeDevices", None, "merge", Some("devicePath"), Some(ListType::Map), &["devicePath"]),
    f("io.k8s.api.core.v1.Container", "livenessProbe", Some("io.k8s.api.core.v1.Probe"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Container", "readinessProbe", Some("io.k8s.api.core.v1.Probe"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Container", "startupProbe", Some("io.k8s.api.core.v1.Probe"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Container", "lifecycle", Some("io.k8s.api.core.v1.Lifecycle"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Container", "securityContext", Some("io.k8s.api.core.v1.SecurityContext"), "", None, None, &[]),
    f("io.k8s.api.core.v1.ResourceRequirements", "claims", None, "", None, Some(ListType::Map), &["name"]),
    f("io.k8s.api.core.v1.ContainerRestartRule", "exitCodes", Some("io.k8s.api.core.v1.ContainerRestartRuleOnExitCodes"), "", None, None, &[]),
    f("io.k8s.api.core.v1.ContainerRestartRuleOnExitCodes", "values", None, "", None, Some(ListType::Set), &[]),
    f("io.k8s.api.core.v1.VolumeMount", "bindMountOptions", None, "", None, Some(ListType::Set), &[]),
    f("io.k8s.api.core.v1.Probe", "exec", Some("io.k8s.api.core.v1.ExecAction"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Probe", "httpGet", Some("io.k8s.api.core.v1.HTTPGetAction"), "", None, None, &[]),
    f("io.k8s.api.core.v1.ExecAction", "command", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.HTTPGetAction", "httpHeaders", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.Lifecycle", "postStart", Some("io.k8s.api.core.v1.LifecycleHandler"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Lifecycle", "preStop", Some("io.k8s.api.core.v1.LifecycleHandler"), "", None, None, &[]),
    f("io.k8s.api.core.v1.LifecycleHandler", "exec", Some("io.k8s.api.core.v1.ExecAction"), "", None, None, &[]),
    f("io.k8s.api.core.v1.LifecycleHandler", "httpGet", Some("io.k8s.api.core.v1.HTTPGetAction"), "", None, None, &[]),
    f("io.k8s.api.core.v1.SecurityContext", "capabilities", Some("io.k8s.api.core.v1.Capabilities"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Capabilities", "add", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.Capabilities", "drop", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.EphemeralContainer", "command", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.EphemeralContainer", "args", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.EphemeralContainer", "ports", None, "merge", Some("containerPort"), Some(ListType::Map), &["containerPort", "protocol"]),
    f("io.k8s.api.core.v1.EphemeralContainer", "envFrom", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.EphemeralContainer", "env", None, "merge", Some("name"), Some(ListType::Map), &["name"]),
    f("io.k8s.api.core.v1.EphemeralContainer", "resources", Some("io.k8s.api.core.v1.ResourceRequirements"), "", None, None, &[]),
    f("io.k8s.api.core.v1.EphemeralContainer", "resizePolicy", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.EphemeralContainer", "restartPolicyRules", Some("io.k8s.api.core.v1.ContainerRestartRule"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", Some("io.k8s.api.core.v1.VolumeMount"), "merge", Some("mountPath"), Some(ListType::Map), &["mountPath"]),
    f("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", None, "merge", Some("devicePath"), Some(ListType::Map), &["devicePath"]),
    f("io.k8s.api.core.v1.EphemeralContainer", "livenessProbe", Some("io.k8s.api.core.v1.Probe"), "", None, None, &[]),
    f("io.k8s.api.core.v1.EphemeralContainer", "readinessProbe", Some("io.k8s.api.core.v1.Probe"), "", None, None, &[]),
    f("io.k8s.api.core.v1.EphemeralContainer", "startupProbe", Some("io.k8s.api.core.v1.Probe"), "", None, None, &[]),
    f("io.k8s.api.core.v1.EphemeralContainer", "lifecycle", Some("io.k8s.api.core.v1.Lifecycle"), "", None, None, &[]),
    f("io.k8s.api.core.v1.EphemeralContainer", "securityContext", Some("io.k8s.api.core.v1.SecurityContext"), "", None, None, &[]),
    f("io.k8s.api.core.v1.PodSecurityContext", "supplementalGroups", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PodSecurityContext", "sysctls", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.Affinity", "nodeAffinity", Some("io.k8s.api.core.v1.NodeAffinity"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Affinity", "podAffinity", Some("io.k8s.api.core.v1.PodAffinity"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Affinity", "podAntiAffinity", Some("io.k8s.api.core.v1.PodAntiAffinity"), "", None, None, &[]),
    f("io.k8s.api.core.v1.NodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", Some("io.k8s.api.core.v1.NodeSelector"), "", None, None, &[]),
    f("io.k8s.api.core.v1.NodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution", Some("io.k8s.api.core.v1.PreferredSchedulingTerm"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.NodeSelector", "nodeSelectorTerms", Some("io.k8s.api.core.v1.NodeSelectorTerm"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.NodeSelectorTerm", "matchExpressions", Some("io.k8s.api.core.v1.NodeSelectorRequirement"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.NodeSelectorTerm", "matchFields", Some("io.k8s.api.core.v1.NodeSelectorRequirement"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.NodeSelectorRequirement", "values", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PreferredSchedulingTerm", "preference", Some("io.k8s.api.core.v1.NodeSelectorTerm"), "", None, None, &[]),
    f("io.k8s.api.core.v1.PodAffinity", "requiredDuringSchedulingIgnoredDuringExecution", Some("io.k8s.api.core.v1.PodAffinityTerm"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PodAffinity", "preferredDuringSchedulingIgnoredDuringExecution", Some("io.k8s.api.core.v1.WeightedPodAffinityTerm"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PodAffinityTerm", "labelSelector", Some("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"), "", None, None, &[]),
    f("io.k8s.api.core.v1.PodAffinityTerm", "namespaces", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PodAffinityTerm", "namespaceSelector", Some("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"), "", None, None, &[]),
    f("io.k8s.api.core.v1.PodAffinityTerm", "matchLabelKeys", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PodAffinityTerm", "mismatchLabelKeys", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.WeightedPodAffinityTerm", "podAffinityTerm", Some("io.k8s.api.core.v1.PodAffinityTerm"), "", None, None, &[]),
    f("io.k8s.api.core.v1.PodAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", Some("io.k8s.api.core.v1.PodAffinityTerm"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PodAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", Some("io.k8s.api.core.v1.WeightedPodAffinityTerm"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.HostAlias", "hostnames", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PodDNSConfig", "nameservers", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PodDNSConfig", "searches", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PodDNSConfig", "options", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.TopologySpreadConstraint", "labelSelector", Some("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"), "", None, None, &[]),
    f("io.k8s.api.core.v1.TopologySpreadConstraint", "matchLabelKeys", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PodStatus", "conditions", None, "merge", Some("type"), Some(ListType::Map), &["type"]),
    f("io.k8s.api.core.v1.PodStatus", "hostIPs", None, "merge", Some("ip"), Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PodStatus", "podIPs", None, "merge", Some("ip"), Some(ListType::Map), &["ip"]),
    f("io.k8s.api.core.v1.PodStatus", "initContainerStatuses", Some("io.k8s.api.core.v1.ContainerStatus"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PodStatus", "containerStatuses", Some("io.k8s.api.core.v1.ContainerStatus"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PodStatus", "ephemeralContainerStatuses", Some("io.k8s.api.core.v1.ContainerStatus"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", None, "merge,retainKeys", Some("name"), Some(ListType::Map), &["name"]),
    f("io.k8s.api.core.v1.PodStatus", "extendedResourceClaimStatus", Some("io.k8s.api.core.v1.PodExtendedResourceClaimStatus"), "", None, None, &[]),
    f("io.k8s.api.core.v1.PodStatus", "resources", Some("io.k8s.api.core.v1.ResourceRequirements"), "", None, None, &[]),
    f("io.k8s.api.core.v1.PodStatus", "nodeAllocatableResourceClaimStatuses", Some("io.k8s.api.core.v1.NodeAllocatableResourceClaimStatus"), "merge", Some("resourceClaimName"), Some(ListType::Map), &["resourceClaimName"]),
    f("io.k8s.api.core.v1.PodStatus", "volumeHealth", Some("io.k8s.api.core.v1.PodVolumeHealth"), "", None, Some(ListType::Map), &["name"]),
    f("io.k8s.api.core.v1.ContainerStatus", "resources", Some("io.k8s.api.core.v1.ResourceRequirements"), "", None, None, &[]),
    f("io.k8s.api.core.v1.ContainerStatus", "volumeMounts", None, "merge", Some("mountPath"), Some(ListType::Map), &["mountPath"]),
    f("io.k8s.api.core.v1.ContainerStatus", "user", Some("io.k8s.api.core.v1.ContainerUser"), "", None, None, &[]),
    f("io.k8s.api.core.v1.ContainerStatus", "allocatedResourcesStatus", Some("io.k8s.api.core.v1.ResourceStatus"), "merge", Some("name"), Some(ListType::Map), &["name"]),
    f("io.k8s.api.core.v1.ContainerUser", "linux", Some("io.k8s.api.core.v1.LinuxContainerUser"), "", None, None, &[]),
    f("io.k8s.api.core.v1.LinuxContainerUser", "supplementalGroups", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.ResourceStatus", "resources", None, "", None, Some(ListType::Map), &["resourceID"]),
    f("io.k8s.api.core.v1.PodExtendedResourceClaimStatus", "requestMappings", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.NodeAllocatableResourceClaimStatus", "containers", None, "", None, Some(ListType::Set), &[]),
    f("io.k8s.api.core.v1.NodeAllocatableResourceClaimStatus", "mapping", None, "merge", Some("name"), Some(ListType::Map), &["name"]),
    f("io.k8s.api.core.v1.NodeAllocatableResourceClaimStatus", "overhead", None, "merge", Some("name"), Some(ListType::Map), &["name"]),
    f("io.k8s.api.core.v1.PodVolumeHealth", "healthConditions", None, "merge", Some("status"), Some(ListType::Map), &["status", "reason"]),
    f("io.k8s.api.core.v1.Node", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Node", "spec", Some("io.k8s.api.core.v1.NodeSpec"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Node", "status", Some("io.k8s.api.core.v1.NodeStatus"), "", None, None, &[]),
    f("io.k8s.api.core.v1.NodeSpec", "podCIDRs", None, "merge", None, Some(ListType::Set), &[]),
    f("io.k8s.api.core.v1.NodeSpec", "taints", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.NodeSpec", "podPreemptionPolicy", Some("io.k8s.api.core.v1.NodePodPreemptionPolicy"), "", None, None, &[]),
    f("io.k8s.api.core.v1.NodePodPreemptionPolicy", "disableResizePreemption", None, "", None, Some(ListType::Set), &[]),
    f("io.k8s.api.core.v1.NodeStatus", "conditions", None, "merge", Some("type"), Some(ListType::Map), &["type"]),
    f("io.k8s.api.core.v1.NodeStatus", "addresses", None, "merge", Some("type"), Some(ListType::Map), &["type"]),
    f("io.k8s.api.core.v1.NodeStatus", "images", Some("io.k8s.api.core.v1.ContainerImage"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.NodeStatus", "volumesInUse", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.NodeStatus", "volumesAttached", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.NodeStatus", "runtimeHandlers", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.NodeStatus", "declaredFeatures", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.ContainerImage", "names", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.Service", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Service", "spec", Some("io.k8s.api.core.v1.ServiceSpec"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Service", "status", Some("io.k8s.api.core.v1.ServiceStatus"), "", None, None, &[]),
    f("io.k8s.api.core.v1.ServiceSpec", "ports", None, "merge", Some("port"), Some(ListType::Map), &["port", "protocol"]),
    f("io.k8s.api.core.v1.ServiceSpec", "clusterIPs", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.ServiceSpec", "externalIPs", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.ServiceSpec", "loadBalancerSourceRanges", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.ServiceSpec", "ipFamilies", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.ServiceStatus", "loadBalancer", Some("io.k8s.api.core.v1.LoadBalancerStatus"), "", None, None, &[]),
    f("io.k8s.api.core.v1.ServiceStatus", "conditions", None, "merge", Some("type"), Some(ListType::Map), &["type"]),
    f("io.k8s.api.core.v1.LoadBalancerStatus", "ingress", Some("io.k8s.api.core.v1.LoadBalancerIngress"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.LoadBalancerIngress", "ports", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.Endpoints", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Endpoints", "subsets", Some("io.k8s.api.core.v1.EndpointSubset"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.EndpointSubset", "addresses", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.EndpointSubset", "notReadyAddresses", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.EndpointSubset", "ports", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.ConfigMap", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Secret", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.core.v1.ServiceAccount", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.core.v1.ServiceAccount", "secrets", None, "merge", Some("name"), Some(ListType::Map), &["name"]),
    f("io.k8s.api.core.v1.ServiceAccount", "imagePullSecrets", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.Namespace", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Namespace", "spec", Some("io.k8s.api.core.v1.NamespaceSpec"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Namespace", "status", Some("io.k8s.api.core.v1.NamespaceStatus"), "", None, None, &[]),
    f("io.k8s.api.core.v1.NamespaceSpec", "finalizers", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.core.v1.NamespaceStatus", "conditions", None, "merge", Some("type"), Some(ListType::Map), &["type"]),
    f("io.k8s.api.core.v1.Event", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.core.v1.Binding", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.apps.v1.Deployment", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.apps.v1.Deployment", "spec", Some("io.k8s.api.apps.v1.DeploymentSpec"), "", None, None, &[]),
    f("io.k8s.api.apps.v1.Deployment", "status", Some("io.k8s.api.apps.v1.DeploymentStatus"), "", None, None, &[]),
    f("io.k8s.api.apps.v1.DeploymentSpec", "selector", Some("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"), "", None, None, &[]),
    f("io.k8s.api.apps.v1.DeploymentSpec", "template", Some("io.k8s.api.core.v1.PodTemplateSpec"), "", None, None, &[]),
    f("io.k8s.api.apps.v1.DeploymentSpec", "strategy", None, "retainKeys", None, None, &[]),
    f("io.k8s.api.core.v1.PodTemplateSpec", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.core.v1.PodTemplateSpec", "spec", Some("io.k8s.api.core.v1.PodSpec"), "", None, None, &[]),
    f("io.k8s.api.apps.v1.DeploymentStatus", "conditions", None, "merge", Some("type"), Some(ListType::Map), &["type"]),
    f("io.k8s.api.apps.v1.ReplicaSet", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.apps.v1.ReplicaSet", "spec", Some("io.k8s.api.apps.v1.ReplicaSetSpec"), "", None, None, &[]),
    f("io.k8s.api.apps.v1.ReplicaSet", "status", Some("io.k8s.api.apps.v1.ReplicaSetStatus"), "", None, None, &[]),
    f("io.k8s.api.apps.v1.ReplicaSetSpec", "selector", Some("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"), "", None, None, &[]),
    f("io.k8s.api.apps.v1.ReplicaSetSpec", "template", Some("io.k8s.api.core.v1.PodTemplateSpec"), "", None, None, &[]),
    f("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", None, "merge", Some("type"), Some(ListType::Map), &["type"]),
    f("io.k8s.api.apps.v1.DaemonSet", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.apps.v1.DaemonSet", "spec", Some("io.k8s.api.apps.v1.DaemonSetSpec"), "", None, None, &[]),
    f("io.k8s.api.apps.v1.DaemonSet", "status", Some("io.k8s.api.apps.v1.DaemonSetStatus"), "", None, None, &[]),
    f("io.k8s.api.apps.v1.DaemonSetSpec", "selector", Some("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"), "", None, None, &[]),
    f("io.k8s.api.apps.v1.DaemonSetSpec", "template", Some("io.k8s.api.core.v1.PodTemplateSpec"), "", None, None, &[]),
    f("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", None, "merge", Some("type"), Some(ListType::Map), &["type"]),
    f("io.k8s.api.coordination.v1.Lease", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.rbac.v1.Role", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.rbac.v1.Role", "rules", Some("io.k8s.api.rbac.v1.PolicyRule"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.rbac.v1.PolicyRule", "verbs", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.rbac.v1.PolicyRule", "apiGroups", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.rbac.v1.PolicyRule", "resources", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.rbac.v1.PolicyRule", "resourceNames", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.rbac.v1.PolicyRule", "nonResourceURLs", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.rbac.v1.RoleBinding", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.rbac.v1.RoleBinding", "subjects", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.rbac.v1.ClusterRole", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.rbac.v1.ClusterRole", "rules", Some("io.k8s.api.rbac.v1.PolicyRule"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.rbac.v1.ClusterRole", "aggregationRule", Some("io.k8s.api.rbac.v1.AggregationRule"), "", None, None, &[]),
    f("io.k8s.api.rbac.v1.AggregationRule", "clusterRoleSelectors", Some("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"), "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.rbac.v1.ClusterRoleBinding", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.rbac.v1.ClusterRoleBinding", "subjects", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.certificates.v1.CertificateSigningRequest", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
    f("io.k8s.api.certificates.v1.CertificateSigningRequest", "spec", Some("io.k8s.api.certificates.v1.CertificateSigningRequestSpec"), "", None, None, &[]),
    f("io.k8s.api.certificates.v1.CertificateSigningRequest", "status", Some("io.k8s.api.certificates.v1.CertificateSigningRequestStatus"), "", None, None, &[]),
    f("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "usages", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "groups", None, "", None, Some(ListType::Atomic), &[]),
    f("io.k8s.api.certificates.v1.CertificateSigningRequestStatus", "conditions", None, "", None, Some(ListType::Map), &["type"]),
    f("io.k8s.api.events.v1.Event", "metadata", Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "", None, None, &[]),
];

/// The OpenAPI definition name of a built-in kind's root type.
pub fn root_type(group: &str, kind: &str) -> Option<&'static str> {
    Some(match (group, kind) {
        ("", "Pod") => "io.k8s.api.core.v1.Pod",
        ("", "Node") => "io.k8s.api.core.v1.Node",
        ("", "Service") => "io.k8s.api.core.v1.Service",
        ("", "Endpoints") => "io.k8s.api.core.v1.Endpoints",
        ("", "ConfigMap") => "io.k8s.api.core.v1.ConfigMap",
        ("", "Secret") => "io.k8s.api.core.v1.Secret",
        ("", "ServiceAccount") => "io.k8s.api.core.v1.ServiceAccount",
        ("", "Namespace") => "io.k8s.api.core.v1.Namespace",
        ("", "Event") => "io.k8s.api.core.v1.Event",
        ("", "Binding") => "io.k8s.api.core.v1.Binding",
        ("apps", "Deployment") => "io.k8s.api.apps.v1.Deployment",
        ("apps", "ReplicaSet") => "io.k8s.api.apps.v1.ReplicaSet",
        ("apps", "DaemonSet") => "io.k8s.api.apps.v1.DaemonSet",
        ("coordination.k8s.io", "Lease") => "io.k8s.api.coordination.v1.Lease",
        ("rbac.authorization.k8s.io", "Role") => "io.k8s.api.rbac.v1.Role",
        ("rbac.authorization.k8s.io", "RoleBinding") => "io.k8s.api.rbac.v1.RoleBinding",
        ("rbac.authorization.k8s.io", "ClusterRole") => "io.k8s.api.rbac.v1.ClusterRole",
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => "io.k8s.api.rbac.v1.ClusterRoleBinding",
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            "io.k8s.api.certificates.v1.CertificateSigningRequest"
        }
        ("events.k8s.io", "Event") => "io.k8s.api.events.v1.Event",
        _ => return None,
    })
}

/// The entry for `field` of the type `owner`.
pub fn field_schema(owner: &str, field: &str) -> Option<&'static FieldSchema> {
    FIELDS.iter().find(|e| e.owner == owner && e.field == field)
}

/// All entries of one type (what OpenAPI generation decorates).
pub fn fields_of(owner: &str) -> impl Iterator<Item = &'static FieldSchema> + '_ {
    FIELDS.iter().filter(move |e| e.owner == owner)
}

/// Looks a field up by kind and dotted JSON path, e.g. `("apps", "Deployment",
/// "spec.template.spec.containers")` or `"spec.containers[].ports"`; list indexes (`[0]`, `[]`)
/// are skipped, since list items share their list's element type.
pub fn lookup(group: &str, kind: &str, path: &str) -> Option<&'static FieldSchema> {
    let mut ty = root_type(group, kind)?;
    let mut found = None;
    let cleaned: String = {
        let mut out = String::with_capacity(path.len());
        let mut depth = 0;
        for c in path.chars() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out
    };
    for part in cleaned.split('.').filter(|p| !p.is_empty()) {
        let entry = field_schema(ty, part)?;
        found = Some(entry);
        match entry.elem_type {
            Some(next) => ty = next,
            None => ty = "",
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_containers_merge_by_name_everywhere_a_pod_spec_appears() {
        for (g, k, p) in [
            ("", "Pod", "spec.containers"),
            ("apps", "Deployment", "spec.template.spec.containers"),
            ("apps", "ReplicaSet", "spec.template.spec.initContainers"),
            ("apps", "DaemonSet", "spec.template.spec.containers"),
        ] {
            let e = lookup(g, k, p).unwrap();
            assert_eq!(
                (e.patch_strategy, e.merge_key, e.list_type),
                ("merge", Some("name"), Some(ListType::Map)),
                "{k} {p}"
            );
        }
    }

    #[test]
    fn nested_list_keys_follow_upstream() {
        let ports = lookup("", "Pod", "spec.containers[0].ports").unwrap();
        assert_eq!(ports.merge_key, Some("containerPort"));
        assert_eq!(ports.map_keys, ["containerPort", "protocol"]);
        assert_eq!(
            lookup("", "Pod", "spec.containers[].env").unwrap().merge_key,
            Some("name")
        );
        assert_eq!(
            lookup("", "Pod", "spec.containers.volumeMounts")
                .unwrap()
                .merge_key,
            Some("mountPath")
        );
        let vols = lookup("", "Pod", "spec.volumes").unwrap();
        assert!(vols.merges() && vols.retains_keys());
        assert_eq!(
            lookup("", "Service", "spec.ports").unwrap().merge_key,
            Some("port")
        );
        assert_eq!(
            lookup("", "Node", "status.addresses").unwrap().merge_key,
            Some("type")
        );
        assert_eq!(
            lookup("", "Node", "status.conditions").unwrap().merge_key,
            Some("type")
        );
        assert_eq!(
            lookup("apps", "Deployment", "status.conditions")
                .unwrap()
                .merge_key,
            Some("type")
        );
        assert!(
            lookup("apps", "Deployment", "spec.strategy")
                .unwrap()
                .retains_keys()
        );
    }

    #[test]
    fn metadata_lists_and_atomic_lists() {
        let owners = lookup("apps", "Deployment", "spec.template.metadata.ownerReferences").unwrap();
        assert_eq!(owners.merge_key, Some("uid"));
        let fin = lookup("", "ConfigMap", "metadata.finalizers").unwrap();
        assert_eq!(
            (fin.patch_strategy, fin.merge_key, fin.list_type),
            ("merge", None, Some(ListType::Set))
        );
        let tol = lookup("", "Pod", "spec.tolerations").unwrap();
        assert_eq!((tol.patch_strategy, tol.list_type), ("", Some(ListType::Atomic)));
        assert_eq!(
            lookup("", "Node", "spec.taints").unwrap().list_type,
            Some(ListType::Atomic)
        );
        assert_eq!(
            lookup("rbac.authorization.k8s.io", "ClusterRole", "rules")
                .unwrap()
                .list_type,
            Some(ListType::Atomic)
        );
    }

    #[test]
    fn unknown_paths_and_kinds_have_no_entry() {
        assert!(lookup("", "Pod", "spec.nope").is_none());
        assert!(lookup("example.com", "Widget", "spec").is_none());
        assert!(lookup("", "Pod", "spec.containers.image").is_none());
    }

    #[test]
    fn every_navigation_target_has_entries() {
        for e in FIELDS {
            if let Some(t) = e.elem_type {
                assert!(fields_of(t).next().is_some(), "{} -> {t}", e.field);
            }
        }
    }
}
