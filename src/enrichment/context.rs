//! Score helpers any detector can call with the EDR context of its evidence: how
//! suspicious the origin of a process is (launchd job, unexpected user), and whether it
//! is a web browser (whose traffic is varied by nature).
//!
//! Everything here only adjusts a score; none of it decides on its own.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::Attribution;
use crate::time::{Dur, Ts};

/// Browser executables (macOS app names and Linux binaries) and their helpers. Matched
/// on the process name or the executable's last path component, case-insensitively;
/// `Name Helper...` variants match their browser.
pub const DEFAULT_BROWSERS: &[&str] = &[
    "Safari",
    "Google Chrome",
    "Google Chrome Helper",
    "Firefox",
    "firefox",
    "firefox-esr",
    "Microsoft Edge",
    "Microsoft Edge Helper",
    "msedge",
    "Brave Browser",
    "Brave Browser Helper",
    "brave",
    "Arc",
    "Arc Helper",
    "Opera",
    "Opera Helper",
    "opera",
    "chromium",
    "chromium-browser",
    "chrome",
    "google-chrome",
    "Chromium",
    "Chromium Helper",
    "com.apple.WebKit.Networking",
    "Vivaldi",
];

/// Name of a process: the ECS name, else the executable's file name.
pub fn process_name(a: &Attribution) -> Option<&str> {
    let p = a.process.as_ref()?;
    p.name
        .as_deref()
        .or_else(|| p.executable.as_deref().map(base_name))
}

/// Identity of a process for baselines: the executable path, else the name.
pub fn process_key(a: &Attribution) -> Option<&str> {
    let p = a.process.as_ref()?;
    p.executable.as_deref().or(p.name.as_deref())
}

pub fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Case-insensitive name list; an entry also matches `entry Helper (...)` forms.
#[derive(Clone, Debug, Default)]
pub struct NameList(HashSet<String>);

impl NameList {
    pub fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> NameList {
        NameList(
            names
                .into_iter()
                .map(|s| s.as_ref().to_ascii_lowercase())
                .collect(),
        )
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn matches_name(&self, name: &str) -> bool {
        let n = name.to_ascii_lowercase();
        if self.0.contains(&n) {
            return true;
        }
        // "Google Chrome Helper (Renderer)", "Brave Browser Helper (GPU)".
        match n.find(" helper") {
            Some(i) => self.0.contains(&n[..i]) || self.0.contains(&n[..i + 7]),
            None => false,
        }
    }
    /// Matches the process name, the executable's file name or the full path.
    pub fn matches(&self, a: &Attribution) -> bool {
        let Some(p) = a.process.as_ref() else {
            return false;
        };
        p.name.as_deref().is_some_and(|n| self.matches_name(n))
            || p.executable.as_deref().is_some_and(|e| {
                self.0.contains(&e.to_ascii_lowercase()) || self.matches_name(base_name(e))
            })
    }
}

thread_local! {
    static BROWSERS: NameList = NameList::new(DEFAULT_BROWSERS);
}

/// The process is a known browser (default list).
pub fn is_browser(a: &Attribution) -> bool {
    BROWSERS.with(|b| b.matches(a))
}

/// How much to lower a score when a known browser made the connection: browsers reach
/// arbitrary sites and ports by design, so odd ports mean less from them.
pub fn browser_discount(a: Option<&Attribution>) -> f64 {
    if a.is_some_and(is_browser) {
        0.25
    } else {
        0.0
    }
}

/// Score bonus for a suspicious origin: a LaunchAgent (per-user persistence, where
/// commodity implants live) or LaunchDaemon, unsigned code. 0 when nothing is known.
pub fn origin_weight(a: &Attribution) -> f64 {
    let mut w = 0.0;
    if let Some(l) = &a.launchd {
        let user_plist = l
            .plist
            .as_deref()
            .is_some_and(|p| p.starts_with("/Users/") || p.starts_with("~/"));
        w += match l.kind.as_deref() {
            Some("agent") if user_plist => 0.12,
            Some("agent") => 0.08,
            Some("daemon") => 0.08,
            _ => 0.05,
        };
    }
    let unsigned = a
        .process
        .as_ref()
        .and_then(|p| p.code_signature.as_ref())
        .and_then(|c| c.signed)
        == Some(false);
    if unsigned {
        w += 0.04;
    }
    w
}

/// Reasons matching [`origin_weight`], for the alert.
pub fn origin_reasons(a: &Attribution) -> Vec<String> {
    let mut r = Vec::new();
    if let Some(l) = &a.launchd {
        r.push(format!(
            "started by Launch{} {}",
            if l.kind.as_deref() == Some("daemon") {
                "Daemon"
            } else {
                "Agent"
            },
            l.label.as_deref().or(l.plist.as_deref()).unwrap_or("?")
        ));
    }
    r
}

/// Bonus for a process running as a user it does not normally run as.
pub const UNEXPECTED_USER_WEIGHT: f64 = 0.12;

/// Service accounts that have no business running interactive network tools.
const SERVICE_USERS: &[&str] = &["_www", "nobody", "www-data", "www", "daemon", "_nobody"];
/// Network tools that service accounts rarely run.
const NETWORK_TOOLS: &[&str] = &[
    "curl", "wget", "nc", "ncat", "netcat", "socat", "python", "python3", "perl", "ruby", "rsync",
    "ssh", "scp", "bash", "sh", "zsh",
];

/// The users executables normally run as: configured (`[edr.expected_users]`, executable
/// path or file name -> users) and learned per (host, executable) from the feed.
/// Bounded: at most `max_exes` executables, `USERS_PER_EXE` users each.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UserBaseline {
    /// (host, executable) -> user -> (first seen, last seen, count).
    learned: HashMap<String, HashMap<String, (i64, i64, u32)>>,
    #[serde(skip)]
    expected: HashMap<String, HashSet<String>>,
    #[serde(skip)]
    max_exes: usize,
    /// Keys learned since the last [`UserBaseline::take_dirty`].
    #[serde(skip)]
    dirty: HashSet<String>,
}

/// The users one executable on one host ran as: user -> (first seen, last seen, count),
/// times in packet-time nanoseconds. The persisted form of a learned entry.
pub type LearnedUsers = HashMap<String, (i64, i64, u32)>;

const USERS_PER_EXE: usize = 16;
/// Uses, spread over this span, before a learned user set counts as the habit.
const USER_HABIT_SPAN: Dur = Dur(600 * 1_000_000_000);
const USER_HABIT_COUNT: u32 = 5;

impl UserBaseline {
    pub fn new(expected: HashMap<String, Vec<String>>, max_exes: usize) -> UserBaseline {
        UserBaseline {
            learned: HashMap::new(),
            expected: expected
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().collect()))
                .collect(),
            max_exes,
            dirty: HashSet::new(),
        }
    }

    fn key(host: &str, exe: &str) -> String {
        format!("{host}\u{1f}{exe}")
    }

    /// The persisted key of (host, executable): `host/executable`.
    pub fn store_key(host: &str, exe: &str) -> String {
        format!("{host}/{exe}")
    }

    /// Whether (host, exe) is in memory (learned, or looked up in the store already).
    pub fn knows(&self, host: &str, exe: &str) -> bool {
        self.learned.contains_key(&Self::key(host, exe))
    }

    /// Puts what the store remembered of (host, exe) in memory (an empty set when it had
    /// nothing, so the store is asked once per run).
    pub fn restore(&mut self, host: &str, exe: &str, users: Option<LearnedUsers>) {
        let mut users = users.unwrap_or_default();
        users.retain(|u, _| !u.is_empty());
        if users.len() > USERS_PER_EXE {
            let mut v: Vec<(String, (i64, i64, u32))> = users.into_iter().collect();
            v.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then_with(|| a.0.cmp(&b.0)));
            v.truncate(USERS_PER_EXE);
            users = v.into_iter().collect();
        }
        self.make_room(&Self::key(host, exe));
        self.learned.insert(Self::key(host, exe), users);
    }

    /// Entries learned since the last call, as (store key, users), for persisting.
    pub fn take_dirty(&mut self) -> Vec<(String, LearnedUsers)> {
        let mut out: Vec<(String, LearnedUsers)> = self
            .dirty
            .drain()
            .filter_map(|k| {
                let m = self.learned.get(&k)?;
                let (host, exe) = k.split_once('\u{1f}')?;
                Some((Self::store_key(host, exe), m.clone()))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Forgets the executable seen longest ago when `k` would exceed the bound.
    fn make_room(&mut self, k: &str) {
        if !self.learned.contains_key(k) && self.learned.len() >= self.max_exes.max(1) {
            if let Some(old) = self
                .learned
                .iter()
                .min_by_key(|(_, m)| m.values().map(|v| v.1).max().unwrap_or(0))
                .map(|(k, _)| k.clone())
            {
                self.learned.remove(&old);
                self.dirty.remove(&old);
            }
        }
    }

    /// Learns that `exe` on `host` ran as `user` at `now`.
    pub fn observe(&mut self, host: &str, exe: &str, user: &str, now: Ts) {
        let k = Self::key(host, exe);
        self.make_room(&k);
        self.dirty.insert(k.clone());
        let m = self.learned.entry(k).or_default();
        if let Some(e) = m.get_mut(user) {
            e.1 = now.0;
            e.2 = e.2.saturating_add(1);
        } else if m.len() < USERS_PER_EXE {
            m.insert(user.to_owned(), (now.0, now.0, 1));
        }
    }

    /// The configured verdict for `exe` (`[edr.expected_users]`, by path or file name):
    /// `None` when the configuration does not name it, else why `user` is unexpected
    /// (`Some(None)`: expected).
    pub fn configured(&self, exe: &str, user: &str) -> Option<Option<String>> {
        let base = base_name(exe);
        let ok = self.expected.get(exe).or_else(|| self.expected.get(base))?;
        Some(
            (!ok.contains(user))
                .then(|| format!("{base} runs as {user}, expected {}", join_sorted(ok))),
        )
    }

    /// Why `user` is unexpected for `exe` on `host` at `now`, or `None`: not in the
    /// configured list for the executable; or, without one, a service account running a
    /// network tool, or a user other than those the executable has established.
    pub fn is_unexpected_user(
        &self,
        host: &str,
        exe: &str,
        user: &str,
        _now: Ts,
    ) -> Option<String> {
        if let Some(verdict) = self.configured(exe, user) {
            return verdict;
        }
        let base = base_name(exe);
        if SERVICE_USERS.contains(&user) && NETWORK_TOOLS.contains(&base) {
            return Some(format!("{base} runs as service account {user}"));
        }
        let m = self.learned.get(&Self::key(host, exe))?;
        if m.contains_key(user) {
            return None;
        }
        let habit: Vec<&String> = m
            .iter()
            .filter(|(u, v)| {
                u.as_str() != user && v.2 >= USER_HABIT_COUNT && v.1 - v.0 >= USER_HABIT_SPAN.0
            })
            .map(|(u, _)| u)
            .collect();
        if habit.is_empty() {
            return None;
        }
        let mut h: Vec<&str> = habit.iter().map(|s| s.as_str()).collect();
        h.sort_unstable();
        Some(format!(
            "{base} runs as {user}, normally as {}",
            h.join(", ")
        ))
    }
}

fn join_sorted(s: &HashSet<String>) -> String {
    let mut v: Vec<&str> = s.iter().map(String::as_str).collect();
    v.sort_unstable();
    if v.is_empty() {
        "nobody".into()
    } else {
        v.join(", ")
    }
}

/// Parses `[edr.expected_users]`: executable (path or file name) = [users].
pub fn expected_users_from(
    edr: &toml::Table,
) -> Result<HashMap<String, Vec<String>>, crate::config::ConfigError> {
    let mut out = HashMap::new();
    let Some(v) = edr.get("expected_users") else {
        return Ok(out);
    };
    let bad = |m: &str| crate::config::ConfigError(format!("edr.expected_users: {m}"));
    let t = v.as_table().ok_or_else(|| bad("must be a table"))?;
    for (exe, users) in t {
        let arr = users
            .as_array()
            .ok_or_else(|| bad(&format!("`{exe}` must be an array of user names")))?;
        let mut us = Vec::new();
        for u in arr {
            us.push(
                u.as_str()
                    .ok_or_else(|| bad(&format!("`{exe}`: user names are strings")))?
                    .to_owned(),
            );
        }
        out.insert(exe.clone(), us);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrichment::{LaunchdInfo, ProcessInfo};

    fn proc(name: &str, exe: &str) -> Attribution {
        Attribution {
            process: Some(ProcessInfo {
                name: Some(name.into()),
                executable: Some(exe.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn browsers_and_helpers() {
        assert!(is_browser(&proc(
            "Google Chrome Helper (Renderer)",
            "/Applications/Google Chrome.app/Contents/Frameworks/x/Google Chrome Helper (Renderer)"
        )));
        assert!(is_browser(&proc("firefox", "/usr/lib/firefox/firefox")));
        assert!(is_browser(&proc(
            "Safari",
            "/Applications/Safari.app/Contents/MacOS/Safari"
        )));
        assert!(!is_browser(&proc(
            "Spotify",
            "/Applications/Spotify.app/Contents/MacOS/Spotify"
        )));
        assert!(!is_browser(&proc("Notion Helper", "/x/Notion Helper")));
        assert_eq!(browser_discount(None), 0.0);
    }

    #[test]
    fn launch_agent_raises_weight() {
        let mut a = proc(
            "kited",
            "/Users/eli/Library/Application Support/Helix/kited",
        );
        assert_eq!(origin_weight(&a), 0.0);
        a.launchd = Some(LaunchdInfo {
            label: Some("com.helix.kite".into()),
            plist: Some("/Users/eli/Library/LaunchAgents/com.helix.kite.plist".into()),
            kind: Some("agent".into()),
        });
        assert!(origin_weight(&a) > 0.1);
        assert_eq!(
            origin_reasons(&a),
            vec!["started by LaunchAgent com.helix.kite"]
        );
    }

    #[test]
    fn unexpected_users() {
        let mut ex = HashMap::new();
        ex.insert("backupd".to_string(), vec!["root".to_string()]);
        let mut b = UserBaseline::new(ex, 100);
        let t = |s: i64| Ts::from_secs(s);
        assert!(b
            .is_unexpected_user("h", "/usr/sbin/backupd", "ann", t(0))
            .is_some());
        assert!(b
            .is_unexpected_user("h", "/usr/sbin/backupd", "root", t(0))
            .is_none());
        assert!(b
            .is_unexpected_user("h", "/usr/bin/curl", "_www", t(0))
            .is_some());
        // Learned: a new tool with no habit yet is never unexpected.
        assert!(b
            .is_unexpected_user("h", "/opt/x/agent", "ann", t(0))
            .is_none());
        for s in 0..10 {
            b.observe("h", "/opt/x/agent", "ann", t(s * 120));
        }
        assert!(b
            .is_unexpected_user("h", "/opt/x/agent", "ann", t(2000))
            .is_none());
        let why = b.is_unexpected_user("h", "/opt/x/agent", "root", t(2000));
        assert_eq!(why.as_deref(), Some("agent runs as root, normally as ann"));
        // Other hosts have their own habits.
        assert!(b
            .is_unexpected_user("h2", "/opt/x/agent", "root", t(2000))
            .is_none());
    }
}
