//! Writing a whole file in one host call. A guest's `std::fs` writes reach
//! the host through a WASI output stream, at most 4 KiB per call
//! (`blocking-write-and-flush`), so megabytes take thousands of calls;
//! `descriptor.write` takes any length, and the host writes it at once.

use std::io;
use std::path::Path;

/// Creates or truncates `path` and writes `bytes` to it.
#[cfg(target_os = "wasi")]
pub fn write_whole_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use wasip2::filesystem::preopens::get_directories;
    use wasip2::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
    let other = |e: wasip2::filesystem::types::ErrorCode| io::Error::other(e.to_string());
    let wanted = path
        .to_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a path that is not UTF-8"))?;
    let Some((dir, relative)) = get_directories()
        .into_iter()
        .filter_map(|(dir, root)| {
            let rest = wanted.strip_prefix(root.trim_end_matches('/'))?;
            let relative = rest.strip_prefix('/')?.to_owned();
            Some((root.len(), dir, relative))
        })
        .max_by_key(|(depth, _, _)| *depth)
        .map(|(_, dir, relative)| (dir, relative))
    else {
        return std::fs::write(path, bytes);
    };
    let file = dir
        .open_at(
            PathFlags::empty(),
            &relative,
            OpenFlags::CREATE | OpenFlags::TRUNCATE,
            DescriptorFlags::WRITE,
        )
        .map_err(other)?;
    let mut at = 0;
    while at < bytes.len() {
        match file.write(&bytes[at..], at as u64).map_err(other)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => at += n as usize,
        }
    }
    Ok(())
}

/// Creates or truncates `path` and writes `bytes` to it.
#[cfg(not(target_os = "wasi"))]
pub fn write_whole_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    std::fs::write(path, bytes)
}
