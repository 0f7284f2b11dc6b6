//! Pod addresses without a pod network: with a pod CIDR inside 127.0.0.0/8 (`--pod-cidr`, `podCIDR`), each pod that
//! is not `hostNetwork` gets an address of its own from that range, as a CNI plugin's host-local IPAM would hand
//! out. Every 127/8 address reaches the loopback interface without configuration, so a container that binds its
//! `status.podIP` (through the downward API) can use the same port as its sibling pods on the same node, and
//! several nodes on one machine do not collide.
//!
//! Without a pod CIDR every pod shares the node's address (host network), as before.
//!
//! Entry points: [`PodCidr::parse`], [`PodCidr::allocate`].

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    #[error("pod CIDR {0:?} is not an IPv4 CIDR such as 127.1.0.0/24")]
    Syntax(String),
    #[error(
        "pod CIDR {0:?} is outside 127.0.0.0/8: bulwark's process runtime has no pod network, so pods can only \
         have addresses that reach the loopback interface as they are"
    )]
    NotLoopback(String),
    #[error("pod CIDR {0:?} leaves no address for pods")]
    TooSmall(String),
}

/// An IPv4 range inside 127.0.0.0/8 that pods take their addresses from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodCidr {
    network: u32,
    prefix: u8,
}

impl std::fmt::Display for PodCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

impl PodCidr {
    /// Parses `a.b.c.d/n`; host bits are cleared, as upstream's parsing of a CIDR does.
    pub fn parse(text: &str) -> Result<PodCidr, CidrError> {
        let syntax = || CidrError::Syntax(text.to_string());
        let (addr, prefix) = text.trim().split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
        if prefix > 32 {
            return Err(syntax());
        }
        if prefix < 8 || addr.octets()[0] != 127 {
            return Err(CidrError::NotLoopback(text.to_string()));
        }
        if prefix > 30 {
            return Err(CidrError::TooSmall(text.to_string()));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(PodCidr {
            network: u32::from(addr) & mask,
            prefix,
        })
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == self.network
    }

    /// The lowest address of the range not in `used` and not `reserved` (the node's own address); the network and
    /// broadcast addresses are never handed out. `None` when the range is full.
    pub fn allocate(&self, used: &BTreeSet<Ipv4Addr>, reserved: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        (1..self.size() - 1)
            .map(|offset| Ipv4Addr::from(self.network + offset))
            .find(|ip| !used.contains(ip) && Some(*ip) != reserved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_cidr_parses_and_others_are_refused() {
        let c = PodCidr::parse("127.5.3.7/24").unwrap();
        assert_eq!(c.to_string(), "127.5.3.0/24");
        assert!(c.contains(Ipv4Addr::new(127, 5, 3, 200)));
        assert!(!c.contains(Ipv4Addr::new(127, 5, 4, 1)));
        assert!(matches!(
            PodCidr::parse("10.244.1.0/24"),
            Err(CidrError::NotLoopback(_))
        ));
        assert!(matches!(
            PodCidr::parse("127.0.0.0/7"),
            Err(CidrError::NotLoopback(_))
        ));
        assert!(matches!(
            PodCidr::parse("127.0.0.1/32"),
            Err(CidrError::TooSmall(_))
        ));
        assert!(matches!(PodCidr::parse("127.0.0.1"), Err(CidrError::Syntax(_))));
        assert!(matches!(PodCidr::parse("fd00::/64"), Err(CidrError::Syntax(_))));
    }

    #[test]
    fn allocation_takes_the_lowest_free_address_skipping_the_node_network_and_broadcast() {
        let c = PodCidr::parse("127.9.0.0/30").unwrap();
        let node = Some(Ipv4Addr::new(127, 9, 0, 1));
        let mut used = BTreeSet::new();
        let first = c.allocate(&used, node).unwrap();
        assert_eq!(first, Ipv4Addr::new(127, 9, 0, 2));
        used.insert(first);
        assert_eq!(
            c.allocate(&used, node),
            None,
            "only .1 and .2 are usable in a /30"
        );
        used.clear();
        assert_eq!(c.allocate(&used, None), Some(Ipv4Addr::new(127, 9, 0, 1)));
    }
}
