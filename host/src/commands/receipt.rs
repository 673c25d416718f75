//! `wasmnode identity` and `wasmnode receipt verify`: the node's signing
//! key, and checking what it signed.

use super::{Printed, load_config, usage};
use crate::cli::{IdentityArgs, NodeArgs, ReceiptVerifyArgs};
use crate::identity::{Identity, public_key_path};
use crate::receipts::verify::{self, MAX_RECEIPT_BYTES};
use crate::receipts::{FILE_SUBJECT, OUTPUT_SUBJECT, sha256_of};
use ed25519_dalek::VerifyingKey;
use std::io::Read;
use std::path::{Path, PathBuf};
use wasmnode_runtime::signing;

/// Prints the node's identity, making it when there is none.
pub fn identity(config_file: Option<&Path>, args: IdentityArgs) -> anyhow::Result<Printed> {
    let config = load_config(config_file, &args.node.flags())?;
    let data_dir = &config.node.data_dir;
    let (identity, created) = Identity::load_or_create(data_dir)?;
    let public = identity.public();
    if created {
        super::err(&format!(
            "made a new node identity under {}\n",
            data_dir.display()
        ));
    }
    if args.json {
        super::out(&format!(
            "{}\n",
            serde_json::to_string_pretty(public).expect("identities serialize")
        ));
    } else {
        super::out(&format!(
            "fingerprint: {}\npublic key:  {}\n{}",
            public.fingerprint,
            public_key_path(data_dir).display(),
            public.public_key
        ));
    }
    Ok(Printed { status: 0 })
}

/// Checks a receipt: exit status 0 and one line when it and every file
/// given hold, 1 and the reason when not.
pub fn verify(config_file: Option<&Path>, args: ReceiptVerifyArgs) -> anyhow::Result<Printed> {
    let key = key(config_file, args.key.as_deref(), &args.node)?;
    let mut checks = Vec::new();
    if let Some(path) = &args.output {
        checks.push((OUTPUT_SUBJECT.to_string(), path.clone()));
    }
    for pair in &args.files {
        match pair.split_once('=') {
            Some((name, path)) if !name.is_empty() && !path.is_empty() => {
                checks.push((format!("{FILE_SUBJECT}{name}"), PathBuf::from(path)));
            }
            _ => return Err(usage(format!("--file `{pair}` must look like NAME=PATH"))),
        }
    }
    let digests = checks
        .iter()
        .map(|(name, path)| Ok((name, sha256_file(path)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bytes = read_capped(&args.receipt)?;
    let checked = verify::open(&bytes, &key).and_then(|verified| {
        for (name, digest) in &digests {
            verified.check(name, digest)?;
        }
        Ok(verified)
    });
    match checked {
        Ok(verified) => {
            let matched = match checks.len() {
                0 => String::new(),
                n => format!("; {n} file(s) match"),
            };
            super::out(&format!(
                "verified: job {} {}, signed by {}{matched}\n",
                verified.job_id(),
                verified.state(),
                signing::fingerprint(&key)
            ));
            Ok(Printed { status: 0 })
        }
        Err(e) => {
            super::err(&format!("verification failed: {e}\n"));
            Ok(Printed { status: 1 })
        }
    }
}

/// The key given, else the identity of the node on this machine.
pub fn key(
    config_file: Option<&Path>,
    given: Option<&Path>,
    node: &NodeArgs,
) -> anyhow::Result<VerifyingKey> {
    if let Some(path) = given {
        return signing::read_public_key(path).map_err(|e| usage(e.to_string()));
    }
    let config = load_config(config_file, &node.flags())?;
    match Identity::load(&config.node.data_dir)? {
        Some(identity) => Ok(identity.verifying_key()),
        None => Err(usage(format!(
            "no key: give --key NODE.pub.pem (the signing node's `wasmnode identity`, or `identity.public_key` of its /info); there is no node identity under {}",
            config.node.data_dir.display()
        ))),
    }
}

/// Reads the receipt, refusing one too large to be one.
pub fn read_capped(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(MAX_RECEIPT_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RECEIPT_BYTES {
        return Err(usage(format!(
            "{}: over {} MiB; not a receipt",
            path.display(),
            MAX_RECEIPT_BYTES >> 20
        )));
    }
    Ok(bytes)
}

/// The sha256 (lowercase hex) of the file at `path`.
fn sha256_file(path: &Path) -> anyhow::Result<String> {
    std::fs::File::open(path)
        .and_then(sha256_of)
        .map_err(|e| usage(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_file_over_the_cap_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.json");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_RECEIPT_BYTES + 1).unwrap();
        let e = read_capped(&path).unwrap_err().to_string();
        assert!(e.contains("not a receipt"), "{e}");
        file.set_len(MAX_RECEIPT_BYTES).unwrap();
        assert_eq!(read_capped(&path).unwrap().len() as u64, MAX_RECEIPT_BYTES);
    }
}
