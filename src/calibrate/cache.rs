//! The ceiling of one binary on one host, measured once and kept: a file named after the host
//! and the binary (its path, size and modification time), so a rebuilt binary or another
//! machine measures again. It lives in `$XDG_CACHE_HOME/brokerbench` or
//! `~/.cache/brokerbench`, else in the results root's `.cache`.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{measure, CalibrateError, CalibrateOptions, Ceiling};

/// What a cached ceiling belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CacheKey {
    pub hostname: String,
    pub binary: PathBuf,
    pub binary_bytes: u64,
    /// Modification time of the binary, nanoseconds since the epoch.
    pub binary_mtime_ns: u128,
    /// The calibration's workload, in words (a change of the defaults measures again).
    pub workload: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    key: CacheKey,
    ceiling: Ceiling,
}

impl CacheKey {
    /// The key of `binary` on this host for the default calibration.
    pub fn of(binary: &Path) -> Result<Self, CalibrateError> {
        let m = std::fs::metadata(binary).map_err(|source| CalibrateError::Cache {
            path: binary.to_path_buf(),
            source,
        })?;
        let mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Ok(CacheKey {
            hostname: crate::report::meta::HostInfo::read().hostname,
            binary: binary.to_path_buf(),
            binary_bytes: m.len(),
            binary_mtime_ns: mtime,
            workload: CalibrateOptions::default().describe(),
        })
    }

    /// The cache file's name: the host and a hash of the whole key.
    pub fn file_name(&self) -> String {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        let host: String = self
            .hostname
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("ceiling-{host}-{:016x}.json", h.finish())
    }
}

/// Where cached ceilings go.
pub fn cache_dir(results_root: &Path) -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .map(|d| d.join("brokerbench"))
        .unwrap_or_else(|| results_root.join(".cache"))
}

/// The ceiling cached for `key` in `dir`, if there is one.
pub fn load(dir: &Path, key: &CacheKey) -> Option<Ceiling> {
    let text = std::fs::read_to_string(dir.join(key.file_name())).ok()?;
    let entry: Entry = serde_json::from_str(&text).ok()?;
    (entry.key == *key).then_some(entry.ceiling)
}

/// Keep `ceiling` for `key` in `dir`; returns the file.
pub fn store(dir: &Path, key: &CacheKey, ceiling: &Ceiling) -> Result<PathBuf, CalibrateError> {
    let path = dir.join(key.file_name());
    let err = |source| CalibrateError::Cache {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let entry = Entry {
        key: key.clone(),
        ceiling: ceiling.clone(),
    };
    let text = serde_json::to_string_pretty(&entry).map_err(|e| err(std::io::Error::other(e)))?;
    // Written aside and renamed: a reader never sees half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    forget_older(dir, key);
    Ok(path)
}

/// Remove the ceilings cached for earlier builds of the same binary on this host (best effort):
/// one file per binary stays.
fn forget_older(dir: &Path, key: &CacheKey) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let ours = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("ceiling-"));
        let Some(old) = ours
            .then(|| std::fs::read_to_string(&path).ok())
            .flatten()
            .and_then(|t| serde_json::from_str::<Entry>(&t).ok())
        else {
            continue;
        };
        if old.key != *key && old.key.binary == key.binary && old.key.hostname == key.hostname {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The ceiling of `binary` on this host: from the cache, or measured now (the default
/// calibration, about 3 s) and cached. Returns it and whether it was measured now.
pub async fn ceiling(
    binary: &Path,
    results_root: &Path,
    cancel: &mut watch::Receiver<bool>,
) -> Result<(Ceiling, bool), CalibrateError> {
    let key = CacheKey::of(binary)?;
    let dir = cache_dir(results_root);
    if let Some(c) = load(&dir, &key) {
        return Ok((c, false));
    }
    let c = measure(&CalibrateOptions::default(), &mut [], cancel).await?;
    store(&dir, &key, &c)?;
    Ok((c, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ceiling() -> Ceiling {
        Ceiling {
            msgs_per_s: 1e6,
            sent_per_s: 1e6,
            cpu_s_per_million: 1.5,
            cpu_cores: 1.5,
            messages: 3_000_000,
            seconds: 3.2,
            ledger_bytes: 1 << 20,
            ledger_bytes_per_message: 0.3,
            rss_peak_bytes: 50 << 20,
            rss_end_bytes: 40 << 20,
            workload: "w".into(),
            measured_utc: "t".into(),
            hostname: "h".into(),
            cores: 2,
        }
    }

    #[test]
    fn a_ceiling_is_found_again_only_by_its_own_key() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let exe = tmp.path().join("bin");
        std::fs::write(&exe, b"binary").expect("write");
        let key = CacheKey::of(&exe).expect("key");
        assert_eq!(load(tmp.path(), &key), None);
        let path = store(tmp.path(), &key, &ceiling()).expect("store");
        assert!(path.exists());
        assert_eq!(load(tmp.path(), &key), Some(ceiling()));
        // A rebuilt binary (another size) or another host does not find it.
        let rebuilt = CacheKey {
            binary_bytes: key.binary_bytes + 1,
            ..key.clone()
        };
        assert_eq!(load(tmp.path(), &rebuilt), None);
        let elsewhere = CacheKey {
            hostname: "other".into(),
            ..key.clone()
        };
        assert_ne!(elsewhere.file_name(), key.file_name());
        assert_eq!(load(tmp.path(), &elsewhere), None);
        // A rebuilt binary's ceiling replaces the old one's.
        store(tmp.path(), &rebuilt, &ceiling()).expect("store");
        assert_eq!(load(tmp.path(), &key), None);
        assert_eq!(load(tmp.path(), &rebuilt), Some(ceiling()));
        // A file that is not a cache entry is ignored.
        std::fs::write(tmp.path().join(key.file_name()), "{").expect("write");
        assert_eq!(load(tmp.path(), &key), None);
    }
}
