//! Checking a receipt: its signature, and that what a job produced is what
//! it names.

use super::{PREDICATE_TYPE, ReceiptError, STATEMENT_TYPE, dsse};
use ed25519_dalek::VerifyingKey;
use serde_json::Value;

/// The largest receipt read (a job with many output files has a long one).
pub const MAX_RECEIPT_BYTES: u64 = 16 << 20;

/// A receipt whose signature holds.
#[derive(Debug)]
pub struct Verified {
    /// The signed statement.
    pub statement: Value,
}

impl Verified {
    /// The job it is about.
    pub fn job_id(&self) -> &str {
        self.statement["predicate"]["job"]["id"]
            .as_str()
            .unwrap_or("?")
    }

    /// How the job ended.
    pub fn state(&self) -> &str {
        self.statement["predicate"]["outcome"]["state"]
            .as_str()
            .unwrap_or("?")
    }

    /// The sha256 the receipt names for the subject `name`.
    pub fn digest(&self, name: &str) -> Option<&str> {
        self.statement["subject"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == name)?["digest"]["sha256"]
            .as_str()
    }

    /// Checks that the subject `name` has sha256 `actual`.
    pub fn check(&self, name: &str, actual: &str) -> Result<(), ReceiptError> {
        let expected = self
            .digest(name)
            .ok_or_else(|| ReceiptError::NoSubject(name.into()))?;
        if expected != actual {
            return Err(ReceiptError::Mismatch {
                name: name.into(),
                expected: expected.into(),
                actual: actual.into(),
            });
        }
        Ok(())
    }
}

/// Opens the receipt `bytes` (a DSSE envelope) with `key`.
pub fn open(bytes: &[u8], key: &VerifyingKey) -> Result<Verified, ReceiptError> {
    let envelope: dsse::Envelope = serde_json::from_slice(bytes)
        .map_err(|e| ReceiptError::Malformed(format!("not a DSSE envelope: {e}")))?;
    let payload = dsse::open(&envelope, key)?;
    let statement: Value = serde_json::from_slice(&payload)
        .map_err(|e| ReceiptError::Malformed(format!("the statement is not JSON: {e}")))?;
    if statement["_type"] != STATEMENT_TYPE || statement["predicateType"] != PREDICATE_TYPE {
        return Err(ReceiptError::Malformed(format!(
            "the statement is not of type {STATEMENT_TYPE} with predicate {PREDICATE_TYPE}"
        )));
    }
    Ok(Verified { statement })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::job::JobRequest;
    use crate::receipts::{Notary, OUTPUT_SUBJECT, sha256};
    use crate::store::{JobRecord, JobResult, JobState};
    use ed25519_dalek::SigningKey;
    use serde_json::json;
    use std::sync::Arc;
    use wasmnode_runtime::TaskMetrics;
    use wasmnode_runtime::policy::Policy;

    const OUTPUT: &[u8] = br#"{"sum":3}"#;

    fn identity(seed: u8) -> Arc<Identity> {
        Arc::new(Identity::of(SigningKey::from_bytes(&[seed; 32])))
    }

    fn receipt(identity: Arc<Identity>) -> Vec<u8> {
        let request: JobRequest = serde_json::from_value(json!({
            "protocol_version": 1, "job_id": "sum-1",
            "task": {"type": "aggregation", "payload": {"values": [1, 2]}},
            "runtime": {"mode": "auto", "env": {"API_TOKEN": "s3cr3t-value"}},
        }))
        .unwrap();
        let (canonical, _) = JobRecord::canonical(&request);
        let mut record = JobRecord::queued(&request, &canonical, 1, 1_000);
        record.state = JobState::Finished;
        record.started_at_ms = Some(1_001);
        record.finished_at_ms = Some(1_002);
        record.result = Some(JobResult {
            executor: Some("wasm".into()),
            metrics: Some(TaskMetrics {
                wall_time_ms: 1.0,
                fuel_consumed: Some(42),
                ran: Some("blake3:00".into()),
                ..TaskMetrics::default()
            }),
            ..JobResult::default()
        });
        let notary = Notary::new(identity, "node-1".into(), Policy::default());
        let terms = notary.terms(&request);
        let files = [("out/report.txt".to_string(), sha256(b"report"))];
        notary.seal(&terms, &record, OUTPUT, &files)
    }

    #[test]
    fn a_receipt_verifies_with_the_node_key_and_names_its_outputs() {
        let node = identity(1);
        let verified = open(&receipt(node.clone()), &node.verifying_key()).unwrap();
        assert_eq!(verified.job_id(), "sum-1");
        assert_eq!(verified.state(), "finished");
        verified.check(OUTPUT_SUBJECT, &sha256(OUTPUT)).unwrap();
        verified
            .check("files/out/report.txt", &sha256(b"report"))
            .unwrap();
        let predicate = &verified.statement["predicate"];
        assert_eq!(predicate["ran"]["digest"], "blake3:00");
        assert_eq!(predicate["usage"]["fuel_consumed"], 42);
        assert_eq!(predicate["node"]["fingerprint"], node.public().fingerprint);
    }

    #[test]
    fn a_receipt_states_every_part_of_its_predicate() {
        let node = identity(1);
        let statement = open(&receipt(node.clone()), &node.verifying_key())
            .unwrap()
            .statement;
        let keys =
            |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(statement["_type"], crate::receipts::STATEMENT_TYPE);
        assert_eq!(statement["predicateType"], crate::receipts::PREDICATE_TYPE);
        assert_eq!(statement["subject"][0]["name"], OUTPUT_SUBJECT);
        assert_eq!(
            statement["subject"][1]["digest"]["sha256"],
            sha256(b"report")
        );
        let predicate = &statement["predicate"];
        assert_eq!(
            keys(predicate),
            [
                "input", "job", "limits", "node", "outcome", "policy", "ran", "timings", "usage"
            ]
        );
        assert_eq!(
            keys(&predicate["input"]),
            [
                "bytes",
                "deterministic",
                "digest",
                "env",
                "mounts",
                "secrets"
            ]
        );
        assert!(
            predicate["input"]["digest"]
                .as_str()
                .unwrap()
                .starts_with("blake3:")
        );
        assert_eq!(
            predicate["job"],
            json!({"attempt": 0, "id": "sum-1", "mode": "auto", "task_type": "aggregation"})
        );
        assert_eq!(
            predicate["outcome"],
            json!({"error_code": null, "exit_code": null, "state": "finished"})
        );
        assert_eq!(
            predicate["ran"],
            json!({"digest": "blake3:00", "executor": "wasm"})
        );
        assert_eq!(
            predicate["timings"],
            json!({"finished_at_ms": 1_002, "started_at_ms": 1_001, "submitted_at_ms": 1_000, "wall_time_ms": 1.0})
        );
        assert_eq!(predicate["usage"]["output_bytes"], OUTPUT.len());
        assert_eq!(predicate["node"]["worker_id"], "node-1");
        assert_eq!(predicate["policy"]["network"], "none");
    }

    #[test]
    fn a_flipped_byte_in_the_output_fails() {
        let node = identity(1);
        let verified = open(&receipt(node.clone()), &node.verifying_key()).unwrap();
        let e = verified
            .check(OUTPUT_SUBJECT, &sha256(br#"{"sum":4}"#))
            .unwrap_err();
        assert!(matches!(e, ReceiptError::Mismatch { .. }), "{e}");
    }

    #[test]
    fn a_flipped_byte_anywhere_in_the_signed_payload_fails() {
        let node = identity(1);
        let envelope: dsse::Envelope = serde_json::from_slice(&receipt(node.clone())).unwrap();
        let payload = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            &envelope.payload,
        )
        .unwrap();
        for at in [0, payload.len() / 2, payload.len() - 1] {
            let mut flipped = payload.clone();
            flipped[at] ^= 0x01;
            let mut altered = envelope.clone();
            altered.payload =
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &flipped);
            let bytes = serde_json::to_vec(&altered).unwrap();
            let e = open(&bytes, &node.verifying_key()).unwrap_err();
            assert!(matches!(e, ReceiptError::BadSignature), "byte {at}: {e}");
        }
    }

    #[test]
    fn a_receipt_of_another_node_is_refused() {
        let e = open(&receipt(identity(1)), &identity(2).verifying_key()).unwrap_err();
        assert!(matches!(e, ReceiptError::UnknownKey { .. }), "{e}");
    }

    #[test]
    fn an_environment_value_never_appears_in_the_receipt() {
        let node = identity(1);
        let bytes = receipt(node.clone());
        let verified = open(&bytes, &node.verifying_key()).unwrap();
        let text = verified.statement.to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("API_TOKEN"));
    }
}
