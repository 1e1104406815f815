//! Initiator access control: which initiators may log in to a target
//! (`--op bind --mode target -I ADDRESS` / `-Q NAME`).

use std::fmt;
use std::net::IpAddr;

/// One `--initiator-address` rule: `ALL`, one address, or a CIDR prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressRule {
    All,
    Net { addr: IpAddr, prefix: u8 },
}

impl AddressRule {
    /// Parses `ALL`, `10.1.2.3`, `10.0.0.0/8`, `fe80::1`, `[fe80::1]`, `2001:db8::/32`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("ALL") {
            return Ok(Self::All);
        }
        let bad = |why: &str| {
            format!(
                "invalid initiator address '{s}': {why} \
                 (use ALL, an IPv4 or IPv6 address, or a CIDR prefix such as 10.0.0.0/8)"
            )
        };
        let (addr_s, prefix_s) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr_s = addr_s
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr_s);
        let addr: IpAddr = addr_s.parse().map_err(|_| bad("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_s {
            None => max,
            Some(p) => {
                let p: u8 = p
                    .parse()
                    .map_err(|_| bad("the prefix length is not a number"))?;
                if p > max {
                    return Err(bad(&format!("the prefix length must be at most {max}")));
                }
                p
            }
        };
        Ok(Self::Net {
            addr: canonical(addr),
            prefix,
        })
    }

    pub fn matches(&self, peer: IpAddr) -> bool {
        match *self {
            Self::All => true,
            Self::Net { addr, prefix } => {
                let peer = canonical(peer);
                match (addr, peer) {
                    (IpAddr::V4(a), IpAddr::V4(p)) => {
                        let mask = mask_u32(prefix);
                        u32::from(a) & mask == u32::from(p) & mask
                    }
                    (IpAddr::V6(a), IpAddr::V6(p)) => {
                        let mask = mask_u128(prefix);
                        u128::from(a) & mask == u128::from(p) & mask
                    }
                    _ => false,
                }
            }
        }
    }
}

/// IPv4-mapped IPv6 peers (`::ffff:10.1.2.3`, from a dual-stack listener) match IPv4 rules.
fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => a,
        },
        v4 => v4,
    }
}

fn mask_u32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn mask_u128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

impl fmt::Display for AddressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("ALL"),
            Self::Net { addr, prefix } => {
                let max = if addr.is_ipv4() { 32 } else { 128 };
                if *prefix == max {
                    write!(f, "{addr}")
                } else {
                    write!(f, "{addr}/{prefix}")
                }
            }
        }
    }
}

/// A target's bound rules. As in tgt, an initiator may log in when its address matches an
/// address rule or its name matches a name rule; a target with no rules admits nobody
/// (bind `-I ALL` to admit everyone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    pub addresses: Vec<AddressRule>,
    pub names: Vec<String>,
}

impl Acl {
    pub fn allows(&self, peer: IpAddr, initiator_name: &str) -> bool {
        self.addresses.iter().any(|r| r.matches(peer))
            || self
                .names
                .iter()
                .any(|n| n.eq_ignore_ascii_case(initiator_name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(AddressRule::parse("ALL").unwrap(), AddressRule::All);
        assert_eq!(AddressRule::parse("all").unwrap().to_string(), "ALL");
        assert_eq!(
            AddressRule::parse("10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            AddressRule::parse("10.1.2.3").unwrap().to_string(),
            "10.1.2.3"
        );
        assert_eq!(
            AddressRule::parse("[fe80::1]").unwrap().to_string(),
            "fe80::1"
        );
        assert_eq!(
            AddressRule::parse("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        for bad in [
            "300.1.1.1",
            "10.0.0.0/33",
            "fe80::/129",
            "host.example",
            "10.0.0.0/x",
            "",
        ] {
            let e = AddressRule::parse(bad).unwrap_err();
            assert!(e.contains("invalid initiator address"), "{bad}: {e}");
        }
    }

    #[test]
    fn matching() {
        let all = AddressRule::parse("ALL").unwrap();
        assert!(all.matches(ip("1.2.3.4")) && all.matches(ip("::1")));
        let one = AddressRule::parse("192.168.1.5").unwrap();
        assert!(one.matches(ip("192.168.1.5")));
        assert!(one.matches(ip("::ffff:192.168.1.5")));
        assert!(!one.matches(ip("192.168.1.6")));
        let net = AddressRule::parse("10.0.0.0/8").unwrap();
        assert!(net.matches(ip("10.255.1.1")));
        assert!(!net.matches(ip("11.0.0.1")));
        assert!(!net.matches(ip("::1")));
        let zero = AddressRule::parse("0.0.0.0/0").unwrap();
        assert!(zero.matches(ip("8.8.8.8")));
        let v6 = AddressRule::parse("2001:db8::/32").unwrap();
        assert!(v6.matches(ip("2001:db8:1::7")));
        assert!(!v6.matches(ip("2001:db9::1")));
        assert!(!v6.matches(ip("10.0.0.1")));
        let v6one = AddressRule::parse("fe80::1").unwrap();
        assert!(v6one.matches(ip("fe80::1")) && !v6one.matches(ip("fe80::2")));
    }

    #[test]
    fn acl_combines_addresses_and_names() {
        let mut acl = Acl::default();
        assert!(
            !acl.allows(ip("127.0.0.1"), "iqn.x"),
            "empty ACL admits nobody"
        );
        acl.names.push("iqn.1993-08.org.debian:01:abc".into());
        assert!(acl.allows(ip("1.1.1.1"), "iqn.1993-08.org.debian:01:abc"));
        assert!(!acl.allows(ip("1.1.1.1"), "iqn.1993-08.org.debian:01:other"));
        acl.addresses
            .push(AddressRule::parse("10.0.0.0/8").unwrap());
        assert!(acl.allows(ip("10.0.0.9"), "iqn.1993-08.org.debian:01:other"));
    }
}
