//! Job secrets (`runtime.secrets`): values a job gives its guest as
//! environment variables. A value given in the request is held in memory
//! only (the store keeps `{"withheld": true}` in its place, so a job the
//! node restarts under cannot run and fails saying so); one the operator
//! keeps is named (`{"operator": "KEY"}`, from `[secrets]`). Every form of
//! every value is masked wherever output leaves the sandbox (`Mask`).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use wasmnode_runtime::mask::{MIN_SECRET_LEN, Mask};
use wasmnode_runtime::{Runtime, TaskFailure, TaskOutcome, TaskSpec};

/// Most secrets one job may have.
const MAX_SECRETS: usize = 64;
/// Longest secret value.
const MAX_SECRET_BYTES: usize = 64 << 10;

/// The operator's secrets, by key (`[secrets]`): jobs name them, never
/// read them.
pub type SecretsSection = BTreeMap<String, String>;

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SecretSource {
    /// Given in the request.
    Value(String),
    /// The operator's `[secrets] KEY`.
    Operator {
        /// The key.
        operator: String,
    },
    /// What the store keeps of a value given in the request.
    Withheld {
        /// Always true.
        withheld: bool,
    },
}

/// Checks a request's secrets: names an environment variable may have,
/// values long enough to mask, and operator keys this node has; the error
/// says which secret is wrong and why.
pub fn validate(
    secrets: &BTreeMap<String, SecretSource>,
    operator: &SecretsSection,
) -> Result<(), String> {
    if secrets.len() > MAX_SECRETS {
        return Err(format!("at most {MAX_SECRETS} secrets a job"));
    }
    for (name, source) in secrets {
        let env_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !env_name {
            return Err(format!(
                "secret name `{name}` must be an environment variable name (A-Z a-z 0-9 _, not starting with a digit)"
            ));
        }
        match source {
            SecretSource::Value(v) if v.len() < MIN_SECRET_LEN => {
                return Err(format!(
                    "secret `{name}` is shorter than {MIN_SECRET_LEN} bytes, too short to mask in the output"
                ));
            }
            SecretSource::Value(v) if v.len() > MAX_SECRET_BYTES => {
                return Err(format!(
                    "secret `{name}` is longer than {MAX_SECRET_BYTES} bytes"
                ));
            }
            SecretSource::Value(_) => {}
            SecretSource::Operator { operator: key } if !operator.contains_key(key) => {
                return Err(format!(
                    "secret `{name}` names operator secret `{key}`, which this node does not have"
                ));
            }
            SecretSource::Operator { .. } => {}
            SecretSource::Withheld { .. } => {
                return Err(format!(
                    "secret `{name}` must be a value or {{\"operator\": KEY}}"
                ));
            }
        }
    }
    Ok(())
}

/// Takes the values given in `secrets`, leaving `withheld` in their place.
pub fn withhold(secrets: &mut BTreeMap<String, SecretSource>) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for (name, source) in secrets.iter_mut() {
        if let SecretSource::Value(value) = source {
            values.insert(name.clone(), std::mem::take(value));
            *source = SecretSource::Withheld { withheld: true };
        }
    }
    values
}

/// The values withheld from the store, by job, until each job ends.
#[derive(Debug, Default)]
pub struct Held(Mutex<HashMap<String, BTreeMap<String, String>>>);

impl Held {
    /// Holds `values` for `job_id` (nothing when there are none).
    pub fn hold(&self, job_id: &str, values: BTreeMap<String, String>) {
        if !values.is_empty() {
            self.0
                .lock()
                .expect("held secrets lock")
                .insert(job_id.to_string(), values);
        }
    }

    /// Forgets `job_id`'s values.
    pub fn forget(&self, job_id: &str) {
        self.0.lock().expect("held secrets lock").remove(job_id);
    }

    /// The value of each of `secrets` for `job_id`, and the mask of them
    /// all; an error when a withheld value is no longer held (the node
    /// restarted since the job was accepted).
    pub fn resolve(
        &self,
        job_id: &str,
        secrets: &BTreeMap<String, SecretSource>,
        operator: &SecretsSection,
    ) -> Result<(BTreeMap<String, String>, Mask), String> {
        let held = self.0.lock().expect("held secrets lock");
        let mut values = BTreeMap::new();
        for (name, source) in secrets {
            let value = match source {
                SecretSource::Value(v) => Some(v.clone()),
                SecretSource::Operator { operator: key } => operator.get(key).cloned(),
                SecretSource::Withheld { .. } => {
                    held.get(job_id).and_then(|v| v.get(name)).cloned()
                }
            };
            let Some(value) = value else {
                return Err(format!(
                    "secret `{name}` is no longer available (values given in a request are held in memory only, and the node restarted, or the operator removed the key); submit the job again"
                ));
            };
            values.insert(name.clone(), value);
        }
        let mask = Mask::new(values.values().map(String::as_str));
        Ok((values, mask))
    }
}

/// Gives the task its secrets as environment variables of what it runs.
pub fn give(task: &mut TaskSpec, values: BTreeMap<String, String>) {
    if values.is_empty() {
        return;
    }
    match &mut task.runtime {
        Runtime::Wasm(wasm) => wasm.env.extend(values),
        Runtime::Image(image) => image.env.extend(values),
        Runtime::Auto { env } => env.extend(values),
        Runtime::Model => {}
    }
}

/// What a run produced, with every form of its secrets masked.
pub fn masked(
    result: Result<TaskOutcome, TaskFailure>,
    mask: &Mask,
) -> Result<TaskOutcome, TaskFailure> {
    match result {
        Ok(mut outcome) => {
            outcome.output = mask.json(&outcome.output);
            outcome.stdout = mask.text(&outcome.stdout);
            outcome.stderr = mask.text(&outcome.stderr);
            Ok(outcome)
        }
        Err(mut failure) => {
            failure.message = mask.text(&failure.message);
            if let Some(captured) = &mut failure.captured {
                captured.stdout = mask.text(&captured.stdout);
                captured.stderr = mask.text(&captured.stderr);
            }
            Err(failure)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(pairs: &[(&str, SecretSource)]) -> BTreeMap<String, SecretSource> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn given_values_are_withheld_from_what_is_stored_and_resolved_from_memory() {
        let operator = SecretsSection::from([("db".to_string(), "db-pass-1".to_string())]);
        let mut request = secrets(&[
            ("TOKEN", SecretSource::Value("tok-12345".into())),
            (
                "DB",
                SecretSource::Operator {
                    operator: "db".into(),
                },
            ),
        ]);
        validate(&request, &operator).unwrap();
        let values = withhold(&mut request);
        let stored = serde_json::to_string(&request).unwrap();
        assert!(!stored.contains("tok-12345"), "{stored}");
        assert_eq!(
            stored,
            r#"{"DB":{"operator":"db"},"TOKEN":{"withheld":true}}"#
        );
        let held = Held::default();
        held.hold("j", values);
        let (env, mask) = held.resolve("j", &request, &operator).unwrap();
        assert_eq!(env["TOKEN"], "tok-12345");
        assert_eq!(env["DB"], "db-pass-1");
        assert_eq!(mask.text("tok-12345 db-pass-1"), "*** ***");
        held.forget("j");
        let lost = held.resolve("j", &request, &operator).unwrap_err();
        assert!(lost.contains("submit the job again"), "{lost}");
    }

    #[test]
    fn bad_secrets_are_refused_naming_the_secret() {
        let operator = SecretsSection::new();
        let cases = [
            (
                "1X",
                SecretSource::Value("long-enough".into()),
                "environment variable name",
            ),
            ("X", SecretSource::Value("abc".into()), "too short"),
            (
                "X",
                SecretSource::Operator {
                    operator: "nope".into(),
                },
                "does not have",
            ),
            (
                "X",
                SecretSource::Withheld { withheld: true },
                "must be a value",
            ),
        ];
        for (name, source, expected) in cases {
            let err = validate(&secrets(&[(name, source)]), &operator).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
        let long = SecretSource::Value("x".repeat(MAX_SECRET_BYTES + 1));
        let err = validate(&secrets(&[("X", long)]), &operator).unwrap_err();
        assert!(err.contains("longer than"), "{err}");
        let many: BTreeMap<String, SecretSource> = (0..=MAX_SECRETS)
            .map(|i| (format!("S{i}"), SecretSource::Value("long-enough".into())))
            .collect();
        let err = validate(&many, &operator).unwrap_err();
        assert!(err.contains("at most"), "{err}");
    }
}
