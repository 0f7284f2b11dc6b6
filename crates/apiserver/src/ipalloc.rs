//! ClusterIP allocation from `--service-cluster-ip-range`. Each allocated address is a key under
//! `/registry/ipaddresses/` (as upstream's IPAddress allocator keeps them), so the store's create-if-absent makes
//! allocation safe across several API servers.

use std::net::Ipv4Addr;

use api::ApiError;
use bytes::Bytes;
use rand::Rng;
use store::Store;

const KEY_PREFIX: &str = "/registry/ipaddresses/";

/// An IPv4 service range.
#[derive(Debug, Clone)]
pub struct ServiceIpRange {
    base: u32,
    size: u32,
}

impl ServiceIpRange {
    /// Parses `a.b.c.d/n`; only IPv4 ranges are supported for now.
    pub fn parse(cidr: &str) -> Result<Self, String> {
        let first = cidr.split(',').next().unwrap_or("").trim();
        let (addr, bits) = first
            .split_once('/')
            .ok_or_else(|| format!("invalid service cluster IP range {cidr:?}"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("only IPv4 service cluster IP ranges are supported: {cidr:?}"))?;
        let bits: u32 = bits
            .parse()
            .map_err(|_| format!("invalid prefix length in {cidr:?}"))?;
        if !(8..=30).contains(&bits) {
            return Err(format!(
                "service cluster IP range {cidr:?} must have a prefix between /8 and /30"
            ));
        }
        let mask = u32::MAX << (32 - bits);
        Ok(Self {
            base: u32::from(addr) & mask,
            size: 1 << (32 - bits),
        })
    }

    /// The first usable address, reserved for the `kubernetes` Service.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        v > self.base && v < self.base + self.size - 1
    }

    /// Reserves `ip` (a fixed `spec.clusterIP`); 422-style errors are the caller's to word.
    pub async fn reserve(&self, store: &dyn Store, ip: Ipv4Addr, owner: &str) -> Result<bool, ApiError> {
        let key = format!("{KEY_PREFIX}{ip}");
        match store.create(&key, Bytes::from(owner.to_string()), None).await {
            Ok(_) => Ok(true),
            Err(store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(ApiError::internal(format!("allocating cluster IP: {e}"))),
        }
    }

    /// Picks a free address at random, skipping the network, broadcast and `kubernetes` addresses.
    pub async fn allocate(&self, store: &dyn Store, owner: &str) -> Result<Ipv4Addr, ApiError> {
        let usable = self.size.saturating_sub(3);
        if usable == 0 {
            return Err(ApiError::internal("the service cluster IP range is full"));
        }
        let start = rand::thread_rng().gen_range(0..usable);
        for i in 0..usable.min(256) {
            let ip = Ipv4Addr::from(self.base + 2 + (start + i) % usable);
            if self.reserve(store, ip, owner).await? {
                return Ok(ip);
            }
        }
        Err(ApiError::internal(
            "failed to allocate a serviceIP: range is full",
        ))
    }

    pub async fn release(&self, store: &dyn Store, ip: &str) {
        if let Err(e) = store.delete(&format!("{KEY_PREFIX}{ip}"), None).await {
            tracing::debug!(%ip, error = %e, "releasing cluster IP");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_address_of_the_range_is_the_kubernetes_service() -> Result<(), String> {
        let r = ServiceIpRange::parse("10.96.0.0/12")?;
        assert_eq!(r.first(), Ipv4Addr::new(10, 96, 0, 1));
        assert!(r.contains(Ipv4Addr::new(10, 111, 255, 254)));
        assert!(!r.contains(Ipv4Addr::new(10, 112, 0, 1)));
        Ok(())
    }
}
