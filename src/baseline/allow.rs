//! Allowlists from the config: domains (suffix match on label boundaries), networks and
//! ports that analytics must never alert on.

use std::net::IpAddr;

use crate::config::NetSet;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    pub domains: DomainSet,
    pub cidrs: NetSet,
    pub ports: Vec<u16>,
}

impl Allowlist {
    pub fn allows_name(&self, name: &str) -> bool {
        self.domains.contains_name(name)
    }
    pub fn allows_addr(&self, ip: IpAddr) -> bool {
        self.cidrs.contains(ip)
    }
    pub fn allows_port(&self, port: u16) -> bool {
        self.ports.contains(&port)
    }
}

/// Allowlisted domains (lower case, no leading or trailing dot). A name is in the set
/// when it or one of its parent domains is, as [`name_under`] tells, ASCII
/// case-insensitive. A lookup is one hash probe per label of the name whatever the
/// list's length: a scan of the ~40 built-in domains ran for every DNS answer and
/// CNAME.
#[derive(Clone, Debug, Default)]
pub struct DomainSet {
    set: hashbrown::HashSet<Box<str>>,
    /// In the order added (duplicates once), for display and tests.
    list: Vec<String>,
}

impl PartialEq for DomainSet {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

impl Eq for DomainSet {}

impl FromIterator<String> for DomainSet {
    fn from_iter<I: IntoIterator<Item = String>>(it: I) -> Self {
        let mut s = DomainSet::default();
        s.extend(it);
        s
    }
}

impl DomainSet {
    /// Adds a domain (lowercased; an empty one matches nothing and is not kept).
    pub fn push(&mut self, domain: String) {
        let d = domain.to_ascii_lowercase();
        if !d.is_empty() && self.set.insert(d.as_str().into()) {
            self.list.push(d);
        }
    }

    pub fn extend(&mut self, domains: impl IntoIterator<Item = String>) {
        for d in domains {
            self.push(d);
        }
    }

    pub fn as_slice(&self) -> &[String] {
        &self.list
    }

    pub fn into_vec(self) -> Vec<String> {
        self.list
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// `name` is one of the domains or under one.
    pub fn contains_name(&self, name: &str) -> bool {
        if self.set.is_empty() {
            return false;
        }
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.contains_lower(&name.to_ascii_lowercase());
        }
        self.contains_lower(name)
    }

    fn contains_lower(&self, name: &str) -> bool {
        self.set.contains(name)
            || name
                .bytes()
                .enumerate()
                .any(|(i, b)| b == b'.' && self.set.contains(&name[i + 1..]))
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

    /// The set answers as a scan with `name_under` over its domains, on every suffix
    /// position, case and dot placement.
    #[test]
    fn domain_set_agrees_with_name_under() {
        let domains = ["example.com", "b.example.net", "io", "Apple.COM", "x.y.z"];
        let set: DomainSet = domains.iter().map(|d| d.to_string()).collect();
        let names = [
            "example.com",
            "a.example.com",
            "A.EXAMPLE.COM",
            "badexample.com",
            "example.com.",
            ".example.com",
            "b.example.net",
            "a.b.example.net",
            "example.net",
            "c.example.net",
            "io",
            "foo.io",
            "fooio",
            "apple.com",
            "x.apple.com",
            "y.z",
            "w.x.y.z",
            "",
            ".",
            "..",
            "com",
            "ünïcode.example.com",
        ];
        for n in names {
            let scan = domains
                .iter()
                .any(|d| name_under(n, &d.to_ascii_lowercase()));
            assert_eq!(set.contains_name(n), scan, "{n}");
        }
        assert!(!DomainSet::default().contains_name("example.com"));
        assert_eq!(set.as_slice()[3], "apple.com");
    }
}
