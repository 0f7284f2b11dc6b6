//! kubeadm
