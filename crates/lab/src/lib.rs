//! `bulwark up` / `bulwark down`: a local highly available lab on one machine, without root. Three stacked
//! control-plane nodes, N workers and the load balancer, each on its own loopback address (all of 127.0.0.0/8
//! reaches `lo`), each node with its own root directory (`--rootfs`) below the lab directory.
//!
//! `up` does what a user of guide A does, through the same code paths: it starts `bulwark lb` in front of the
//! three API servers, runs `bulwark kubeadm init --config ... --upload-certs` on the first control-plane node, then
//! `bulwark kubeadm join` with `--control-plane` and the certificate key on the other two and with the token and CA
//! hash on the workers (all joins at once: etcd lets one learner in at a time and kubeadm waits its turn), and
//! waits for every node to be Ready.
//!
//! Several nodes on one host cannot all bind upstream's loopback defaults (etcd's `127.0.0.1:2379` and `:2381`,
//! the controller-manager's `:10257`, the scheduler's `:10259`, the kubelet's `:10248` healthz and `0.0.0.0:10250`,
//! the API server's `0.0.0.0:6443`). The `ClusterConfiguration` and its `extraArgs` are shared by every
//! control-plane node, so per-node addresses go where upstream puts per-node overrides: a `--patches` directory
//! per node (JSON patches of the static pods, guarded by `test` operations, and a merge patch of the
//! `KubeletConfiguration`). Preflight errors that only mean "not root" or "another node of this lab holds that
//! port on another address" are ignored as `--ignore-preflight-errors` would.
//!
//! This is a crate of its own rather than a kubeadm module because it drives kubeadm from the outside (config
//! files, patches, processes) and also needs the kubelet's runtime (to stop containers on `down`).
//!
//! `up --single` is the quick path: one node whose API server keeps the cluster in its embedded store (no etcd,
//! no load balancer, no control-plane taint, so workloads run on it), plus any workers asked for.
//!
//! Entry points: [`Plan`], [`up`], [`down`], [`default_dir`], [`Prefix`].

use k8s_openapi::api::core::v1::Node as KubeNode;
use kubeadm::Layout;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The API server port, on each node and on the load balancer.
pub const API_PORT: u16 = 6443;
/// The control-plane nodes of a lab.
pub const CONTROL_PLANES: usize = 3;
/// Most workers a /24 prefix leaves room for (workers are `.11` up to `.99`).
pub const MAX_WORKERS: usize = 89;
const STATE_FILE: &str = "lab.json";
/// How long `down` lets containers exit on SIGTERM before SIGKILL. The whole lab goes at once, so components
/// that would wait for their API server or etcd (to release a leader lease, to drain watches) wait for nothing
/// that will come back: kubeadm reset's 10 s would only make `down` slow.
const CONTAINER_GRACE: Duration = Duration::from_secs(2);
const LB_PID_FILE: &str = "lb.pid";
const LB_LOG_FILE: &str = "lb.log";
/// The personalities the nodes run, put on PATH as symlinks to bulwark.
const PERSONALITIES: &[&str] = &[
    "kubeadm",
    "kubelet",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid address prefix {0:?}: give three octets of 127.0.0.0/8, such as 127.0.100")]
    Prefix(String),
    #[error("{0}")]
    Usage(String),
    #[error("a lab is already up in {0}; run `bulwark down` first (with the same --dir)")]
    AlreadyUp(PathBuf),
    #[error("{0} exists and is not a lab directory (no {STATE_FILE}); not touching it")]
    NotALab(PathBuf),
    #[error("{node}: `{command}` failed ({status}); its output is in {log}:\n{tail}")]
    Step {
        node: String,
        command: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error(transparent)]
    Kubeadm(#[from] kubeadm::Error),
    #[error(transparent)]
    Pki(#[from] pki::Error),
    #[error(transparent)]
    Client(#[from] client::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn say(out: &mut dyn Write, line: std::fmt::Arguments<'_>) -> Result<(), Error> {
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(io(Path::new("<stdout>")))
}

/// The first three octets of the lab's addresses (`127.0.100`): control planes on `.1`-`.3`, workers from `.11`,
/// the load balancer on `.100`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prefix([u8; 3]);

impl Default for Prefix {
    fn default() -> Self {
        Prefix([127, 0, 100])
    }
}

impl std::str::FromStr for Prefix {
    type Err = Error;
    fn from_str(s: &str) -> Result<Prefix, Error> {
        let octets: Vec<u8> = s
            .trim_end_matches('.')
            .split('.')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| Error::Prefix(s.into()))?;
        match octets.as_slice() {
            [127, b, c] => Ok(Prefix([127, *b, *c])),
            _ => Err(Error::Prefix(s.into())),
        }
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c] = self.0;
        write!(f, "{a}.{b}.{c}")
    }
}

impl Prefix {
    pub fn address(&self, last: u8) -> Ipv4Addr {
        let [a, b, c] = self.0;
        Ipv4Addr::new(a, b, c, last)
    }

    /// The load balancer, i.e. the control-plane endpoint.
    pub fn endpoint(&self) -> String {
        format!("{}:{API_PORT}", self.address(100))
    }
}

/// One node of the lab, as recorded in the lab's state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabNode {
    pub name: String,
    pub control_plane: bool,
    pub address: Ipv4Addr,
}

/// What `down` needs to find everything `up` started.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    prefix: Prefix,
    endpoint: String,
    nodes: Vec<LabNode>,
    #[serde(default)]
    single: bool,
}

/// What to bring up.
#[derive(Debug, Clone)]
pub struct Plan {
    pub dir: PathBuf,
    pub prefix: Prefix,
    pub workers: usize,
    /// One control-plane node on the embedded store instead of three on stacked etcd behind the load balancer.
    pub single: bool,
    /// The bulwark executable: run as `bulwark kubeadm ...`, `bulwark lb ...` and linked as each personality.
    pub bulwark: PathBuf,
    /// How long each wait may take (kubeadm's own is 4 minutes).
    pub timeout: Duration,
}

impl Plan {
    pub fn control_planes(&self) -> usize {
        if self.single { 1 } else { CONTROL_PLANES }
    }

    /// The API endpoint clients use: the load balancer, or the single node itself.
    pub fn endpoint(&self) -> String {
        if self.single {
            format!("{}:{API_PORT}", self.prefix.address(1))
        } else {
            self.prefix.endpoint()
        }
    }

    pub fn nodes(&self) -> Vec<LabNode> {
        let control_planes = (1..=self.control_planes()).map(|i| LabNode {
            name: format!("cp-{i}"),
            control_plane: true,
            address: self.prefix.address(i as u8),
        });
        let workers = (1..=self.workers).map(|i| LabNode {
            name: format!("worker-{i}"),
            control_plane: false,
            address: self.prefix.address(10 + i as u8),
        });
        control_planes.chain(workers).collect()
    }
}

/// `$XDG_DATA_HOME/bulwark/lab`, else `~/.local/share/bulwark/lab`.
pub fn default_dir() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from(".local/share"));
    data.join("bulwark/lab")
}

/// What a finished `up` produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The admin kubeconfig, pointing at the load balancer.
    pub kubeconfig: PathBuf,
    pub nodes: Vec<LabNode>,
    /// From the start of `up` until every node was Ready.
    pub ready_after: Duration,
}

/// Brings the lab up. On failure the lab is left as it is (so its logs can be read); [`down`] removes it.
pub fn up(plan: &Plan, out: &mut dyn Write) -> Result<Outcome, Error> {
    let start = Instant::now();
    if plan.workers > MAX_WORKERS {
        return Err(Error::Usage(format!(
            "at most {MAX_WORKERS} workers fit in one address prefix"
        )));
    }
    if plan.dir.join(STATE_FILE).exists() {
        return Err(Error::AlreadyUp(plan.dir.clone()));
    }
    if std::fs::read_dir(&plan.dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::NotALab(plan.dir.clone()));
    }
    std::fs::create_dir_all(&plan.dir).map_err(io(&plan.dir))?;
    let dir = plan.dir.canonicalize().map_err(io(&plan.dir))?;
    let nodes = plan.nodes();
    let state = State {
        prefix: plan.prefix,
        endpoint: plan.endpoint(),
        nodes: nodes.clone(),
        single: plan.single,
    };
    // Written first, so that `down` can clean up whatever a failed `up` leaves behind.
    let state_path = dir.join(STATE_FILE);
    let text = serde_json::to_vec_pretty(&state).map_err(|e| Error::Usage(e.to_string()))?;
    pki::write_public(&state_path, &text)?;
    say(
        out,
        format_args!(
            "[lab] Bringing up {} and {} workers on {}.0/24 in {}",
            if plan.single {
                "one control-plane node on the embedded store".to_string()
            } else {
                format!("{CONTROL_PLANES} control-plane nodes")
            },
            plan.workers,
            plan.prefix,
            dir.display()
        ),
    )?;
    let bin = dir.join("bin");
    install_personalities(&plan.bulwark, &bin)?;
    let path_env = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());

    if !plan.single {
        start_load_balancer(&plan.bulwark, &dir, &state, out)?;
    }

    let token = pki::BootstrapToken::generate(&mut pki::OsRng).to_string();
    let key = pki::CertificateKey::generate(&mut pki::OsRng).to_hex();
    for node in &nodes {
        write_node_files(&dir, &state, node, &token, &key, None)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io(Path::new("<tokio runtime>")))?;
    let runner = Runner {
        bulwark: &plan.bulwark,
        path_env: &path_env,
    };

    let first = &nodes[0];
    let rootfs = dir.join(&first.name);
    say(
        out,
        format_args!(
            "[lab] {} ({}): kubeadm init --config {}{} --rootfs {}",
            first.name,
            first.address,
            rootfs.join("kubeadm.yaml").display(),
            if plan.single { "" } else { " --upload-certs" },
            rootfs.display()
        ),
    )?;
    let mut init_args: Vec<OsString> = vec![
        "init".into(),
        "--config".into(),
        rootfs.join("kubeadm.yaml").into(),
        "--rootfs".into(),
        rootfs.clone().into(),
    ];
    if !plan.single {
        init_args.push("--upload-certs".into());
    }
    let took = runtime.block_on(runner.kubeadm(first, &rootfs, init_args))?;
    say(
        out,
        format_args!(
            "[lab] {}: control plane initialized after {:.1}s",
            first.name,
            took.as_secs_f64()
        ),
    )?;
    let ca = pki::read_cert(&rootfs.join("etc/kubernetes/pki/ca.crt"))?;
    let pin = pki::ca_public_key_pin(&ca)?;
    let kubeconfig = dir.join("admin.conf");
    let admin = std::fs::read(rootfs.join("etc/kubernetes/admin.conf"))
        .map_err(io(&rootfs.join("etc/kubernetes/admin.conf")))?;
    pki::write_private(&kubeconfig, &admin)?;

    for node in &nodes[1..] {
        write_node_files(&dir, &state, node, &token, &key, Some(&pin))?;
        say(
            out,
            format_args!(
                "[lab] {} ({}): kubeadm join {}{} --rootfs {}",
                node.name,
                node.address,
                state.endpoint,
                if node.control_plane {
                    " --control-plane"
                } else {
                    ""
                },
                dir.join(&node.name).display()
            ),
        )?;
    }
    let joins = nodes[1..].iter().map(|node| {
        let rootfs = dir.join(&node.name);
        let args: Vec<OsString> = vec![
            "join".into(),
            "--config".into(),
            rootfs.join("kubeadm.yaml").into(),
            "--rootfs".into(),
            rootfs.clone().into(),
        ];
        let runner = &runner;
        async move { (node, runner.kubeadm(node, &rootfs, args).await) }
    });
    let results = runtime.block_on(futures_util::future::join_all(joins));
    let mut failure = None;
    for (node, result) in results {
        match result {
            Ok(took) => say(
                out,
                format_args!("[lab] {}: joined after {:.1}s", node.name, took.as_secs_f64()),
            )?,
            Err(e) => {
                say(out, format_args!("[lab] {}: join failed", node.name))?;
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }

    say(
        out,
        format_args!("[lab] Waiting for {} nodes to be Ready", nodes.len()),
    )?;
    runtime.block_on(wait_ready(&kubeconfig, nodes.len(), plan.timeout))?;
    let ready_after = start.elapsed();
    say(
        out,
        format_args!(
            "[lab] {} nodes Ready after {:.1}s\n",
            nodes.len(),
            ready_after.as_secs_f64()
        ),
    )?;
    Ok(Outcome {
        kubeconfig,
        nodes,
        ready_after,
    })
}

/// `bulwark lb` in front of the control-plane nodes' API servers, as a daemon with its pid file in `dir`.
fn start_load_balancer(bulwark: &Path, dir: &Path, state: &State, out: &mut dyn Write) -> Result<(), Error> {
    let backends: Vec<String> = state
        .nodes
        .iter()
        .filter(|n| n.control_plane)
        .map(|n| format!("{}:{API_PORT}", n.address))
        .collect();
    say(
        out,
        format_args!(
            "[lab] Starting the load balancer on {} in front of {}",
            state.endpoint,
            backends.join(", ")
        ),
    )?;
    let lb_argv: Vec<String> = [
        "lb",
        "--bind",
        &state.endpoint,
        "--backend",
        &backends.join(","),
        "--check",
        "https",
        "--interval",
        "1s",
        "--rise",
        "1",
        "--fall",
        "2",
        "--connect-timeout",
        "1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    kubeadm::daemon::start(bulwark, &lb_argv, &dir.join(LB_PID_FILE), &dir.join(LB_LOG_FILE))?;
    Ok(())
}

/// Runs `bulwark kubeadm ...` for the nodes, with the personalities on PATH.
struct Runner<'a> {
    bulwark: &'a Path,
    path_env: &'a str,
}

impl Runner<'_> {
    /// Runs one kubeadm command for `node`, its output in `<rootfs>/kubeadm.log`; returns how long it took.
    async fn kubeadm(&self, node: &LabNode, rootfs: &Path, args: Vec<OsString>) -> Result<Duration, Error> {
        let log = rootfs.join("kubeadm.log");
        let file = std::fs::File::create(&log).map_err(io(&log))?;
        let err = file.try_clone().map_err(io(&log))?;
        let command = format!(
            "kubeadm {}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let start = Instant::now();
        let status = tokio::process::Command::new(self.bulwark)
            .arg("kubeadm")
            .args(&args)
            .env("PATH", self.path_env)
            .stdin(std::process::Stdio::null())
            .stdout(file)
            .stderr(err)
            .status()
            .await
            .map_err(io(self.bulwark))?;
        if status.success() {
            return Ok(start.elapsed());
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        Err(Error::Step {
            node: node.name.clone(),
            command,
            status: status.to_string(),
            log,
            tail: lines[lines.len().saturating_sub(30)..].join("\n"),
        })
    }
}

/// Symlinks for the personalities the nodes run, so that the kubelets find them on PATH.
fn install_personalities(bulwark: &Path, bin: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(bin).map_err(io(bin))?;
    let exe = bulwark.canonicalize().map_err(io(bulwark))?;
    for name in PERSONALITIES {
        let link = bin.join(name);
        std::os::unix::fs::symlink(&exe, &link).map_err(io(&link))?;
    }
    Ok(())
}

/// Preflight findings that only mean "not root" or "some lab node already holds this port on its own address":
/// upstream's checks bind the wildcard address, which any node of the lab makes fail for the next.
fn ignored_preflight_errors(control_plane: bool) -> Vec<&'static str> {
    if control_plane {
        vec![
            "IsPrivilegedUser",
            "Port-6443",
            "Port-10259",
            "Port-10257",
            "Port-10250",
            "Port-2379",
            "Port-2380",
        ]
    } else {
        vec!["Port-10250"]
    }
}

fn yaml_list(items: &[&str]) -> String {
    items.iter().map(|i| format!("\n  - {i}")).collect::<String>()
}

/// The kubeadm configuration for `node`: init's for the first control plane (`pin` is `None`), join's otherwise.
/// The cluster's keys are ECDSA P-256 (v1beta4's `encryptionAlgorithm`): generating the dozen RSA-2048 keys of
/// init and of each control-plane join takes seconds on a busy machine, ECDSA keys take microseconds.
fn kubeadm_config(
    state: &State,
    node: &LabNode,
    token: &str,
    key: &str,
    patches: &Path,
    pin: Option<&str>,
) -> String {
    let ignore = yaml_list(&ignored_preflight_errors(node.control_plane));
    let patches = patches.display();
    let Some(pin) = pin else {
        // Single: the embedded store, the node's own address as the endpoint, and no taint (workloads run here).
        let (taints, cluster) = if state.single {
            (
                "\n  taints: []",
                "apiServer:\n  extraArgs:\n  - name: storage-backend\n    value: sqlite\n".to_string(),
            )
        } else {
            ("", format!("controlPlaneEndpoint: \"{}\"\n", state.endpoint))
        };
        return format!(
            "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
- token: \"{token}\"
  description: \"bulwark lab\"
certificateKey: \"{key}\"
localAPIEndpoint:
  advertiseAddress: {address}
  bindPort: {API_PORT}
nodeRegistration:
  name: {name}
  ignorePreflightErrors:{ignore}{taints}
patches:
  directory: \"{patches}\"
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
{cluster}encryptionAlgorithm: ECDSA-P256
",
            address = node.address,
            name = node.name,
        );
    };
    let role = if node.control_plane {
        format!(
            "controlPlane:
  certificateKey: \"{key}\"
  localAPIEndpoint:
    advertiseAddress: {address}
    bindPort: {API_PORT}
",
            address = node.address
        )
    } else {
        String::new()
    };
    format!(
        "apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: \"{endpoint}\"
    token: \"{token}\"
    caCertHashes:
    - \"{pin}\"
{role}nodeRegistration:
  name: {name}
  ignorePreflightErrors:{ignore}
  kubeletExtraArgs:
  - name: node-ip
    value: \"{address}\"
patches:
  directory: \"{patches}\"
",
        endpoint = state.endpoint,
        name = node.name,
        address = node.address,
    )
}

/// Writes `<node>/kubeadm.yaml` and `<node>/patches/`. The patches of a control-plane node are computed from the
/// manifests kubeadm renders for it, so each JSON patch can `test` the value it replaces.
fn write_node_files(
    dir: &Path,
    state: &State,
    node: &LabNode,
    token: &str,
    key: &str,
    pin: Option<&str>,
) -> Result<(), Error> {
    let root = dir.join(&node.name);
    let patches = root.join("patches");
    std::fs::create_dir_all(&patches).map_err(io(&patches))?;
    let text = kubeadm_config(state, node, token, key, &patches, pin);
    // The join token and the certificate key are secrets.
    pki::write_private(&root.join("kubeadm.yaml"), text.as_bytes())?;
    let address = node.address.to_string();
    let kubelet = json!({"address": address, "healthzBindAddress": address});
    write_json(&patches.join("kubeletconfiguration+merge.json"), &kubelet)?;
    if !node.control_plane {
        return Ok(());
    }
    // The control plane as kubeadm renders it for this node (the first node's configuration with this node's
    // address and name is what a joining control plane resolves from the cluster's ClusterConfiguration).
    let as_init = kubeadm_config(state, node, token, key, &patches, None);
    let cfg = kubeadm::config::parse_init(
        "the lab's configuration",
        &as_init,
        &kubeadm::config::InitFlags::default(),
        &kubeadm::config::HostFacts::detect(),
    )
    .map_err(kubeadm::Error::from)?;
    for (component, ops) in control_plane_patches(&cfg, &address)? {
        write_json(
            &patches.join(format!("{component}+json.json")),
            &Value::Array(ops),
        )?;
    }
    Ok(())
}

fn write_json(path: &Path, value: &Value) -> Result<(), Error> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| Error::Usage(e.to_string()))?;
    pki::write_public(path, &text)?;
    Ok(())
}

/// JSON patch operations that set `--flag=value` in `command`: the existing flag is tested and replaced, a
/// missing one appended.
fn set_flag(command: &[String], flag: &str, value: &str) -> Vec<Value> {
    let prefix = format!("--{flag}=");
    let new = format!("{prefix}{value}");
    match command.iter().position(|a| a.starts_with(&prefix)) {
        Some(i) => vec![
            json!({"op": "test", "path": format!("/spec/containers/0/command/{i}"), "value": command[i]}),
            json!({"op": "replace", "path": format!("/spec/containers/0/command/{i}"), "value": new}),
        ],
        None => vec![json!({"op": "add", "path": "/spec/containers/0/command/-", "value": new})],
    }
}

/// JSON patch operations that point every HTTP probe of the manifest's container at `host`.
fn probe_hosts(manifest: &str, host: &str) -> Result<Vec<Value>, Error> {
    let pod: Value = serde_yaml::from_str(manifest)
        .map_err(|e| Error::Usage(format!("a manifest kubeadm rendered: {e}")))?;
    let mut ops = Vec::new();
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let current = &pod["spec"]["containers"][0][probe]["httpGet"]["host"];
        if current.is_string() && current != host {
            let path = format!("/spec/containers/0/{probe}/httpGet/host");
            ops.push(json!({"op": "test", "path": path, "value": current}));
            ops.push(json!({"op": "replace", "path": path, "value": host}));
        }
    }
    Ok(ops)
}

/// The per-node patches of a control-plane node at `address`: every listener and every client URL that upstream
/// puts on loopback moves to the node's own address.
fn control_plane_patches(
    cfg: &kubeadm::config::InitConfig,
    address: &str,
) -> Result<Vec<(&'static str, Vec<Value>)>, Error> {
    use kubeadm::{controlplane, etcd};
    let apiserver = controlplane::apiserver_command(cfg);
    let mut apiserver_ops = set_flag(&apiserver, "bind-address", address);
    let mut patches = Vec::new();
    if let kubeadm::config::Etcd::Local(_) = cfg.cluster.etcd {
        let etcd_command = etcd::command(cfg)?;
        let mut etcd_ops = set_flag(
            &etcd_command,
            "listen-client-urls",
            &format!("https://{address}:{}", etcd::CLIENT_PORT),
        );
        etcd_ops.extend(set_flag(
            &etcd_command,
            "listen-metrics-urls",
            &format!("http://{address}:{}", etcd::METRICS_PORT),
        ));
        etcd_ops.extend(probe_hosts(&etcd::manifest(cfg)?, address)?);
        patches.push(("etcd", etcd_ops));
        apiserver_ops.extend(set_flag(
            &apiserver,
            "etcd-servers",
            &format!("https://{address}:{}", etcd::CLIENT_PORT),
        ));
    }
    patches.push((controlplane::APISERVER, apiserver_ops));
    for (component, command) in [
        (
            controlplane::CONTROLLER_MANAGER,
            controlplane::controller_manager_command(cfg),
        ),
        (controlplane::SCHEDULER, controlplane::scheduler_command(cfg)),
    ] {
        let mut ops = set_flag(&command, "bind-address", address);
        ops.extend(probe_hosts(&controlplane::manifest(cfg, component)?, address)?);
        patches.push((component, ops));
    }
    Ok(patches)
}

/// Waits until `count` nodes are registered and Ready.
async fn wait_ready(kubeconfig: &Path, count: usize, timeout: Duration) -> Result<(), Error> {
    let client = client::from_kubeconfig(kubeconfig).await?;
    let nodes: kube::Api<KubeNode> = kube::Api::all(client);
    let start = Instant::now();
    loop {
        if let Ok(list) = nodes.list(&Default::default()).await {
            let ready = list.items.iter().filter(|n| is_ready(n)).count();
            if ready >= count {
                return Ok(());
            }
        }
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                what: format!("{count} Ready nodes"),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn is_ready(node: &KubeNode) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What `down` stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stopped {
    pub kubelets: usize,
    pub containers: usize,
    pub load_balancer: bool,
}

/// Stops every process the lab in `dir` started (each node's kubelet through its pid file, then the containers it
/// ran, then the load balancer) and removes `dir`. A directory that is not a lab is left alone.
pub fn down(dir: &Path, out: &mut dyn Write) -> Result<Stopped, Error> {
    if !dir.exists() {
        say(
            out,
            format_args!("[lab] No lab in {}: nothing to do", dir.display()),
        )?;
        return Ok(Stopped::default());
    }
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read(&state_path).map_err(|_| Error::NotALab(dir.to_path_buf()))?;
    let state: State =
        serde_json::from_slice(&text).map_err(|e| Error::Usage(format!("{}: {e}", state_path.display())))?;
    // Kubelets first (a running kubelet restarts its containers), all nodes at once.
    let per_node: Vec<(bool, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = state
            .nodes
            .iter()
            .map(|node| {
                let layout = Layout::new(dir.join(&node.name));
                scope.spawn(move || {
                    let kubelet =
                        kubeadm::daemon::stop(&kubeadm::kubelet::pid_file(&layout), Duration::from_secs(10))
                            .unwrap_or(false);
                    let containers = kubelet::runtime::stop_all(
                        &layout.host("/var/lib/kubelet/bulwark/containers"),
                        CONTAINER_GRACE,
                    );
                    (kubelet, containers)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((false, 0)))
            .collect()
    });
    let load_balancer = kubeadm::daemon::stop(&dir.join(LB_PID_FILE), Duration::from_secs(10))?;
    let stopped = Stopped {
        kubelets: per_node.iter().filter(|(k, _)| *k).count(),
        containers: per_node.iter().map(|(_, c)| c).sum(),
        load_balancer,
    };
    std::fs::remove_dir_all(dir).map_err(io(dir))?;
    say(
        out,
        format_args!(
            "[lab] Stopped {} kubelets, {} containers and {}; removed {}",
            stopped.kubelets,
            stopped.containers,
            if stopped.load_balancer {
                "the load balancer"
            } else {
                "no load balancer"
            },
            dir.display()
        ),
    )?;
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_three_octets_of_the_loopback_range() {
        let p: Prefix = "127.0.42".parse().unwrap();
        assert_eq!(p.address(3), Ipv4Addr::new(127, 0, 42, 3));
        assert_eq!(p.endpoint(), "127.0.42.100:6443");
        assert!("10.0.0".parse::<Prefix>().is_err());
        assert!("127.0".parse::<Prefix>().is_err());
        assert!("127.0.300".parse::<Prefix>().is_err());
    }

    #[test]
    fn control_planes_then_workers_get_their_own_addresses() {
        let plan = Plan {
            dir: PathBuf::from("/lab"),
            prefix: Prefix::default(),
            workers: 2,
            single: false,
            bulwark: PathBuf::from("bulwark"),
            timeout: Duration::from_secs(1),
        };
        let nodes = plan.nodes();
        let names: Vec<(&str, String)> = nodes
            .iter()
            .map(|n| (n.name.as_str(), n.address.to_string()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("cp-1", "127.0.100.1".to_string()),
                ("cp-2", "127.0.100.2".into()),
                ("cp-3", "127.0.100.3".into()),
                ("worker-1", "127.0.100.11".into()),
                ("worker-2", "127.0.100.12".into()),
            ]
        );
    }

    #[test]
    fn a_control_planes_patches_move_every_loopback_listener_to_its_address() {
        let dir = tempfile::tempdir().unwrap();
        let state = State {
            prefix: Prefix::default(),
            endpoint: Prefix::default().endpoint(),
            nodes: Vec::new(),
            single: false,
        };
        let node = LabNode {
            name: "cp-2".into(),
            control_plane: true,
            address: Ipv4Addr::new(127, 0, 100, 2),
        };
        let token = "abcdef.0123456789abcdef";
        let key = "0".repeat(64);
        let pin = format!("sha256:{}", "ab".repeat(32));
        write_node_files(dir.path(), &state, &node, token, &key, Some(&pin)).unwrap();
        let patches = dir.path().join("cp-2/patches");
        let cfg = kubeadm::config::parse_init(
            "test",
            &kubeadm_config(&state, &node, token, &key, &patches, None),
            &Default::default(),
            &kubeadm::config::HostFacts::detect(),
        )
        .unwrap();
        let etcd = kubeadm::patches::apply(
            Some(&patches),
            "etcd",
            &kubeadm::etcd::manifest(&cfg).unwrap(),
            &mut Vec::new(),
        )
        .unwrap();
        assert!(!etcd.contains("127.0.0.1"), "{etcd}");
        assert!(
            etcd.contains("--listen-client-urls=https://127.0.100.2:2379"),
            "{etcd}"
        );
        for component in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
            let manifest = kubeadm::patches::apply(
                Some(&patches),
                component,
                &kubeadm::controlplane::manifest(&cfg, component).unwrap(),
                &mut Vec::new(),
            )
            .unwrap();
            assert!(!manifest.contains("127.0.0.1"), "{manifest}");
            assert!(manifest.contains("--bind-address=127.0.100.2"), "{manifest}");
        }
        let join = std::fs::read_to_string(dir.path().join("cp-2/kubeadm.yaml")).unwrap();
        let jc = kubeadm::config::load_join(Some(&dir.path().join("cp-2/kubeadm.yaml")), &Default::default())
            .unwrap();
        assert_eq!(jc.patches_dir.as_deref(), Some(patches.as_path()), "{join}");
        assert!(jc.control_plane.is_some());
    }
}
