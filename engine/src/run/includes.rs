//! `.worktreeinclude`: ignored files of the user's tree (gitignore syntax, e.g. `.env`,
//! `target/`, `node_modules/`) copied into a worktree, so a step starts with them.
//!
//! Copies are reflinks where the filesystem has them (btrfs and xfs `FICLONE`, APFS
//! `clonefile`), so even a large `target/` costs next to nothing; plain copies elsewhere. They
//! keep the source's modification time and permissions, because build tools decide what is
//! fresh by mtime: a copied `target/` with its mtimes kept rebuilds only what changed. A file
//! already in the worktree with the same size and mtime is left alone, and one with the same
//! content only gets its mtime back, so copying into a reused worktree writes only what the
//! user changed.

use std::path::Path;

/// The ignored files of the repository that its `.worktreeinclude` (gitignore syntax) names,
/// e.g. `.env`, relative to its root. Tracked files are never among them: a worktree already
/// has them from its base.
fn included_files(root: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let list = root.join(".worktreeinclude");
    if !list.is_file() {
        return Ok(Vec::new());
    }
    let mut builder = ignore::gitignore::GitignoreBuilder::new(root);
    if let Some(e) = builder.add(&list) {
        return Err(std::io::Error::other(format!("{}: {e}", list.display())));
    }
    let patterns = builder
        .build()
        .map_err(|e| std::io::Error::other(format!("{}: {e}", list.display())))?;
    let mut files = Vec::new();
    for relative in crate::git::ignored_files(root).map_err(std::io::Error::other)? {
        if patterns
            .matched_path_or_any_parents(&relative, false)
            .is_ignore()
        {
            files.push(relative);
        }
    }
    files.sort();
    Ok(files)
}

/// Each `.worktreeinclude` file (see [`included_files`]) with a digest of its content (of its
/// target, for a symlink), for the cache keys of the steps that can see it.
pub(crate) fn included_digests(root: &Path) -> Result<Vec<(String, String)>, String> {
    let mut digests = Vec::new();
    for relative in included_files(root).map_err(|e| e.to_string())? {
        let path = root.join(&relative);
        let meta = fs_err::symlink_metadata(&path).map_err(|e| e.to_string())?;
        let digest = if meta.file_type().is_symlink() {
            let target = fs_err::read_link(&path).map_err(|e| e.to_string())?;
            blake3::hash(target.as_os_str().as_encoded_bytes()).to_hex()
        } else if meta.is_file() {
            blake3::hash(&fs_err::read(&path).map_err(|e| e.to_string())?).to_hex()
        } else {
            continue;
        };
        digests.push((relative.to_string_lossy().into_owned(), digest.to_string()));
    }
    Ok(digests)
}

/// Copies the included files from `root` into `worktree`; returns how many were written.
pub(crate) fn copy(root: &Path, worktree: &Path) -> std::io::Result<usize> {
    let mut written = 0;
    for relative in included_files(root)? {
        if copy_one(&root.join(&relative), &worktree.join(&relative))? {
            written += 1;
        }
    }
    Ok(written)
}

/// Copies one file (or symlink) unless `to` already is the same; returns whether it wrote.
fn copy_one(from: &Path, to: &Path) -> std::io::Result<bool> {
    let meta = fs_err::symlink_metadata(from)?;
    if let Some(parent) = to.parent() {
        fs_err::create_dir_all(parent)?;
    }
    let existing = fs_err::symlink_metadata(to).ok();
    if meta.file_type().is_symlink() {
        let target = fs_err::read_link(from)?;
        if existing.is_some() {
            if fs_err::read_link(to).ok().as_ref() == Some(&target) {
                return Ok(false);
            }
            remove(to)?;
        }
        std::os::unix::fs::symlink(target, to)?;
        return Ok(true);
    }
    if !meta.is_file() {
        return Ok(false);
    }
    let mtime = meta.modified()?;
    if let Some(old) = &existing
        && old.is_file()
        && old.len() == meta.len()
    {
        if old.modified().ok() == Some(mtime) {
            return Ok(false);
        }
        if fs_err::read(from)? == fs_err::read(to)? {
            set_mtime(to, mtime)?;
            return Ok(false);
        }
    }
    if existing.is_some() {
        remove(to)?;
    }
    reflink_copy::reflink_or_copy(from, to)?;
    fs_err::set_permissions(to, meta.permissions())?;
    set_mtime(to, mtime)?;
    Ok(true)
}

fn set_mtime(path: &Path, mtime: std::time::SystemTime) -> std::io::Result<()> {
    std::fs::File::options()
        .write(true)
        .open(path)?
        .set_modified(mtime)
}

fn remove(path: &Path) -> std::io::Result<()> {
    match fs_err::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs_err::remove_dir_all(path),
        Ok(_) => fs_err::remove_file(path),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::copy_one;

    #[test]
    fn a_copy_keeps_mtime_and_mode_and_an_unchanged_file_is_not_written_again() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("sub/to"));
        fs_err::write(&from, "cache").unwrap();
        fs_err::set_permissions(&from, std::fs::Permissions::from_mode(0o755)).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        super::set_mtime(&from, old).unwrap();
        assert!(copy_one(&from, &to).unwrap());
        let meta = fs_err::metadata(&to).unwrap();
        assert_eq!(meta.modified().unwrap(), old);
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        assert_eq!(fs_err::read_to_string(&to).unwrap(), "cache");
        // Same size and mtime: left alone.
        assert!(!copy_one(&from, &to).unwrap());
        // Same content, another mtime: only the mtime comes back.
        super::set_mtime(&to, std::time::SystemTime::now()).unwrap();
        assert!(!copy_one(&from, &to).unwrap());
        assert_eq!(fs_err::metadata(&to).unwrap().modified().unwrap(), old);
        // Changed by the user: written again.
        fs_err::write(&from, "CACHE").unwrap();
        assert!(copy_one(&from, &to).unwrap());
        assert_eq!(fs_err::read_to_string(&to).unwrap(), "CACHE");
    }
}
