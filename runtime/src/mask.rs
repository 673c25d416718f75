//! `Mask`: hides a job's secret values wherever text leaves the sandbox, in
//! the forms a guest is likely to print them: as they are, JSON-escaped,
//! and base64-encoded at any of the three byte alignments (so a secret
//! inside a longer encoded blob is caught too).

/// What a masked secret reads as.
pub const MASKED: &str = "***";

/// Shortest secret a job may have: a shorter one cannot be masked without
/// masking ordinary text.
pub const MIN_SECRET_LEN: usize = 4;

/// The forms of a set of secret values to hide.
#[derive(Debug, Clone, Default)]
pub struct Mask {
    /// Longest first, so a form never leaves part of a longer one behind.
    needles: Vec<Vec<u8>>,
}

impl Mask {
    /// A mask of `values` (those shorter than [`MIN_SECRET_LEN`] are not
    /// masked; jobs cannot declare them).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles: Vec<Vec<u8>> = Vec::new();
        for value in values.into_iter().filter(|v| v.len() >= MIN_SECRET_LEN) {
            needles.push(value.as_bytes().to_vec());
            let json = serde_json::to_string(value).expect("text serializes");
            needles.push(json.as_bytes()[1..json.len() - 1].to_vec());
            needles.extend(base64_forms(value.as_bytes()));
        }
        needles.retain(|n| n.len() >= MIN_SECRET_LEN);
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Self { needles }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `bytes` with every form of every secret replaced by `***`.
    pub fn bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for needle in &self.needles {
            if out.windows(needle.len()).any(|w| w == needle.as_slice()) {
                out = replace(&out, needle);
            }
        }
        out
    }

    /// `text` with every form of every secret replaced by `***`.
    pub fn text(&self, text: &str) -> String {
        if self.needles.is_empty() {
            return text.to_string();
        }
        String::from_utf8_lossy(&self.bytes(text.as_bytes())).into_owned()
    }

    /// `value` with every string in it masked (keys included).
    pub fn json(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.json(v)).collect()),
            Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (self.text(k), self.json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

fn replace(haystack: &[u8], needle: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(MASKED.as_bytes());
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// The base64 characters that depend on `secret` alone, for each of the
/// three positions it can start at within an encoded stream.
fn base64_forms(secret: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let engines = [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let mut forms = Vec::new();
    for engine in engines {
        for offset in 0..3usize {
            let mut bytes = vec![0u8; offset];
            bytes.extend_from_slice(secret);
            let encoded = engine.encode(&bytes).into_bytes();
            // Characters mixing the prefix's bits, or the next byte's, are
            // not the secret's own.
            let start = (offset * 8).div_ceil(6);
            let end = (bytes.len() * 8) / 6;
            if start < end {
                forms.push(encoded[start..end].to_vec());
            }
        }
    }
    forms
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn a_secret_is_masked_plain_json_escaped_and_base64_encoded_anywhere() {
        let secret = "s3cr\"et/value";
        let mask = Mask::new([secret]);
        assert_eq!(mask.text("token=s3cr\"et/value;"), "token=***;");
        assert_eq!(mask.text(r#"{"t":"s3cr\"et/value"}"#), r#"{"t":"***"}"#);
        let b64 = base64::engine::general_purpose::STANDARD;
        for prefix in ["", "a", "ab", "abc"] {
            let encoded = b64.encode(format!("{prefix}{secret} and more"));
            let masked = mask.text(&encoded);
            assert!(masked.contains(MASKED), "{prefix:?}: {encoded} -> {masked}");
        }
        let url = base64::engine::general_purpose::URL_SAFE.encode(secret);
        assert!(mask.text(&url).contains(MASKED));
    }

    #[test]
    fn json_is_masked_in_keys_and_values_and_nothing_else_changes() {
        let mask = Mask::new(["hunter22"]);
        let value = serde_json::json!({"pw": "is hunter22", "hunter22": [1, "x"]});
        assert_eq!(
            mask.json(&value),
            serde_json::json!({"pw": "is ***", "***": [1, "x"]})
        );
        assert!(Mask::new(["abc"]).is_empty(), "too short to mask");
        assert_eq!(Mask::default().text("plain"), "plain");
    }
}
