//! DSSE envelopes (the in-toto signing envelope, v1): the payload is signed
//! through its pre-authentication encoding, so neither its type nor its
//! bytes can be changed without breaking the signature.

use super::ReceiptError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use wasmnode_runtime::signing;

/// The payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// A signed payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// What the payload is.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The payload, base64.
    pub payload: String,
    /// Who signed it.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// The signing key's fingerprint (`SHA256:HEX`).
    pub keyid: String,
    /// The ed25519 signature over the pre-authentication encoding, base64.
    pub sig: String,
}

/// DSSE's pre-authentication encoding of `payload` of type `payload_type`.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Seals `payload` (an in-toto statement) with `sign`, made by the key
/// whose fingerprint is `keyid`.
pub fn seal(payload: &[u8], keyid: &str, sign: impl FnOnce(&[u8]) -> Signature) -> Envelope {
    let signature = sign(&pae(PAYLOAD_TYPE, payload));
    Envelope {
        payload_type: PAYLOAD_TYPE.into(),
        payload: BASE64.encode(payload),
        signatures: vec![EnvelopeSignature {
            keyid: keyid.into(),
            sig: BASE64.encode(signature.to_bytes()),
        }],
    }
}

/// The payload of `envelope` once a signature by `key` is found valid.
pub fn open(envelope: &Envelope, key: &VerifyingKey) -> Result<Vec<u8>, ReceiptError> {
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(ReceiptError::Malformed(format!(
            "payload type `{}` is not an in-toto statement",
            envelope.payload_type
        )));
    }
    let payload = BASE64
        .decode(&envelope.payload)
        .map_err(|e| ReceiptError::Malformed(format!("payload is not base64: {e}")))?;
    let keyid = signing::fingerprint(key);
    let ours = envelope
        .signatures
        .iter()
        .find(|s| s.keyid == keyid)
        .ok_or_else(|| ReceiptError::UnknownKey {
            signed_by: envelope
                .signatures
                .iter()
                .map(|s| s.keyid.clone())
                .collect::<Vec<_>>()
                .join(", "),
            expected: keyid.clone(),
        })?;
    let bytes = BASE64
        .decode(&ours.sig)
        .map_err(|e| ReceiptError::Malformed(format!("signature is not base64: {e}")))?;
    let signature = Signature::from_slice(&bytes)
        .map_err(|_| ReceiptError::Malformed("signature is not 64 bytes".into()))?;
    key.verify(&pae(&envelope.payload_type, &payload), &signature)
        .map_err(|_| ReceiptError::BadSignature)?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn sealed(payload: &[u8]) -> Envelope {
        let key = key();
        seal(payload, &signing::fingerprint(&key.verifying_key()), |m| {
            key.sign(m)
        })
    }

    #[test]
    fn the_encoding_is_the_one_dsse_specifies() {
        assert_eq!(pae("t", b"hi"), b"DSSEv1 1 t 2 hi");
    }

    #[test]
    fn a_sealed_payload_opens_with_its_key() {
        let envelope = sealed(b"{\"a\":1}");
        assert_eq!(
            open(&envelope, &key().verifying_key()).unwrap(),
            b"{\"a\":1}"
        );
    }

    #[test]
    fn a_changed_payload_does_not_open() {
        let mut envelope = sealed(b"{\"a\":1}");
        envelope.payload = BASE64.encode(b"{\"a\":2}");
        assert!(matches!(
            open(&envelope, &key().verifying_key()),
            Err(ReceiptError::BadSignature)
        ));
    }

    #[test]
    fn a_changed_payload_type_does_not_open() {
        let mut envelope = sealed(b"{}");
        envelope.payload_type = "text/plain".into();
        assert!(matches!(
            open(&envelope, &key().verifying_key()),
            Err(ReceiptError::Malformed(_))
        ));
    }

    #[test]
    fn another_key_is_named_in_the_refusal() {
        let envelope = sealed(b"{}");
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        let e = open(&envelope, &other).unwrap_err();
        assert!(matches!(e, ReceiptError::UnknownKey { .. }), "{e}");
    }
}
