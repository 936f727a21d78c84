//! Where a repository's sidecar listens: one socket per git common dir, in a private runtime directory
//! named after the protocol version so that incompatible clients and sidecars never meet (DESIGN.md §4).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::PROTOCOL_VERSION;

/// The files of one repository's sidecar in the runtime directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SidecarPaths {
    /// The directory holding them (mode 0700).
    pub dir: PathBuf,
    /// The Unix socket (mode 0600).
    pub socket: PathBuf,
    /// Holds the running sidecar's pid; its lock, not its existence, says a sidecar is alive.
    pub pidfile: PathBuf,
    /// Serializes starts, so racing clients start exactly one sidecar.
    pub startup_lock: PathBuf,
}

impl SidecarPaths {
    /// The paths for the repository whose canonical git common dir is `common_dir`.
    pub fn for_common_dir(common_dir: &Path) -> SidecarPaths {
        let dir = runtime_dir().join(format!("v{PROTOCOL_VERSION}"));
        let key = repo_key(common_dir);
        SidecarPaths {
            socket: dir.join(format!("{key}.sock")),
            pidfile: dir.join(format!("{key}.pid")),
            startup_lock: dir.join(format!("{key}.startup.lock")),
            dir,
        }
    }
}

/// `$XDG_RUNTIME_DIR/lanes`, else `/tmp/lanes-<uid>`.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("lanes"),
        _ => std::env::temp_dir().join(format!("lanes-{}", current_uid())),
    }
}

/// The uid of this process, read without libc: `/proc/self` belongs to it.
pub fn current_uid() -> u32 {
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0)
}

/// A short stable key for a repository: FNV-1a of its canonical git common dir, in hex. Short enough to keep
/// socket paths well under the 108-byte limit of `sun_path`.
pub fn repo_key(common_dir: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in common_dir.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_stable_and_distinct() {
        let a = repo_key(Path::new("/work/repo/.git"));
        assert_eq!(a, repo_key(Path::new("/work/repo/.git")));
        assert_ne!(a, repo_key(Path::new("/work/other/.git")));
        assert_eq!(a.len(), 16);
    }
}
