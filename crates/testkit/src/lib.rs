//! Test-only fixtures: real etcd processes, temp PKI, kubectl runner, `eventually`.
