//! Signed execution receipts. Every job that ran ends with a receipt: an
//! in-toto Statement (v1) in a DSSE envelope, signed by the node's identity,
//! whose subjects are the output document (`output.json`, the bytes `GET
//! /jobs/{id}/result` serves; `null` for a failed job) and each output file
//! (`files/PATH`) by sha256, and whose predicate
//! (`https://wasmnode.dev/receipt/v1`) says what ran, on which input, under
//! which limits and policy, how it ended, when, and what it used. Secret
//! values never enter it: the input is a digest, and environment variables
//! and secrets appear by name only.
//!
//! The store writes a receipt in the same commit as the job's end, so one
//! is never without the other.

pub mod dsse;
mod predicate;
pub mod settings;
pub mod verify;

use crate::identity::Identity;
use crate::job::JobRequest;
use crate::store::JobRecord;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::sync::Arc;
use wasmnode_runtime::policy::Policy;

pub use predicate::{Terms, input_digest};

/// The in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of a wasmnode receipt.
pub const PREDICATE_TYPE: &str = "https://wasmnode.dev/receipt/v1";
/// The subject name of the output document.
pub const OUTPUT_SUBJECT: &str = "output.json";
/// The prefix of an output file's subject name.
pub const FILE_SUBJECT: &str = "files/";

/// Why a receipt does not verify.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// It is not a receipt.
    #[error("not a wasmnode receipt: {0}")]
    Malformed(String),
    /// The key given did not sign it.
    #[error("signed by {signed_by}, not by the key given ({expected})")]
    UnknownKey {
        /// The fingerprints of the keys that signed it.
        signed_by: String,
        /// The fingerprint of the key given.
        expected: String,
    },
    /// The signature does not match the envelope.
    #[error("the signature does not match the receipt (it was altered after it was signed)")]
    BadSignature,
    /// The receipt names no such subject.
    #[error("the receipt has no subject `{0}`")]
    NoSubject(String),
    /// A file is not what the receipt says was produced.
    #[error(
        "{name} does not match the receipt: its sha256 is {actual}, the receipt says {expected}"
    )]
    Mismatch {
        /// The subject.
        name: String,
        /// The digest the receipt names.
        expected: String,
        /// The digest of the file given.
        actual: String,
    },
}

/// Signs receipts with the node's identity.
pub struct Notary {
    identity: Arc<Identity>,
    worker_id: String,
    policy: Policy,
}

impl Notary {
    /// A notary of the node `worker_id`, signing with `identity`, whose jobs
    /// run under `policy`.
    pub fn new(identity: Arc<Identity>, worker_id: String, policy: Policy) -> Self {
        Self {
            identity,
            worker_id,
            policy,
        }
    }

    /// What a receipt will say of `request` (taken when the job starts,
    /// while the request is at hand).
    pub fn terms(&self, request: &JobRequest) -> Terms {
        Terms::of(request, &self.policy)
    }

    /// The signed receipt (a DSSE envelope, JSON) of the ended job `record`
    /// whose output document is `output` and whose files are `files`
    /// (path, sha256 hex).
    pub fn seal(
        &self,
        terms: &Terms,
        record: &JobRecord,
        output: &[u8],
        files: &[(String, String)],
    ) -> Vec<u8> {
        let output_digest = sha256(output);
        let mut subject = vec![Subject::new(OUTPUT_SUBJECT.into(), &output_digest)];
        subject.extend(
            files
                .iter()
                .map(|(path, digest)| Subject::new(format!("{FILE_SUBJECT}{path}").into(), digest)),
        );
        let public = self.identity.public();
        let node = predicate::Node {
            fingerprint: &public.fingerprint,
            version: env!("CARGO_PKG_VERSION"),
            worker_id: &self.worker_id,
        };
        let statement = Statement {
            type_: STATEMENT_TYPE,
            predicate: predicate::predicate(terms, record, node, output.len()),
            predicate_type: PREDICATE_TYPE,
            subject,
        };
        let payload = serde_json::to_vec(&statement).expect("statements serialize");
        let envelope = dsse::seal(&payload, &public.fingerprint, |m| self.identity.sign(m));
        serde_json::to_vec(&envelope).expect("envelopes serialize")
    }
}

/// An in-toto statement (v1), its keys in sorted order.
#[derive(Serialize)]
struct Statement<'a> {
    #[serde(rename = "_type")]
    type_: &'static str,
    predicate: predicate::Predicate<'a>,
    #[serde(rename = "predicateType")]
    predicate_type: &'static str,
    subject: Vec<Subject<'a>>,
}

/// A statement's subject: a name and its sha256.
#[derive(Serialize)]
struct Subject<'a> {
    digest: Sha256Digest<'a>,
    name: Cow<'a, str>,
}

#[derive(Serialize)]
struct Sha256Digest<'a> {
    sha256: &'a str,
}

impl<'a> Subject<'a> {
    fn new(name: Cow<'a, str>, sha256: &'a str) -> Self {
        Self {
            digest: Sha256Digest { sha256 },
            name,
        }
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Lowercase hex sha256 of everything `reader` gives, read in pieces (a
/// file of any size).
pub fn sha256_of(mut reader: impl std::io::Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut reader, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}
