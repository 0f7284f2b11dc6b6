//! Test-only fixtures shared by the workspace's test suites.
//!
//! Layout:
//! - [`mod@eventually`]: poll a condition until a deadline instead of sleeping for a guessed time.
//! - [`etcd`]: real etcd processes: [`EtcdCluster::start_single`] (one plain-HTTP member on 127.0.0.1) and
//!   [`EtcdCluster::start_tls`] (members on 127.0.0.11, .12, ... with client and peer TLS from the `pki` crate),
//!   with SIGKILL / restart of a member, leader discovery, the client TLS files, and cleanup on drop.
//!
//! - [`cluster`]: a real `bulwark kube-apiserver` process with kubeadm's PKI and admin kubeconfig, kubectl runners.
//! - [`components`]: the controller-manager and scheduler processes, and kubelet nodes on loopback addresses.
//! - [`federation`]: restartable API servers, the kubefed controller-manager process, member registration.
//!
//! Entry points: [`eventually()`], [`EtcdCluster`].

pub mod bench;
pub mod cluster;
pub mod components;
pub mod etcd;
pub mod eventually;
pub mod federation;

pub use etcd::{ClientTls, EtcdCluster};
pub use eventually::{EventuallyError, eventually};
