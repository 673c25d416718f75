//! The node's identity: an ed25519 key made at the first start under the
//! data directory (`identity/node.pem`, mode 0600, with its public half in
//! `identity/node.pub.pem`), which signs the node's receipts. Its public
//! key and fingerprint are in `/info`, in the control-plane registration and
//! in `wasmnode identity`.

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::Serialize;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use wasmnode_runtime::signing;

/// Why the identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file cannot be read, written or created.
    #[error("node key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file is not an ed25519 private key.
    #[error("node key {path}: not an ed25519 private key in PKCS#8 PEM: {why}")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What the parser said.
        why: String,
    },
    /// Others than the node's user may read the private key.
    #[error(
        "node key {path}: mode {mode:o} lets other users read it; `chmod 600 {path}` (or remove it to make a new identity)"
    )]
    Exposed {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// What others may know of the identity (`/info`, the registration).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicIdentity {
    /// Always `ed25519`.
    pub algorithm: &'static str,
    /// `SHA256:` and the hex digest of the 32 public key bytes.
    pub fingerprint: String,
    /// The public key as SPKI PEM (what `--key` takes).
    pub public_key: String,
}

/// The node's signing key.
pub struct Identity {
    key: SigningKey,
    public: PublicIdentity,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.public.fingerprint)
    }
}

impl Identity {
    /// Loads the identity under `data_dir`, making it first when there is
    /// none; says whether it was made now.
    pub fn load_or_create(data_dir: &Path) -> Result<(Self, bool), IdentityError> {
        let path = key_path(data_dir);
        if let Some(identity) = Self::load(data_dir)? {
            return Ok((identity, false));
        }
        let dir = path.parent().expect("the key lives in a directory");
        std::fs::create_dir_all(dir).map_err(|source| IdentityError::Io {
            path: dir.into(),
            source,
        })?;
        let created = create(&path)?;
        let identity = Self::load(data_dir)?.ok_or_else(|| IdentityError::Io {
            path: path.clone(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
        Ok((identity, created))
    }

    /// Loads the identity under `data_dir`, if the node has one.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, IdentityError> {
        let path = key_path(data_dir);
        let io = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::Exposed { path, mode });
        }
        let pem = std::fs::read_to_string(&path).map_err(io)?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| IdentityError::Malformed {
            path: path.clone(),
            why: e.to_string(),
        })?;
        let identity = Self::of(key);
        identity.write_public(data_dir);
        Ok(Some(identity))
    }

    /// The identity of `key`.
    pub fn of(key: SigningKey) -> Self {
        let verifying = key.verifying_key();
        let public = PublicIdentity {
            algorithm: "ed25519",
            fingerprint: signing::fingerprint(&verifying),
            public_key: verifying
                .to_public_key_pem(LineEnding::LF)
                .expect("an ed25519 public key encodes"),
        };
        Self { key, public }
    }

    /// What others may know of it.
    pub fn public(&self) -> &PublicIdentity {
        &self.public
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs `bytes`.
    pub fn sign(&self, bytes: &[u8]) -> Signature {
        self.key.sign(bytes)
    }

    /// Keeps `identity/node.pub.pem` beside the key, for `--key`; a
    /// failure to write it costs only that convenience.
    fn write_public(&self, data_dir: &Path) {
        let path = public_key_path(data_dir);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() == Some(self.public.public_key.as_str()) {
            return;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = std::fs::write(&tmp, &self.public.public_key)
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(path = %path.display(), error = %e, "cannot write the node's public key file");
        }
    }
}

/// Where the node's private key lives.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("identity").join("node.pem")
}

/// Where the node's public key lives.
pub fn public_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("identity").join("node.pub.pem")
}

/// Makes a key at `path` unless one appears there meanwhile: it is written
/// and synced under a temporary name, then linked into place, which fails
/// rather than replace a key another process made first. Says whether this
/// call made it.
fn create(path: &Path) -> Result<bool, IdentityError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| IdentityError::Io { path, source }
    };
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| IdentityError::Io {
        path: path.into(),
        source: std::io::Error::other(format!("no randomness: {e}")),
    })?;
    let pem = SigningKey::from_bytes(&seed)
        .to_pkcs8_pem(LineEnding::LF)
        .expect("an ed25519 key encodes");
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(pem.as_bytes())?;
            f.sync_all()
        })
        .map_err(io(&tmp));
    let linked = written.and_then(|()| match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io(path)(e)),
    });
    let _ = std::fs::remove_file(&tmp);
    let created = linked?;
    if created && let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier;

    #[test]
    fn the_first_start_makes_a_private_key_only_its_user_may_read() {
        let dir = tempfile::tempdir().unwrap();
        let (made, created) = Identity::load_or_create(dir.path()).unwrap();
        assert!(created);
        let mode = std::fs::metadata(key_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let public = std::fs::read_to_string(public_key_path(dir.path())).unwrap();
        assert_eq!(public, made.public().public_key);
        assert!(made.public().fingerprint.starts_with("SHA256:"));
    }

    #[test]
    fn a_restart_keeps_the_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = Identity::load_or_create(dir.path()).unwrap();
        std::fs::remove_file(public_key_path(dir.path())).unwrap();
        let (again, created) = Identity::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(first.public(), again.public());
        assert!(
            public_key_path(dir.path()).exists(),
            "the public file is put back"
        );
        let signature = again.sign(b"receipt");
        assert!(first.verifying_key().verify(b"receipt", &signature).is_ok());
    }

    #[test]
    fn a_key_others_may_read_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        let path = key_path(dir.path());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Identity::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "not a key").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(e, IdentityError::Malformed { .. }), "{e}");
    }

    #[test]
    fn a_key_made_meanwhile_by_another_process_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        assert!(create(&path).unwrap());
        let before = std::fs::read(&path).unwrap();
        assert!(!create(&path).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
