//! The baseline store: one redb file in a state directory, keyed `host/<ip>` or
//! `platform/<name>`, values JSON (readable with `portent baseline show`). Shared by the
//! workers behind an `Arc`: redb runs read transactions concurrently and serialises
//! write transactions, and each host has a single writing worker.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{BaselineParams, HostBaseline};
use crate::time::Ts;

const BASELINES: TableDefinition<&str, &[u8]> = TableDefinition::new("baselines");
/// Baselines of other shapes (per-process profiles), JSON by key; kept out of
/// `baselines` so `list` never has to tell them apart.
const PROFILES: TableDefinition<&str, &[u8]> = TableDefinition::new("profiles");
/// File name inside the state directory.
pub const FILE_NAME: &str = "baseline.redb";

#[derive(Debug)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

fn err<'a, E: fmt::Display>(path: &'a Path, what: &str) -> impl FnOnce(E) -> StoreError + 'a {
    let what = what.to_string();
    move |e| StoreError(format!("{}: {what}: {e}", path.display()))
}

/// Whose baseline.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BaselineKey {
    Host(IpAddr),
    Platform(String),
}

impl fmt::Display for BaselineKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaselineKey::Host(ip) => write!(f, "host/{ip}"),
            BaselineKey::Platform(p) => write!(f, "platform/{p}"),
        }
    }
}

impl BaselineKey {
    pub fn parse(s: &str) -> Option<BaselineKey> {
        if let Some(ip) = s.strip_prefix("host/") {
            return ip.parse().ok().map(BaselineKey::Host);
        }
        s.strip_prefix("platform/")
            .filter(|p| !p.is_empty())
            .map(|p| BaselineKey::Platform(p.to_string()))
    }
}

pub struct Store {
    db: Database,
    path: PathBuf,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Store({})", self.path.display())
    }
}

impl Store {
    /// Opens (creating) `dir/baseline.redb`. Fails if another process has it open.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(err(dir, "cannot create state directory"))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(err(&path, "cannot open baseline store"))?;
        // Create the table so readers never see it missing.
        let tx = db.begin_write().map_err(err(&path, "write"))?;
        tx.open_table(BASELINES).map_err(err(&path, "table"))?;
        tx.open_table(PROFILES).map_err(err(&path, "table"))?;
        tx.commit().map_err(err(&path, "commit"))?;
        Ok(Store { db, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self, key: &BaselineKey) -> Result<Option<HostBaseline>, StoreError> {
        let p = &self.path;
        let tx = self.db.begin_read().map_err(err(p, "read"))?;
        let t = tx.open_table(BASELINES).map_err(err(p, "table"))?;
        let k = key.to_string();
        match t.get(k.as_str()).map_err(err(p, "read"))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(err(p, &format!("{k} is corrupt"))),
        }
    }

    /// A per-process profile (see [`Store::save_profiles`]).
    pub fn load_profile<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let p = &self.path;
        let tx = self.db.begin_read().map_err(err(p, "read"))?;
        let t = tx.open_table(PROFILES).map_err(err(p, "table"))?;
        match t.get(key).map_err(err(p, "read"))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(err(p, &format!("{key} is corrupt"))),
        }
    }

    /// Writes several per-process profiles in one transaction.
    pub fn save_profiles<'a, T, I>(&self, items: I) -> Result<usize, StoreError>
    where
        T: serde::Serialize + 'a,
        I: IntoIterator<Item = (&'a str, &'a T)>,
    {
        let p = &self.path;
        let tx = self.db.begin_write().map_err(err(p, "write"))?;
        let mut n = 0;
        {
            let mut t = tx.open_table(PROFILES).map_err(err(p, "table"))?;
            for (k, b) in items {
                let v = serde_json::to_vec(b).map_err(err(p, "encode"))?;
                t.insert(k, v.as_slice()).map_err(err(p, "write"))?;
                n += 1;
            }
        }
        tx.commit().map_err(err(p, "commit"))?;
        Ok(n)
    }

    /// Writes several baselines in one transaction (replacing what was stored).
    pub fn save_all<'a, I>(&self, items: I) -> Result<usize, StoreError>
    where
        I: IntoIterator<Item = (&'a BaselineKey, &'a HostBaseline)>,
    {
        let p = &self.path;
        let tx = self.db.begin_write().map_err(err(p, "write"))?;
        let mut n = 0;
        {
            let mut t = tx.open_table(BASELINES).map_err(err(p, "table"))?;
            for (k, b) in items {
                let v = serde_json::to_vec(b).map_err(err(p, "encode"))?;
                t.insert(k.to_string().as_str(), v.as_slice())
                    .map_err(err(p, "write"))?;
                n += 1;
            }
        }
        tx.commit().map_err(err(p, "commit"))?;
        Ok(n)
    }

    /// Merges a platform baseline into the stored one (several workers learn a platform).
    pub fn merge_platform(
        &self,
        platform: &str,
        b: &HostBaseline,
        params: &BaselineParams,
        now: Ts,
    ) -> Result<(), StoreError> {
        let key = BaselineKey::Platform(platform.to_string());
        let p = &self.path;
        // Read and write in one write transaction: writes are serialised, so no update
        // from another worker is lost in between.
        let tx = self.db.begin_write().map_err(err(p, "write"))?;
        {
            let mut t = tx.open_table(BASELINES).map_err(err(p, "table"))?;
            let k = key.to_string();
            let mut merged = match t.get(k.as_str()).map_err(err(p, "read"))? {
                Some(v) => serde_json::from_slice::<HostBaseline>(v.value()).unwrap_or_default(),
                None => HostBaseline::default(),
            };
            merged.merge_max(b, params, now);
            let v = serde_json::to_vec(&merged).map_err(err(p, "encode"))?;
            t.insert(k.as_str(), v.as_slice())
                .map_err(err(p, "write"))?;
        }
        tx.commit().map_err(err(p, "commit"))
    }

    /// Every stored baseline, in key order; corrupt entries are skipped.
    pub fn list(&self) -> Result<Vec<(BaselineKey, HostBaseline)>, StoreError> {
        let p = &self.path;
        let tx = self.db.begin_read().map_err(err(p, "read"))?;
        let t = tx.open_table(BASELINES).map_err(err(p, "table"))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(err(p, "read"))? {
            let (k, v) = item.map_err(err(p, "read"))?;
            let (Some(key), Ok(b)) = (
                BaselineKey::parse(k.value()),
                serde_json::from_slice::<HostBaseline>(v.value()),
            ) else {
                continue;
            };
            out.push((key, b));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Forgets one baseline, or all with `None`; returns how many were removed.
    pub fn reset(&self, key: Option<&BaselineKey>) -> Result<usize, StoreError> {
        let p = &self.path;
        let tx = self.db.begin_write().map_err(err(p, "write"))?;
        let n;
        {
            let mut t = tx.open_table(BASELINES).map_err(err(p, "table"))?;
            match key {
                Some(k) => {
                    n = usize::from(
                        t.remove(k.to_string().as_str())
                            .map_err(err(p, "write"))?
                            .is_some(),
                    );
                }
                None => {
                    let before = t.len().map_err(err(p, "read"))?;
                    t.retain(|_, _| false).map_err(err(p, "write"))?;
                    n = before as usize;
                }
            }
        }
        tx.commit().map_err(err(p, "commit"))?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learned(port: u16) -> HostBaseline {
        let p = BaselineParams::default();
        let mut b = HostBaseline::default();
        for s in [0, 1000, 2000, 4000] {
            b.observe(&p, Ts::from_secs(s), "1.2.3.4".parse().unwrap(), port, 6);
        }
        b
    }

    #[test]
    fn persists_across_reopen_and_resets() {
        let dir = tempfile::tempdir().unwrap();
        let h1 = BaselineKey::Host("10.0.0.1".parse().unwrap());
        let h2 = BaselineKey::Host("fd00::2".parse().unwrap());
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(s.load(&h1).unwrap(), None);
            let (b1, b2) = (learned(8443), learned(5222));
            assert_eq!(s.save_all([(&h1, &b1), (&h2, &b2)]).unwrap(), 2);
        }
        let s = Store::open(dir.path()).unwrap();
        let b = s.load(&h1).unwrap().unwrap();
        assert!(b.is_regular_port(&BaselineParams::default(), Ts::from_secs(4000), 8443, 6));
        let all = s.list().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0, h1);
        assert_eq!(s.reset(Some(&h1)).unwrap(), 1);
        assert_eq!(s.load(&h1).unwrap(), None);
        assert_eq!(s.reset(None).unwrap(), 1);
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn platform_merges_keep_the_stronger() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let p = BaselineParams::default();
        s.merge_platform("macos", &learned(5223), &p, Ts::from_secs(4000))
            .unwrap();
        s.merge_platform("macos", &learned(8443), &p, Ts::from_secs(4000))
            .unwrap();
        let b = s
            .load(&BaselineKey::Platform("macos".into()))
            .unwrap()
            .unwrap();
        assert!(b.is_regular_port(&p, Ts::from_secs(4000), 5223, 6));
        assert!(b.is_regular_port(&p, Ts::from_secs(4000), 8443, 6));
    }

    #[test]
    fn shared_between_threads() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        let hs: Vec<_> = (0..4u8)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let k = BaselineKey::Host(IpAddr::from([10, 0, 0, i]));
                    s.save_all([(&k, &learned(1000 + u16::from(i)))]).unwrap();
                    s.load(&k).unwrap().unwrap()
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(s.list().unwrap().len(), 4);
    }
}
