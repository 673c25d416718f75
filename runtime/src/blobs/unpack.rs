//! Unpacking an uploaded tar or tar.gz into a directory safely: entries
//! stay inside it (the tar crate refuses `..` and paths through links),
//! only files, directories and symbolic links are made, the entry count and
//! unpacked bytes are capped, and permissions are normalised (directories
//! 0755, files 0644 or 0755) so every sandbox user can read the tree.

use super::{BlobError, BlobLimits, Unpacked, head};
use std::fs::Permissions;
use std::io::{BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tar::EntryType;

/// Where the archive's entries go inside an unpacked tree.
pub(super) const CONTENT: &str = "content";
/// What it unpacked to, beside `CONTENT`.
pub(super) const SUMMARY: &str = "unpacked.json";

/// How an archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Tar,
    TarGz,
}

/// Whether the file at `path` is a gzip file or a tar (its first header
/// has the `ustar` magic, or is an old-style header with a valid checksum).
pub(super) fn kind(path: &Path) -> std::io::Result<Option<Kind>> {
    let start = head(path, 512)?;
    Ok(if start.starts_with(&[0x1f, 0x8b]) {
        Some(Kind::TarGz)
    } else if start.get(257..262) == Some(b"ustar") || old_tar_header(&start) {
        Some(Kind::Tar)
    } else {
        None
    })
}

/// A 512-byte header with a name whose checksum field (octal, at 148)
/// holds the sum of its bytes, counting that field as spaces.
fn old_tar_header(block: &[u8]) -> bool {
    if block.len() < 512 || block[0] == 0 {
        return false;
    }
    let field = String::from_utf8_lossy(&block[148..156]);
    let Ok(expected) = u32::from_str_radix(field.trim_matches([' ', '\0']), 8) else {
        return false;
    };
    let sum: u32 = block[..512]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == expected
}

/// Unpacks the archive at `archive` into `dst/CONTENT` and writes
/// `dst/SUMMARY`.
pub(super) fn unpack(
    archive: &Path,
    kind: Kind,
    dst: &Path,
    limits: &BlobLimits,
) -> Result<Unpacked, BlobError> {
    let file = BufReader::new(std::fs::File::open(archive)?);
    let reader: Box<dyn Read> = match kind {
        Kind::Tar => Box::new(file),
        Kind::TarGz => Box::new(flate2::read::MultiGzDecoder::new(file)),
    };
    let content = dst.join(CONTENT);
    std::fs::create_dir(&content)?;
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(false);
    tar.set_unpack_xattrs(false);
    tar.set_overwrite(true);
    let invalid = |e: std::io::Error| BlobError::InvalidArchive(e.to_string());
    let mut counted = Unpacked { files: 0, bytes: 0 };
    let mut entries = 0u64;
    for entry in tar.entries().map_err(invalid)? {
        let mut entry = entry.map_err(invalid)?;
        let path = entry.path().map_err(invalid)?.display().to_string();
        entries += 1;
        if entries > limits.max_entries {
            return Err(BlobError::InvalidArchive(format!(
                "more than {} entries ([blobs] max_entries)",
                limits.max_entries
            )));
        }
        match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous => {
                counted.files += 1;
                counted.bytes += entry.size();
                if counted.bytes > limits.max_unpacked_bytes {
                    return Err(BlobError::InvalidArchive(format!(
                        "it unpacks to more than {} bytes ([blobs] max_unpacked_mb)",
                        limits.max_unpacked_bytes
                    )));
                }
            }
            EntryType::Directory | EntryType::Symlink => {}
            EntryType::XGlobalHeader => continue,
            other => {
                return Err(BlobError::InvalidArchive(format!(
                    "entry `{path}` is a {other:?}; archives may hold files, directories and symbolic links only"
                )));
            }
        }
        let inside = entry
            .unpack_in(&content)
            .map_err(|e| BlobError::InvalidArchive(format!("entry `{path}`: {e}")))?;
        if !inside {
            return Err(BlobError::InvalidArchive(format!(
                "entry `{path}` points outside the archive"
            )));
        }
    }
    normalise_permissions(&content)?;
    std::fs::write(
        dst.join(SUMMARY),
        serde_json::to_vec(&counted).map_err(std::io::Error::other)?,
    )?;
    Ok(counted)
}

/// Directories 0755, files 0644 (0755 where any execute bit was set);
/// symbolic links are not followed.
fn normalise_permissions(root: &Path) -> std::io::Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755))?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.path().symlink_metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                let mode = if meta.permissions().mode() & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                };
                std::fs::set_permissions(entry.path(), Permissions::from_mode(mode))?;
            }
        }
    }
    Ok(())
}

/// Removes `dir` and everything below it, making read-only directories
/// writable first.
pub(super) fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            normalise_permissions(dir)?;
            std::fs::remove_dir_all(dir)
        }
        other => other,
    }
}
