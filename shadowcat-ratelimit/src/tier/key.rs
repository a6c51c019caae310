//! Bucket keys: keyed 64-bit hashes of client addresses, subjects, names and paths.
//!
//! Hashing every key to a `u64` keeps map entries at 16 bytes and avoids a `String`
//! allocation per check. The hash is SipHash-1-3 with a random key chosen when the
//! limiter is built, so clients cannot craft colliding names, and the hashes of IPs and
//! subjects written to audit records cannot be reversed without that key. Two distinct keys
//! of one tier share a bucket only on a 64-bit collision: about 3 in 10^8 for a million
//! keys.
//!
//! Each key is fed to the hasher in as few `write` calls as possible, with a domain tag
//! byte first, because every call into std's SipHash costs tens of instructions on
//! inputs this short. The input stays unambiguous: the tag has a fixed length, an address
//! group has a fixed layout per IP version, and the two parts of a pair are split by
//! 0xFF, a byte that UTF-8 never contains.

use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use shadowcat_core::normalize_ip;

use crate::config::Ipv6Prefix;

/// Builds the keyed hashes of one limiter.
#[derive(Clone)]
pub(crate) struct KeyHasher {
    state: RandomState,
    ipv6_prefix: u8,
}

impl KeyHasher {
    pub(crate) fn new(ipv6_prefix: Ipv6Prefix) -> Self {
        Self {
            state: RandomState::new(),
            ipv6_prefix: ipv6_prefix.get(),
        }
    }

    /// Hashes a name, a subject or the raw bytes of an id. The `domain` tag keeps equal
    /// values in different roles apart.
    #[inline]
    pub(crate) fn hash(&self, domain: u8, value: impl AsRef<[u8]>) -> u64 {
        let mut hasher = self.state.build_hasher();
        hasher.write(&[domain]);
        hasher.write(value.as_ref());
        hasher.finish()
    }

    /// Hashes a pair of strings, such as an HTTP method and a path.
    #[inline]
    pub(crate) fn hash_pair(&self, domain: u8, first: &str, second: &str) -> u64 {
        let mut hasher = self.state.build_hasher();
        hasher.write(&[domain]);
        hasher.write(first.as_bytes());
        hasher.write(&[0xff]);
        hasher.write(second.as_bytes());
        hasher.finish()
    }

    /// Groups a client address: IPv4 (including IPv4-mapped IPv6) by the full address,
    /// IPv6 by the configured prefix.
    pub(crate) fn ip_group(&self, addr: IpAddr) -> IpNet {
        match normalize_ip(addr) {
            IpAddr::V4(v4) => IpNet::V4(Ipv4Net::new_assert(v4, 32)),
            IpAddr::V6(v6) => IpNet::V6(Ipv6Net::new_assert(v6, self.ipv6_prefix).trunc()),
        }
    }

    /// Returns the group and its keyed hash.
    #[inline]
    pub(crate) fn ip_key(&self, addr: IpAddr) -> (IpNet, u64) {
        let net = self.ip_group(addr);
        // The domain tag, the IP version, the prefix length and the network address,
        // hashed in one write.
        let mut input = [0u8; 19];
        input[0] = domain::IP;
        input[2] = net.prefix_len();
        let len = match net {
            IpNet::V4(v4) => {
                input[1] = 4;
                input[3..7].copy_from_slice(&v4.network().octets());
                7
            }
            IpNet::V6(v6) => {
                input[1] = 6;
                input[3..19].copy_from_slice(&v6.network().octets());
                19
            }
        };
        let mut hasher = self.state.build_hasher();
        hasher.write(&input[..len]);
        (net, hasher.finish())
    }
}

/// Domain tags mixed into each hash.
pub(crate) mod domain {
    pub(crate) const IP: u8 = 1;
    pub(crate) const SUBJECT: u8 = 2;
    pub(crate) const SESSION: u8 = 3;
    pub(crate) const ROUTE: u8 = 4;
    pub(crate) const METHOD: u8 = 5;
    pub(crate) const TOOL_NAME: u8 = 6;
}

/// A `Hasher` for keys that are already keyed hashes: it passes the `u64` through.
#[derive(Default, Clone, Copy)]
pub(crate) struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are expected; fold anything else so the hasher stays total.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// The `BuildHasher` of maps keyed by prehashed `u64` keys.
pub(crate) type PrehashedKeys = BuildHasherDefault<PrehashedHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher(prefix: u8) -> KeyHasher {
        KeyHasher::new(Ipv6Prefix::new(prefix).unwrap())
    }

    #[test]
    fn ipv6_groups_by_prefix() {
        let keys = hasher(64);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(keys.ip_key(a), keys.ip_key(b));
        assert_ne!(keys.ip_key(a).1, keys.ip_key(c).1);
        assert_eq!(keys.ip_group(a).to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn configurable_prefix_changes_grouping() {
        let keys = hasher(48);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(keys.ip_key(a).1, keys.ip_key(c).1);
    }

    #[test]
    fn mapped_ipv4_counts_as_ipv4() {
        let keys = hasher(64);
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(keys.ip_key(v4), keys.ip_key(mapped));
        assert_eq!(keys.ip_group(mapped).to_string(), "192.0.2.7/32");
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert_ne!(keys.ip_key(v4).1, keys.ip_key(other).1);
    }

    #[test]
    fn domains_separate_equal_text() {
        let keys = hasher(64);
        assert_ne!(
            keys.hash(domain::SUBJECT, "x"),
            keys.hash(domain::METHOD, "x")
        );
    }
}
