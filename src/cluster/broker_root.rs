//! Broker roots: a folder holding another system (the project's Debian 13 root in
//! `.cache/roots/debian13`, built by `make brokers-debian13`, or any root the user points to)
//! whose broker binaries a launcher runs through chroot instead of the host's.
//!
//! A process started in a root ([`BrokerRootDir::confine`]) is a plain host process (a host pid,
//! signalled, paused and sampled in /proc like any other), set up between fork and exec:
//! 1. a private mount namespace of its own (`unshare(CLONE_NEWNS)`, then every mount private, so
//!    nothing it mounts propagates to the host's namespace);
//! 2. `/proc` mounted in the root, and each bound folder (the cluster folder) bind-mounted at the
//!    same path inside the root, so configuration, data and logs keep their host paths;
//! 3. `chroot` into the root and `chdir` into the working folder; then exec of the broker.
//!
//! The mounts belong to the namespace, which ends with the last process in it: when the broker
//! (and whatever it started) exits or is killed, whoever kills it (the launcher, the run's
//! watchdog, the leftover cleanup), nothing stays mounted. Nothing is ever mounted in the host's
//! own namespace, so a Ctrl-C or a SIGKILL of the harness leaves no mount behind either.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::ClusterError;
use crate::scenario::{BrokerRoot, KnownRoot};

/// The file `tools/broker-root.sh` writes into a root it finished building (package versions).
pub const READY_MARKER: &str = ".brokerbench-root";
/// Folders searched, inside a root, for a binary given by name.
const ROOT_PATH: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];
/// Symbolic links followed while resolving one path inside a root (as the kernel's limit).
const MAX_LINKS: usize = 40;

/// Where the project keeps its built roots: `$BROKERBENCH_ROOTS`, else `.cache/roots` in the
/// source tree brokerbench was built from (where `tools/broker-root.sh` builds them).
pub fn roots_dir() -> PathBuf {
    match std::env::var_os("BROKERBENCH_ROOTS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".cache")
            .join("roots"),
    }
}

/// The folder of a project root (built or not).
pub fn known_root_dir(root: KnownRoot) -> PathBuf {
    roots_dir().join(root.name())
}

/// What builds a project root.
pub fn build_command(root: KnownRoot) -> String {
    format!("make brokers-{}", root.name())
}

/// The folder a scenario's `broker_root` names (not checked).
pub fn root_dir(root: &BrokerRoot) -> PathBuf {
    match root {
        BrokerRoot::Known(k) => known_root_dir(*k),
        BrokerRoot::Path(p) => p.clone(),
    }
}

/// Check that `root` is usable and holds every binary in `binaries` (paths inside the root).
/// The error says what is missing and how to get it.
pub fn check_root(root: &BrokerRoot, binaries: &[&str]) -> Result<BrokerRootDir, String> {
    let dir = root_dir(root);
    let fix = match root {
        BrokerRoot::Known(k) => format!("run `{}`", build_command(*k)),
        BrokerRoot::Path(_) => {
            "point broker_root at a root with the brokers installed, or use \"debian13\" (built by `make brokers-debian13`)".to_string()
        }
    };
    if let BrokerRoot::Known(k) = root {
        if !dir.join(READY_MARKER).is_file() {
            return Err(format!(
                "the {} broker root is not built ({} has no {READY_MARKER}); {fix}",
                k.name(),
                dir.display()
            ));
        }
    }
    let root_dir = BrokerRootDir::new(&dir).map_err(|e| format!("{e}; {fix}"))?;
    let missing: Vec<&str> = binaries
        .iter()
        .copied()
        .filter(|b| root_dir.find_binary(b).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} has no {}; {fix}",
            dir.display(),
            missing.join(", ")
        ));
    }
    Ok(root_dir)
}

/// The root a launcher's configuration names (None: the host), opened; the error says how to
/// get it.
pub fn open_root(dir: Option<&Path>) -> Result<Option<BrokerRootDir>, ClusterError> {
    let Some(dir) = dir else { return Ok(None) };
    BrokerRootDir::new(dir)
        .map(Some)
        .map_err(|e| ClusterError::MissingBinary {
            binary: format!("the broker root {}", dir.display()),
            fix: format!("{e}; {}", root_fix(dir)),
        })
}

/// A binary missing from a root, with the fix.
pub fn missing_in_root(root: &BrokerRootDir, binary: &str) -> ClusterError {
    ClusterError::MissingBinary {
        binary: format!("{binary} in the broker root {}", root.dir().display()),
        fix: root_fix(root.dir()),
    }
}

/// How to get a root at `dir` with the brokers in it.
fn root_fix(dir: &Path) -> String {
    let same = |a: &Path, b: &Path| {
        a == b
            || std::fs::canonicalize(a)
                .ok()
                .zip(std::fs::canonicalize(b).ok())
                .is_some_and(|(a, b)| a == b)
    };
    match KnownRoot::ALL.into_iter().find(|k| same(dir, &known_root_dir(*k))) {
        Some(k) => format!("run `{}`", build_command(k)),
        None => "install the brokers in that root, or use broker_root = \"debian13\" (`make brokers-debian13`)".to_string(),
    }
}

/// A root folder on this machine (absolute, canonical).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRootDir {
    dir: PathBuf,
}

impl BrokerRootDir {
    /// `dir` as a root: it must be a folder with `/proc` in it (an empty mount point).
    pub fn new(dir: &Path) -> Result<Self, ClusterError> {
        let dir = std::fs::canonicalize(dir).map_err(|source| ClusterError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        if dir == Path::new("/") {
            return Err(ClusterError::State {
                dir,
                message: "/ is the host itself, not a broker root".to_string(),
            });
        }
        if !dir.join("proc").is_dir() {
            return Err(ClusterError::State {
                dir,
                message: "not a system root: it has no proc folder".to_string(),
            });
        }
        Ok(BrokerRootDir { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The host path of `inside` (a path as the root's processes see it), with symbolic links
    /// resolved the way they resolve inside the root (an absolute target starts again at the
    /// root, `..` stops at it). None if it does not exist.
    pub fn resolve(&self, inside: &Path) -> Option<PathBuf> {
        let mut pending: Vec<std::ffi::OsString> = components(inside);
        pending.reverse();
        let mut at: Vec<std::ffi::OsString> = Vec::new();
        let mut links = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                at.pop();
                continue;
            }
            let mut host = self.dir.clone();
            host.extend(&at);
            host.push(&part);
            let meta = std::fs::symlink_metadata(&host).ok()?;
            if meta.file_type().is_symlink() {
                links += 1;
                if links > MAX_LINKS {
                    return None;
                }
                let target = std::fs::read_link(&host).ok()?;
                if target.is_absolute() {
                    at.clear();
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            } else {
                at.push(part);
            }
        }
        let mut host = self.dir.clone();
        host.extend(&at);
        Some(host)
    }

    /// The path inside the root of an executable file named `name` (a path inside the root, or
    /// a name looked up in the usual bin folders).
    pub fn find_binary(&self, name: &str) -> Option<PathBuf> {
        let candidates: Vec<PathBuf> = if name.starts_with('/') {
            vec![PathBuf::from(name)]
        } else {
            ROOT_PATH.iter().map(|d| Path::new(d).join(name)).collect()
        };
        candidates.into_iter().find(|c| {
            self.resolve(c)
                .and_then(|h| std::fs::metadata(h).ok())
                .is_some_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.is_file() && m.permissions().mode() & 0o111 != 0
                })
        })
    }

    /// Make `cmd` run in this root (see the module doc): a private mount namespace with /proc and
    /// each of `binds` (absolute host folders) mounted at the same path inside the root, then
    /// chroot and chdir into `workdir`. The program must be a path inside the root.
    pub fn confine(
        &self,
        cmd: &mut std::process::Command,
        binds: &[&Path],
        workdir: &Path,
    ) -> Result<(), ClusterError> {
        use std::os::unix::process::CommandExt;
        let setup = self.setup(binds, workdir)?;
        // SAFETY: the closure only makes system calls (unshare, mount, chroot, chdir) on
        // C strings prepared before the fork; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || setup.enter());
        }
        Ok(())
    }

    /// `confine` for a tokio command.
    pub fn confine_tokio(
        &self,
        cmd: &mut tokio::process::Command,
        binds: &[&Path],
        workdir: &Path,
    ) -> Result<(), ClusterError> {
        self.confine(cmd.as_std_mut(), binds, workdir)
    }

    /// Create the mount point of every bind inside the root and prepare the C strings.
    fn setup(&self, binds: &[&Path], workdir: &Path) -> Result<RootSetup, ClusterError> {
        let mut mounts = Vec::new();
        for src in binds {
            let target = self.mount_point(src)?;
            mounts.push((cstring(src)?, cstring(&target)?));
        }
        Ok(RootSetup {
            root: cstring(&self.dir)?,
            proc_dir: cstring(&self.dir.join("proc"))?,
            mounts,
            workdir: cstring(workdir)?,
        })
    }

    /// `<root>/<host folder>`, created if missing; refused if a part of it inside the root is a
    /// symbolic link (the mount would land elsewhere than where the root's processes look).
    fn mount_point(&self, host_dir: &Path) -> Result<PathBuf, ClusterError> {
        if !host_dir.is_absolute() {
            return Err(ClusterError::State {
                dir: host_dir.to_path_buf(),
                message: "a folder mounted into a broker root must be an absolute path".to_string(),
            });
        }
        let mut target = self.dir.clone();
        for part in components(host_dir) {
            target.push(part);
            match std::fs::symlink_metadata(&target) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(ClusterError::State {
                        dir: host_dir.to_path_buf(),
                        message: format!(
                            "cannot mount this folder into the broker root {}: {} is a symbolic link there; use a run folder elsewhere (e.g. under /tmp or the project)",
                            self.dir.display(),
                            target.display()
                        ),
                    })
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir(&target).map_err(|source| ClusterError::Io {
                        path: target.clone(),
                        source,
                    })?;
                }
                Err(source) => {
                    return Err(ClusterError::Io {
                        path: target,
                        source,
                    })
                }
            }
        }
        Ok(target)
    }
}

/// The normal parts of a path (no root, no `.`), `..` kept.
fn components(p: &Path) -> Vec<std::ffi::OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

fn cstring(p: &Path) -> Result<CString, ClusterError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| ClusterError::State {
        dir: p.to_path_buf(),
        message: "the path contains a NUL byte".to_string(),
    })
}

/// What the child does between fork and exec, prepared before the fork.
struct RootSetup {
    root: CString,
    proc_dir: CString,
    /// (host folder, mount point inside the root)
    mounts: Vec<(CString, CString)>,
    workdir: CString,
}

impl RootSetup {
    /// Runs in the forked child: system calls only.
    fn enter(&self) -> std::io::Result<()> {
        fn check(rc: libc::c_int) -> std::io::Result<()> {
            if rc == -1 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
        let null = std::ptr::null::<libc::c_char>();
        // SAFETY: plain system calls on NUL-terminated strings that outlive the calls.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                c"proc".as_ptr(),
                self.proc_dir.as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ))?;
            for (src, target) in &self.mounts {
                check(libc::mount(
                    src.as_ptr(),
                    target.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
            }
            check(libc::chroot(self.root.as_ptr()))?;
            check(libc::chdir(self.workdir.as_ptr()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_root() -> (tempfile::TempDir, BrokerRootDir) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let r = tmp.path();
        for d in ["proc", "usr/bin", "usr/lib/erlang/bin", "etc"] {
            std::fs::create_dir_all(r.join(d)).expect("mkdir");
        }
        std::os::unix::fs::symlink("usr/bin", r.join("bin")).expect("symlink");
        let epmd = r.join("usr/lib/erlang/bin/epmd");
        std::fs::write(&epmd, "#!/bin/sh\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&epmd, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // An absolute link: it must resolve inside the root, not on the host.
        std::os::unix::fs::symlink("/usr/lib/erlang/bin/epmd", r.join("usr/bin/epmd"))
            .expect("symlink");
        std::os::unix::fs::symlink("../../etc", r.join("usr/bin/up")).expect("symlink");
        std::fs::write(r.join("etc/hosts"), "127.0.0.1 localhost\n").expect("write");
        let root = BrokerRootDir::new(r).expect("root");
        (tmp, root)
    }

    #[test]
    fn paths_resolve_inside_the_root() {
        let (_tmp, root) = fake_root();
        let d = root.dir().to_path_buf();
        assert_eq!(
            root.resolve(Path::new("/bin/epmd")),
            Some(d.join("usr/lib/erlang/bin/epmd"))
        );
        // `..` stops at the root.
        assert_eq!(
            root.resolve(Path::new("/usr/bin/up/../../../../etc/hosts")),
            Some(d.join("etc/hosts"))
        );
        assert_eq!(root.resolve(Path::new("/usr/bin/nothing")), None);
        assert_eq!(
            root.find_binary("epmd"),
            Some(PathBuf::from("/usr/bin/epmd"))
        );
        assert_eq!(
            root.find_binary("/bin/epmd"),
            Some(PathBuf::from("/bin/epmd"))
        );
        assert_eq!(root.find_binary("erl"), None);
        assert_eq!(root.find_binary("/etc/hosts"), None, "not executable");
    }

    #[test]
    fn a_folder_that_is_not_a_root_is_refused() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let e = BrokerRootDir::new(tmp.path()).expect_err("no proc");
        assert!(e.to_string().contains("no proc folder"), "{e}");
        assert!(BrokerRootDir::new(Path::new("/")).is_err());
        let missing = check_root(
            &BrokerRoot::Path(tmp.path().join("nope")),
            &["/usr/bin/redis-server"],
        )
        .expect_err("missing folder");
        assert!(missing.contains("point broker_root at a root"), "{missing}");
    }

    #[test]
    fn missing_binaries_are_named() {
        let (_tmp, root) = fake_root();
        let e = check_root(
            &BrokerRoot::Path(root.dir().to_path_buf()),
            &["epmd", "redis-server", "/usr/bin/redis-cli"],
        )
        .expect_err("missing");
        assert!(
            e.contains("has no redis-server, /usr/bin/redis-cli;"),
            "{e}"
        );
        assert!(check_root(&BrokerRoot::Path(root.dir().to_path_buf()), &["epmd"]).is_ok());
    }

    #[test]
    fn a_symlink_on_the_way_to_a_mount_point_is_refused() {
        let (_tmp, root) = fake_root();
        let e = root
            .mount_point(Path::new("/bin/x"))
            .expect_err("symlink on the way");
        assert!(e.to_string().contains("is a symbolic link there"), "{e}");
        let ok = root
            .mount_point(Path::new("/srv/run/one"))
            .expect("created");
        assert!(ok.is_dir());
        assert_eq!(ok, root.dir().join("srv/run/one"));
    }
}
