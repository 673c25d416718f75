//! Tool signatures and the trust list.
//!
//! A signature is an ed25519 signature over a [`Statement`]: the
//! component's sha256 digest and its manifest (name, version, what it
//! needs). It lives beside the component as `FILE.wasm.sig` (a small JSON
//! document) and travels with it through a registry. Keys are PKCS#8 /
//! SPKI PEM files, so `openssl genpkey -algorithm ed25519` makes them too.
//! With `policy.require_signed_tools`, the WASI executor runs a component
//! file only when a key of the trust list signed exactly its bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What a signature file may weigh; anything bigger is not one.
const MAX_SIGNATURE_BYTES: u64 = 64 << 10;
/// The statement type this node writes and accepts.
const STATEMENT_TYPE: &str = "wasmnode-tool-signature/v1";

/// Why a signature, key or trust list was refused.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The component has no signature file beside it.
    #[error("{0} is not signed (no {0}.sig beside it)")]
    Unsigned(String),
    /// The signature file is not one.
    #[error("{path}: not a wasmnode tool signature: {why}")]
    Malformed {
        /// The signature file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// The key that signed is not on the trust list.
    #[error("{path} was signed by key {fingerprint}, which this node does not trust")]
    UnknownKey {
        /// The component.
        path: String,
        /// The signing key's fingerprint.
        fingerprint: String,
    },
    /// The signature does not match the statement.
    #[error("{0}: the signature does not match what it claims to sign")]
    BadSignature(String),
    /// The component's bytes are not the ones that were signed.
    #[error("{path} is not what was signed: its digest is {actual}, the signature is for {signed}")]
    DigestMismatch {
        /// The component.
        path: String,
        /// The digest of its bytes.
        actual: String,
        /// The digest the signature names.
        signed: String,
    },
    /// A key file cannot be used.
    #[error("key {path}: {why}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A tool's manifest, as signed: who it is and what it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The tool's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Whether it writes files.
    pub writes: bool,
    /// The mounts it needs, `PATH` or `PATH:rw`.
    pub mounts: Vec<String>,
}

/// What is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// Always `wasmnode-tool-signature/v1`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `sha256:HEX` of the component's bytes.
    pub digest: String,
    /// The tool's manifest.
    pub tool: Manifest,
}

/// A signature file: the statement, who signed it and the signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// What was signed.
    pub statement: Statement,
    /// Fingerprint of the signing key.
    pub key: String,
    /// The ed25519 signature over the statement's JSON, base64.
    pub signature: String,
}

/// `sha256:HEX` of `bytes`, as OCI names blobs.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Where the signature of the component at `path` lives.
pub fn signature_path(path: &Path) -> PathBuf {
    with_suffix(path, ".sig")
}

/// The key files `tool keygen --out PREFIX` writes: `PREFIX.pem` (private)
/// and `PREFIX.pub.pem` (public).
pub fn key_paths(prefix: &Path) -> (PathBuf, PathBuf) {
    (with_suffix(prefix, ".pem"), with_suffix(prefix, ".pub.pem"))
}

/// `path` with `suffix` appended to its last component.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A key's fingerprint: `SHA256:` and the hex digest of its 32 bytes.
pub fn fingerprint(key: &VerifyingKey) -> String {
    format!("SHA256:{:x}", Sha256::digest(key.as_bytes()))
}

/// The bytes a signature covers: the statement as compact JSON.
fn signed_bytes(statement: &Statement) -> Vec<u8> {
    serde_json::to_vec(statement).expect("statements serialize")
}

/// A new signing key, written to `private` (PKCS#8 PEM, mode 0600) and
/// its public half to `public` (SPKI PEM). Neither file may exist yet.
pub fn generate(private: &Path, public: &Path) -> Result<String, SigningError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| SigningError::Key {
        path: private.into(),
        why: format!("no randomness: {e}"),
    })?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| SigningError::Key {
            path: private.into(),
            why: e.to_string(),
        })?;
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| SigningError::Key {
            path: public.into(),
            why: e.to_string(),
        })?;
    write_new(private, pem.as_bytes(), 0o600)?;
    write_new(public, public_pem.as_bytes(), 0o644)?;
    Ok(fingerprint(&key.verifying_key()))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SigningError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| SigningError::Io {
        path: path.into(),
        source,
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(io)
}

/// Reads a signing key (PKCS#8 PEM).
pub fn read_signing_key(path: &Path) -> Result<SigningKey, SigningError> {
    read_key(path, "an ed25519 private key in PKCS#8 PEM", |pem| {
        SigningKey::from_pkcs8_pem(pem).map_err(|e| e.to_string())
    })
}

/// Reads a public key (SPKI PEM).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, SigningError> {
    read_key(path, "an ed25519 public key in PEM", |pem| {
        VerifyingKey::from_public_key_pem(pem).map_err(|e| e.to_string())
    })
}

/// Reads the PEM file `path` and parses it with `parse`; `what` names the
/// kind of key in the error.
fn read_key<K>(
    path: &Path,
    what: &str,
    parse: impl FnOnce(&str) -> Result<K, String>,
) -> Result<K, SigningError> {
    let text = std::fs::read_to_string(path).map_err(|source| SigningError::Io {
        path: path.into(),
        source,
    })?;
    parse(&text).map_err(|e| SigningError::Key {
        path: path.into(),
        why: format!("not {what}: {e}"),
    })
}

/// Signs the component `bytes` with manifest `tool`.
pub fn sign(bytes: &[u8], tool: Manifest, key: &SigningKey) -> SignatureFile {
    let statement = Statement {
        kind: STATEMENT_TYPE.into(),
        digest: digest(bytes),
        tool,
    };
    let signature = key.sign(&signed_bytes(&statement));
    SignatureFile {
        statement,
        key: fingerprint(&key.verifying_key()),
        signature: BASE64.encode(signature.to_bytes()),
    }
}

/// The public keys a node trusts, by fingerprint.
#[derive(Debug, Clone, Default)]
pub struct TrustList {
    keys: HashMap<String, VerifyingKey>,
}

impl TrustList {
    /// The keys in the PEM files `paths`.
    pub fn load(paths: &[PathBuf]) -> Result<Self, SigningError> {
        let mut keys = HashMap::new();
        for path in paths {
            let key = read_public_key(path)?;
            keys.insert(fingerprint(&key), key);
        }
        Ok(Self { keys })
    }

    /// A list of exactly `keys`.
    pub fn of(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        Self {
            keys: keys.into_iter().map(|k| (fingerprint(&k), k)).collect(),
        }
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks that a trusted key signed exactly `bytes`, the component
    /// named `name`; `signature` is the text of its signature file.
    pub fn verify(
        &self,
        name: &str,
        bytes: &[u8],
        signature: &[u8],
    ) -> Result<Statement, SigningError> {
        let malformed = |why: String| SigningError::Malformed {
            path: format!("{name}.sig"),
            why,
        };
        let file: SignatureFile =
            serde_json::from_slice(signature).map_err(|e| malformed(e.to_string()))?;
        if file.statement.kind != STATEMENT_TYPE {
            return Err(malformed(format!(
                "unknown statement type `{}`",
                file.statement.kind
            )));
        }
        let key = self
            .keys
            .get(&file.key)
            .ok_or_else(|| SigningError::UnknownKey {
                path: name.into(),
                fingerprint: file.key.clone(),
            })?;
        let raw = BASE64
            .decode(&file.signature)
            .map_err(|e| malformed(format!("signature: {e}")))?;
        let signature =
            Signature::from_slice(&raw).map_err(|e| malformed(format!("signature: {e}")))?;
        key.verify(&signed_bytes(&file.statement), &signature)
            .map_err(|_| SigningError::BadSignature(name.into()))?;
        let actual = digest(bytes);
        if actual != file.statement.digest {
            return Err(SigningError::DigestMismatch {
                path: name.into(),
                actual,
                signed: file.statement.digest,
            });
        }
        Ok(file.statement)
    }
}

/// The text of the signature file beside the component file `path`.
pub fn read_signature(path: &Path) -> Result<Vec<u8>, SigningError> {
    let sig_path = signature_path(path);
    read_capped(&sig_path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => SigningError::Unsigned(path.display().to_string()),
        _ => SigningError::Io {
            path: sig_path.clone(),
            source,
        },
    })
}

/// Reads at most [`MAX_SIGNATURE_BYTES`] of `path`; more is an error.
fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_SIGNATURE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SIGNATURE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_SIGNATURE_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            name: "word_count".into(),
            version: "0.1.0".into(),
            writes: false,
            mounts: vec!["/in".into()],
        }
    }

    #[test]
    fn a_trusted_key_verifies_exactly_the_bytes_it_signed() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let trust = TrustList::of([key.verifying_key()]);
        let signed = serde_json::to_vec(&sign(b"component", manifest(), &key)).unwrap();
        let statement = trust.verify("t.wasm", b"component", &signed).unwrap();
        assert_eq!(statement.tool, manifest());
        assert_eq!(statement.digest, digest(b"component"));

        let changed = trust.verify("t.wasm", b"componenT", &signed).unwrap_err();
        assert!(
            matches!(changed, SigningError::DigestMismatch { .. }),
            "{changed}"
        );

        let stranger = serde_json::to_vec(&sign(b"component", manifest(), &other)).unwrap();
        let unknown = trust.verify("t.wasm", b"component", &stranger).unwrap_err();
        assert!(
            matches!(unknown, SigningError::UnknownKey { .. }),
            "{unknown}"
        );

        let mut forged = sign(b"component", manifest(), &key);
        forged.statement.tool.writes = true;
        let forged = serde_json::to_vec(&forged).unwrap();
        let bad = trust.verify("t.wasm", b"component", &forged).unwrap_err();
        assert!(matches!(bad, SigningError::BadSignature(_)), "{bad}");

        let garbage = trust.verify("t.wasm", b"component", b"{}").unwrap_err();
        assert!(
            matches!(garbage, SigningError::Malformed { .. }),
            "{garbage}"
        );
    }

    #[test]
    fn generated_keys_round_trip_through_pem_files_and_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = (dir.path().join("k.pem"), dir.path().join("k.pub.pem"));
        let printed = generate(&private, &public).unwrap();
        let key = read_signing_key(&private).unwrap();
        assert_eq!(read_public_key(&public).unwrap(), key.verifying_key());
        assert_eq!(printed, fingerprint(&key.verifying_key()));
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            generate(&private, &public).is_err(),
            "never overwrites a key"
        );
        assert_eq!(TrustList::load(&[public]).unwrap().len(), 1);
    }

    #[test]
    fn a_signature_file_larger_than_the_cap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wasm");
        let cap = usize::try_from(MAX_SIGNATURE_BYTES).unwrap();
        std::fs::write(signature_path(&path), vec![b' '; cap]).unwrap();
        assert!(read_signature(&path).is_ok(), "at the cap");
        std::fs::write(signature_path(&path), vec![b' '; cap + 1]).unwrap();
        let err = read_signature(&path).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    }

    #[test]
    fn a_missing_signature_file_means_unsigned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wasm");
        std::fs::write(&path, b"component").unwrap();
        let err = read_signature(&path).unwrap_err();
        assert!(matches!(err, SigningError::Unsigned(_)), "{err}");
    }
}
