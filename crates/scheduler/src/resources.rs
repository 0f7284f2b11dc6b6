//! Resource quantities as integers, so the hot path compares numbers instead of parsing strings.
//!
//! [`parse_quantity`] turns a Kubernetes quantity (`"500m"`, `"1.5Gi"`, `"2e3"`) into an integer at a given decimal
//! scale, rounding up like upstream's `MilliValue`/`Value`. [`Resources`] holds what a pod requests or a node offers;
//! [`pod_requests`] computes a pod's effective request as upstream does (containers summed, init containers as the
//! peak, restartable init containers as sidecars that stay, plus the pod overhead).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Request assumed for scoring when a container names no CPU request (upstream's `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Request assumed for scoring when a container names no memory request (upstream's `DefaultMemoryRequest`).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Parses a quantity into an integer count of `10^-scale` units, rounding up; `None` if it is malformed.
/// Values too large for `i64` saturate, as they can only mean "more than anything".
pub fn parse_quantity(q: &str, scale: u32) -> Option<i64> {
    let q = q.trim();
    let (negative, q) = match q.as_bytes().first()? {
        b'-' => (true, &q[1..]),
        b'+' => (false, &q[1..]),
        _ => (false, q),
    };
    let num_end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(num_end);
    if number.is_empty() || number == "." {
        return None;
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if frac_part.contains('.') {
        return None;
    }
    let mut mantissa: i128 = 0;
    for d in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa.checked_mul(10)?.checked_add(i128::from(d - b'0'))?;
    }
    let mut exp10: i32 = -i32::try_from(frac_part.len()).ok()?;
    let mut exp2: u32 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        s if s.starts_with(['e', 'E']) => exp10 += s[1..].parse::<i32>().ok()?,
        _ => return None,
    }
    exp10 += i32::try_from(scale).ok()?;
    let saturate = |neg: bool| Some(if neg { i64::MIN } else { i64::MAX });
    let Some(mut value) = mantissa.checked_mul(1i128 << exp2) else {
        return saturate(negative);
    };
    if exp10 >= 0 {
        for _ in 0..exp10 {
            match value.checked_mul(10) {
                Some(v) => value = v,
                None => return saturate(negative),
            }
        }
    } else {
        let mut divisor: i128 = 1;
        for _ in 0..(-exp10) {
            match divisor.checked_mul(10) {
                Some(d) => divisor = d,
                // Dividing by more than i128 holds leaves a fraction, which rounds up to one unit.
                None => {
                    return Some(if value == 0 {
                        0
                    } else if negative {
                        -1
                    } else {
                        1
                    });
                }
            }
        }
        // Round away from zero, as upstream's MilliValue rounds up.
        value = (value + divisor - 1) / divisor;
    }
    let value = if negative { -value } else { value };
    Some(i64::try_from(value).unwrap_or(if negative { i64::MIN } else { i64::MAX }))
}

/// Amounts of the resources the scheduler accounts for. CPU in millicores, memory and storage in bytes; extended
/// resources (`nvidia.com/gpu`, `hugepages-2Mi`, ...) in their own units, kept sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Allocatable pod count on a node; unused in requests.
    pub pods: i64,
    pub scalar: Vec<(String, i64)>,
}

impl Resources {
    /// Reads a resource list (`requests`, `limits`, `allocatable`).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Self {
        let mut r = Resources::default();
        for (name, q) in list {
            r.set(name, &q.0);
        }
        r
    }

    fn set(&mut self, name: &str, q: &str) {
        let value = |scale| parse_quantity(q, scale).unwrap_or(0);
        match name {
            "cpu" => self.milli_cpu = value(3),
            "memory" => self.memory = value(0),
            "ephemeral-storage" => self.ephemeral_storage = value(0),
            "pods" => self.pods = value(0),
            other if is_scalar(other) => self.set_scalar(other, value(0)),
            _ => {}
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map_or(0, |i| self.scalar[i].1)
    }

    fn set_scalar(&mut self, name: &str, v: i64) {
        match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.scalar[i].1 = v,
            Err(i) => self.scalar.insert(i, (name.to_string(), v)),
        }
    }

    /// Adds `other` (times `sign`, +1 or -1) into `self`.
    pub fn add(&mut self, other: &Resources, sign: i64) {
        self.milli_cpu = self.milli_cpu.saturating_add(sign * other.milli_cpu);
        self.memory = self.memory.saturating_add(sign * other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(sign * other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let cur = self.scalar(name);
            self.set_scalar(name, cur.saturating_add(sign * v));
        }
    }

    /// Raises each amount of `self` to at least `other`'s.
    fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let cur = self.scalar(name);
            self.set_scalar(name, cur.max(*v));
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }
}

/// Extended resources and huge pages are accounted by name; other native names (`storage`, ...) are not scheduled on.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || name.contains('/') && !name.starts_with("kubernetes.io/")
}

/// What a container asks for: its requests, or its limits where a request is missing (the API server's defaulting
/// copies limits into requests; doing it here too keeps pods created elsewhere consistent).
fn container_requests(c: &Container) -> Resources {
    let Some(res) = &c.resources else {
        return Resources::default();
    };
    let mut r = res.limits.as_ref().map(Resources::from_list).unwrap_or_default();
    if let Some(requests) = &res.requests {
        for (name, q) in requests {
            r.set(name, &q.0);
        }
    }
    r
}

/// The pod's effective request and its "non-zero" CPU and memory (defaults filled in for containers that name none,
/// which is what scoring uses so that request-less pods still spread).
pub fn pod_requests(pod: &Pod) -> (Resources, i64, i64) {
    let Some(spec) = &pod.spec else {
        return (Resources::default(), 0, 0);
    };
    let mut sum = Resources::default();
    let (mut nz_cpu, mut nz_mem) = (0i64, 0i64);
    let nonzero = |r: &Resources| {
        let cpu = if r.milli_cpu == 0 {
            DEFAULT_MILLI_CPU_REQUEST
        } else {
            r.milli_cpu
        };
        let mem = if r.memory == 0 {
            DEFAULT_MEMORY_REQUEST
        } else {
            r.memory
        };
        (cpu, mem)
    };
    for c in &spec.containers {
        let r = container_requests(c);
        let (c, m) = nonzero(&r);
        nz_cpu += c;
        nz_mem += m;
        sum.add(&r, 1);
    }
    // Init containers run one at a time before the app containers; restartable ones (sidecars) keep running.
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r, 1);
            init_peak.max_with(&sidecars);
            let (c, m) = nonzero(&r);
            nz_cpu += c;
            nz_mem += m;
        } else {
            let mut during = sidecars.clone();
            during.add(&r, 1);
            init_peak.max_with(&during);
        }
    }
    sum.add(&sidecars, 1);
    sum.max_with(&init_peak);
    if let Some(overhead) = &spec.overhead {
        let o = Resources::from_list(overhead);
        sum.add(&o, 1);
        nz_cpu += o.milli_cpu;
        nz_mem += o.memory;
    }
    (sum, nz_cpu, nz_mem)
}

/// What a node offers pods: `status.allocatable`, or `status.capacity` when a node reports no allocatable.
pub fn node_allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    status
        .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
        .map(Resources::from_list)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

    #[test]
    fn quantities_parse_to_milli_and_bytes_rounding_up() {
        assert_eq!(parse_quantity("500m", 3), Some(500));
        assert_eq!(parse_quantity("2", 3), Some(2000));
        assert_eq!(parse_quantity("1.5", 3), Some(1500));
        assert_eq!(parse_quantity("0.0001", 3), Some(1));
        assert_eq!(parse_quantity("1Gi", 0), Some(1 << 30));
        assert_eq!(parse_quantity("1.5Ki", 0), Some(1536));
        assert_eq!(parse_quantity("128M", 0), Some(128_000_000));
        assert_eq!(parse_quantity("1e3", 0), Some(1000));
        assert_eq!(parse_quantity("100n", 3), Some(1));
        assert_eq!(parse_quantity("110", 0), Some(110));
        assert_eq!(parse_quantity("abc", 0), None);
        assert_eq!(parse_quantity("1Zi", 0), None);
        assert_eq!(parse_quantity("9999999Ei", 0), Some(i64::MAX));
    }

    fn container(requests: &[(&str, &str)], restart: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            restart_policy: restart.map(str::to_string),
            resources: Some(ResourceRequirements {
                requests: Some(
                    requests
                        .iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_requests_the_sum_of_its_containers_or_its_largest_init_container() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![
                    container(&[("cpu", "100m")], None),
                    container(&[("cpu", "200m"), ("memory", "1Mi")], None),
                ],
                init_containers: Some(vec![container(&[("cpu", "1")], None)]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (r, nz_cpu, nz_mem) = pod_requests(&pod);
        assert_eq!(r.milli_cpu, 1000);
        assert_eq!(r.memory, 1 << 20);
        assert_eq!(nz_cpu, 300);
        assert_eq!(nz_mem, DEFAULT_MEMORY_REQUEST + (1 << 20));
    }

    #[test]
    fn sidecars_add_to_the_containers_they_run_beside() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![container(&[("cpu", "100m")], None)],
                init_containers: Some(vec![container(&[("cpu", "50m")], Some("Always"))]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(pod_requests(&pod).0.milli_cpu, 150);
    }

    #[test]
    fn extended_resources_are_accounted_by_name() {
        let mut a = Resources::default();
        a.set("nvidia.com/gpu", "2");
        let mut b = a.clone();
        b.add(&a, 1);
        assert_eq!(b.scalar("nvidia.com/gpu"), 4);
        assert_eq!(b.scalar("example.com/other"), 0);
    }
}
