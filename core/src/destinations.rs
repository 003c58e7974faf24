//! Where callbacks may be sent: the guard against server-side request forgery.
//!
//! A callback URL is written by a tenant, and the worker sends from inside the database
//! server's network. So by default it refuses addresses that lead back into that network:
//! loopback, private, shared (carrier-grade NAT), link-local (with the cloud metadata
//! services), unique-local, multicast and reserved ranges, in IPv4 and IPv6 forms (IPv4-mapped,
//! -compatible, NAT64 and 6to4 addresses count as the IPv4 address they carry). The check runs
//! on the addresses a host name resolved to, which are the ones connected to, so a name
//! cannot point at a checked address and connect to another (DNS rebinding).
//!
//! `pg_callback.allowed_destinations` lets an administrator allow some anyway: host names
//! (exactly, case-insensitive) and address ranges (`10.1.0.0/16`, `::1`, `127.0.0.1`).
//!
//! No pgrx here: the HTTP pool's thread uses it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

/// What an administrator allowed although it is refused by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destinations {
    names: Vec<String>,
    ranges: Vec<(IpAddr, u8)>,
}

impl Destinations {
    /// Parses the setting: host names and address ranges, separated by commas or spaces.
    pub fn parse(setting: &str) -> Result<Destinations, String> {
        let mut allowed = Destinations::default();
        for entry in setting.split([',', ' ', '\t', '\n']).filter(|e| !e.is_empty()) {
            if let Some(range) = parse_range(entry)? {
                allowed.ranges.push(range);
            } else if is_host_name(entry) {
                allowed.names.push(normal_name(entry));
            } else {
                return Err(format!(
                    "\"{entry}\" is neither a host name nor an address range (such as 10.0.0.0/8 or ::1)"
                ));
            }
        }
        Ok(allowed)
    }

    /// Why `ip`, an address of `host`, may not be connected to; None when it may.
    pub fn refusal(&self, host: &str, ip: IpAddr) -> Option<String> {
        let ip = canonical(ip);
        let kind = protected_kind(ip)?;
        let host = normal_name(host.trim_start_matches('[').trim_end_matches(']'));
        let allowed = self.names.contains(&host) || self.ranges.iter().any(|&(net, bits)| contains(net, bits, ip));
        (!allowed).then(|| {
            format!("destination refused: {ip} is {kind} address (allow it in pg_callback.allowed_destinations)")
        })
    }
}

/// `a.b.c.d/n`, `x::y/n` or a bare address (a range of one); None when `entry` is no address.
fn parse_range(entry: &str) -> Result<Option<(IpAddr, u8)>, String> {
    let (address, bits) = match entry.split_once('/') {
        Some((address, bits)) => (address, Some(bits)),
        None => (entry, None),
    };
    let Ok(address) = address.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() else {
        return match bits {
            Some(_) => Err(format!("\"{entry}\" is not an address range")),
            None => Ok(None),
        };
    };
    let address = canonical(address);
    let max = if address.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        None => max,
        Some(bits) => match bits.parse::<u8>() {
            Ok(bits) if bits <= max => bits,
            _ => return Err(format!("\"{entry}\": a prefix length is 0 to {max}")),
        },
    };
    Ok(Some((address, bits)))
}

fn is_host_name(entry: &str) -> bool {
    entry.len() <= 253
        && entry.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn normal_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// An IPv6 address that carries an IPv4 one (mapped, compatible, NAT64, 6to4) as that IPv4
/// address; any other as it is.
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    let bits = u128::from(v6);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    // ::a.b.c.d (deprecated IPv4-compatible), but not :: and ::1 themselves.
    if bits >> 32 == 0 && bits > 1 {
        return IpAddr::V4(low32);
    }
    // 64:ff9b::/96, NAT64.
    if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return IpAddr::V4(low32);
    }
    // 2002::/16, 6to4: the IPv4 address in bits 16 to 48.
    if v6.segments()[0] == 0x2002 {
        return IpAddr::V4(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    ip
}

/// Whether `ip` is in `net`/`bits` (both of one family).
fn contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

/// Cloud metadata services (AWS, GCP, Azure, OpenStack; ECS; Alibaba; AWS over IPv6).
const METADATA: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
];

/// The ranges refused by default, with what to call them in the refusal.
const PROTECTED: [(&str, u8, &str); 24] = [
    ("0.0.0.0", 8, "an unspecified (\"this network\")"),
    ("10.0.0.0", 8, "a private"),
    ("100.64.0.0", 10, "a shared (carrier-grade NAT)"),
    ("127.0.0.0", 8, "a loopback"),
    ("169.254.0.0", 16, "a link-local"),
    ("172.16.0.0", 12, "a private"),
    ("192.0.0.0", 24, "a reserved (IETF protocol)"),
    ("192.0.2.0", 24, "a documentation"),
    ("192.168.0.0", 16, "a private"),
    ("198.18.0.0", 15, "a reserved (benchmarking)"),
    ("198.51.100.0", 24, "a documentation"),
    ("203.0.113.0", 24, "a documentation"),
    ("224.0.0.0", 4, "a multicast"),
    ("240.0.0.0", 4, "a reserved"),
    ("::", 128, "an unspecified"),
    ("::1", 128, "a loopback"),
    ("100::", 64, "a reserved (discard)"),
    ("2001::", 32, "a Teredo tunnel"),
    ("2001:db8::", 32, "a documentation"),
    ("fc00::", 7, "a unique-local"),
    ("fe80::", 10, "a link-local"),
    ("fec0::", 10, "a site-local"),
    ("ff00::", 8, "a multicast"),
    ("2001:10::", 28, "a reserved (ORCHID)"),
];

/// What kind of protected address `ip` (canonical) is; None for a public one.
fn protected_kind(ip: IpAddr) -> Option<&'static str> {
    if METADATA.contains(&ip) {
        return Some("a cloud metadata");
    }
    // Parsed once: every request's addresses are checked (and each parses: a test below).
    static RANGES: LazyLock<Vec<(IpAddr, u8, &str)>> = LazyLock::new(|| {
        PROTECTED
            .iter()
            .filter_map(|&(net, bits, kind)| Some((net.parse().ok()?, bits, kind)))
            .collect()
    });
    RANGES
        .iter()
        .find_map(|&(net, bits, kind)| contains(net, bits, ip).then_some(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(allowed: &str, host: &str, ip: &str) -> Option<String> {
        Destinations::parse(allowed).unwrap().refusal(host, ip.parse().unwrap())
    }

    #[test]
    fn every_protected_range_parses() {
        for (net, _, _) in PROTECTED {
            assert!(net.parse::<IpAddr>().is_ok(), "{net}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:2800:220:1::1",
            "100.63.255.255",
            "172.32.0.1",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(refused("", "example.com", ip), None, "{ip}");
        }
    }

    #[test]
    fn protected_addresses_are_refused_with_their_kind() {
        let cases = [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("::1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared"),
            ("169.254.169.254", "cloud metadata"),
            ("169.254.170.2", "cloud metadata"),
            ("100.100.100.200", "cloud metadata"),
            ("fd00:ec2::254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("198.18.0.1", "benchmarking"),
        ];
        for (ip, kind) in cases {
            let why = refused("", "hooks.example", ip).unwrap_or_else(|| panic!("{ip} passed"));
            assert!(why.contains(kind), "{ip}: {why}");
            assert!(why.contains("pg_callback.allowed_destinations"), "{why}");
        }
    }

    #[test]
    fn ipv6_forms_of_ipv4_addresses_count_as_the_ipv4_address() {
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:a9fe:a9fe",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2002:0a00:0001::",
        ] {
            assert!(refused("", "h", ip).is_some(), "{ip} passed");
        }
        assert!(refused("", "h", "::ffff:169.254.169.254")
            .unwrap()
            .contains("169.254.169.254 is a cloud metadata"));
        // Allowing the IPv4 range allows its mapped form too.
        assert_eq!(refused("127.0.0.0/8", "h", "::ffff:127.0.0.1"), None);
    }

    #[test]
    fn ranges_and_names_allow() {
        assert_eq!(refused("127.0.0.1/32", "anything", "127.0.0.1"), None);
        assert!(refused("127.0.0.1/32", "anything", "127.0.0.2").is_some());
        assert_eq!(refused("10.0.0.0/8, ::1", "x", "10.200.1.1"), None);
        assert_eq!(refused("10.0.0.0/8, ::1", "x", "::1"), None);
        assert_eq!(refused("[::1]", "x", "::1"), None);
        assert!(refused("10.0.0.0/8", "x", "192.168.0.1").is_some());
        // A name allows every address it resolves to, whatever the case or a final dot.
        assert_eq!(refused("Hooks.Internal.", "hooks.internal", "10.9.9.9"), None);
        assert!(refused("hooks.internal", "[::1]", "::1").is_some());
        assert!(refused("hooks.internal", "evil.internal", "10.9.9.9").is_some());
        // Everything, for a trusted network.
        assert_eq!(refused("0.0.0.0/0 ::/0", "x", "169.254.169.254"), None);
    }

    #[test]
    fn bad_settings_are_refused() {
        for bad in [
            "10.0.0.0/33",
            "::1/129",
            "10.0.0.0/x",
            "10.0.0/8",
            "http://x",
            "a_b",
            "*.example.com",
        ] {
            assert!(Destinations::parse(bad).is_err(), "{bad} parsed");
        }
        assert_eq!(Destinations::parse(" , ").unwrap(), Destinations::default());
    }
}
