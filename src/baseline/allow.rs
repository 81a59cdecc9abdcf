//! Allowlists from the config: domains (suffix match on label boundaries), networks and
//! ports that analytics must never alert on.

use std::net::IpAddr;

use crate::config::NetSet;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    /// Lower case, no leading or trailing dot.
    pub domains: Vec<String>,
    pub cidrs: NetSet,
    pub ports: Vec<u16>,
}

impl Allowlist {
    pub fn allows_name(&self, name: &str) -> bool {
        self.domains.iter().any(|d| name_under(name, d))
    }
    pub fn allows_addr(&self, ip: IpAddr) -> bool {
        self.cidrs.contains(ip)
    }
    pub fn allows_port(&self, port: u16) -> bool {
        self.ports.contains(&port)
    }
}

/// `name` is `suffix` or a subdomain of it (`a.example.com` is under `example.com`,
/// `badexample.com` is not).
pub fn name_under(name: &str, suffix: &str) -> bool {
    if suffix.is_empty() {
        return false;
    }
    match name.len().checked_sub(suffix.len()) {
        Some(0) => name.eq_ignore_ascii_case(suffix),
        Some(k) => {
            name.as_bytes()[k - 1] == b'.'
                && name
                    .get(k..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
        }
        None => false,
    }
}

/// Normalises a configured domain: lower case, no surrounding dots or `*.`.
pub fn normalize_domain(d: &str) -> Result<String, String> {
    let d = d
        .trim()
        .trim_start_matches("*.")
        .trim_matches('.')
        .to_ascii_lowercase();
    if d.is_empty() || d.contains(char::is_whitespace) || d.contains("..") {
        return Err(format!("`{d}` is not a domain"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_on_label_boundary() {
        assert!(name_under("a.example.com", "example.com"));
        assert!(name_under("example.com", "example.com"));
        assert!(!name_under("badexample.com", "example.com"));
        assert!(!name_under("com", "example.com"));
        assert_eq!(normalize_domain("*.Corp.Example.").unwrap(), "corp.example");
        assert!(normalize_domain("..").is_err());
    }
}
