//! Where a repository's sidecar listens: one socket per git common dir, in a private runtime directory
//! named after the protocol version so that incompatible clients and sidecars never meet (DESIGN.md §4).

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
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

/// Checks that `dir` is a real directory (not a symlink) owned by this user that nobody else can write to.
/// The runtime directory under `/tmp` can be made by anyone before we make it; a socket in a directory an
/// attacker controls would let them pose as the sidecar (answer hooks, read prompts), so such a directory
/// is refused, never used.
pub fn check_private(dir: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    let uid = current_uid();
    let problem = if !meta.file_type().is_dir() {
        Some("is not a directory (a symlink?)".to_owned())
    } else if meta.uid() != uid {
        Some(format!("belongs to uid {}, not to you (uid {uid})", meta.uid()))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!("can be written by others (mode {:o})", meta.mode() & 0o777))
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to use {}: it {problem}, so another user could pose as your sidecar; remove it (or \
                 set XDG_RUNTIME_DIR to a directory of your own) and try again",
                dir.display()
            ),
        )),
    }
}

/// Checks a sidecar socket before anything connects to it: its directory and that directory's parent are
/// private to this user ([`check_private`]) and the socket itself is ours. Inside a directory only we can
/// write, the socket's owner is the uid of whoever bound it: the server-side check SO_PEERCRED would give,
/// without the unstable or unsafe API std offers for it.
pub fn check_socket(socket: &Path) -> io::Result<()> {
    let dir = socket.parent().unwrap_or(Path::new("/"));
    if let Some(parent) = dir.parent() {
        check_private(parent)?;
    }
    check_private(dir)?;
    let meta = std::fs::symlink_metadata(socket)?;
    if meta.uid() != current_uid() || !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to connect to {}: it is not a socket of yours (uid {}); remove it and try again",
                socket.display(),
                meta.uid()
            ),
        ));
    }
    Ok(())
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
