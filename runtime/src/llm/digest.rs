//! What a model file must hash to: a SHA-256 or BLAKE3 digest, or the git
//! blob SHA-1 the Hugging Face hub publishes for files it keeps outside LFS;
//! and the digest file kept beside each cached model, so that a later
//! request verifies the file it is given without asking the hub again.

use sha1::Digest as _;
use std::io::Read;
use std::path::{Path, PathBuf};

/// An expected digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digest {
    /// SHA-256, hex.
    Sha256(String),
    /// BLAKE3, hex.
    Blake3(String),
    /// SHA-1 of `blob {len}\0{content}` (a git blob id), hex.
    GitBlob(String),
}

impl Digest {
    /// Parses `sha256:HEX`, `blake3:HEX` or `gitblob:HEX` (as pinned in the
    /// configuration and kept in digest files).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (kind, hex) = text.split_once(':').ok_or_else(|| {
            format!("digest `{text}` must read sha256:HEX, blake3:HEX or gitblob:HEX")
        })?;
        let hex = hex.trim().to_ascii_lowercase();
        let (digest, len) = match kind.trim() {
            "sha256" => (Self::Sha256(hex.clone()), 64),
            "blake3" => (Self::Blake3(hex.clone()), 64),
            "gitblob" => (Self::GitBlob(hex.clone()), 40),
            other => {
                return Err(format!(
                    "digest kind `{other}` must be sha256, blake3 or gitblob"
                ));
            }
        };
        if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("digest `{text}` is not {len} hex digits"));
        }
        Ok(digest)
    }

    /// The digest as `KIND:HEX`.
    pub fn to_text(&self) -> String {
        format!("{}:{}", self.name(), self.expected())
    }

    /// The expected hex value.
    pub fn expected(&self) -> &str {
        match self {
            Digest::Sha256(h) | Digest::Blake3(h) | Digest::GitBlob(h) => h,
        }
    }

    /// The kind's name.
    pub fn name(&self) -> &'static str {
        match self {
            Digest::Sha256(_) => "sha256",
            Digest::Blake3(_) => "blake3",
            Digest::GitBlob(_) => "gitblob",
        }
    }

    /// This kind of digest of the file at `path`.
    pub fn of_file(&self, path: &Path) -> std::io::Result<String> {
        let mut file = std::fs::File::open(path)?;
        let mut buffer = vec![0u8; 1 << 16];
        let mut feed = |update: &mut dyn FnMut(&[u8])| -> std::io::Result<()> {
            loop {
                let n = file.read(&mut buffer)?;
                if n == 0 {
                    return Ok(());
                }
                update(&buffer[..n]);
            }
        };
        Ok(match self {
            Digest::Sha256(_) => {
                let mut hasher = sha2::Sha256::new();
                feed(&mut |b| hasher.update(b))?;
                hex(&hasher.finalize())
            }
            Digest::Blake3(_) => {
                let mut hasher = blake3::Hasher::new();
                feed(&mut |b| {
                    hasher.update(b);
                })?;
                hasher.finalize().to_hex().to_string()
            }
            Digest::GitBlob(_) => {
                let len = std::fs::metadata(path)?.len();
                let mut hasher = sha1::Sha1::new();
                hasher.update(format!("blob {len}\0").as_bytes());
                feed(&mut |b| hasher.update(b))?;
                hex(&hasher.finalize())
            }
        })
    }

    /// Whether the file at `path` has this digest.
    pub fn matches(&self, path: &Path) -> std::io::Result<bool> {
        Ok(self.of_file(path)?.eq_ignore_ascii_case(self.expected()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

/// The digest file kept beside `model`.
pub fn sidecar(model: &Path) -> PathBuf {
    let mut name = model.file_name().unwrap_or_default().to_os_string();
    name.push(".digest");
    model.with_file_name(name)
}

/// Records the digests `model` was verified against.
pub fn remember(model: &Path, digests: &[Digest]) -> std::io::Result<()> {
    let text: Vec<String> = digests.iter().map(Digest::to_text).collect();
    std::fs::write(sidecar(model), text.join("\n") + "\n")
}

/// The digests `model` was verified against when it was downloaded (none
/// when it has no digest file, or one that cannot be read).
pub fn remembered(model: &Path) -> Vec<Digest> {
    std::fs::read_to_string(sidecar(model))
        .map(|text| text.lines().filter_map(|l| Digest::parse(l).ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            Digest::Sha256(String::new()).of_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            Digest::Blake3(String::new()).of_file(&path).unwrap(),
            blake3::hash(b"abc").to_hex().to_string()
        );
        // `git hash-object` of a file holding "abc".
        assert_eq!(
            Digest::GitBlob(String::new()).of_file(&path).unwrap(),
            "f2ba8f84ab5c1bce84a7b441cb1959cfc7093b7f"
        );
    }

    #[test]
    fn parsed_written_and_read_back() {
        let sha = format!("sha256:{}", "a".repeat(64));
        assert_eq!(Digest::parse(&sha).unwrap().to_text(), sha);
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse("md5:".to_string().as_str()).is_err());
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.gguf");
        let digests = vec![Digest::parse(&sha).unwrap()];
        remember(&model, &digests).unwrap();
        assert_eq!(remembered(&model), digests);
        assert!(remembered(&dir.path().join("other")).is_empty());
    }
}
