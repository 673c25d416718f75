//! Uniform access to task inputs, whichever protocol delivered them.

use crate::GuestError;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// A task's inputs: a JSON object whose values may be JSON or strings of JSON.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    map: Map<String, Value>,
}

impl Inputs {
    /// Parses the task's input document, which must be a JSON object.
    pub fn parse(input: &str) -> Result<Self, GuestError> {
        match serde_json::from_str::<Value>(input) {
            Ok(Value::Object(map)) => Ok(Self { map }),
            Ok(other) => Err(GuestError::InvalidInput(format!(
                "input must be a JSON object, got {}",
                kind_of(&other)
            ))),
            Err(e) => Err(GuestError::InvalidInput(format!(
                "input is not valid JSON: {e}"
            ))),
        }
    }

    /// Builds inputs from an object (used by tests and native callers).
    pub fn from_map(map: Map<String, Value>) -> Self {
        Self { map }
    }

    /// The raw value under `key`.
    pub fn raw(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Every key with its value, in the order the document gave them.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.map.iter()
    }

    /// The first of `keys` that is present, as a string (numbers and booleans
    /// are rendered); empty strings count as absent.
    pub fn text(&self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|k| match self.raw(k)? {
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
    }

    /// Like [`Inputs::text`], but missing is an `InvalidInput` error naming the keys.
    pub fn require_text(&self, keys: &[&str]) -> Result<String, GuestError> {
        self.text(keys).ok_or_else(|| {
            GuestError::InvalidInput(format!("missing required input `{}`", keys.join("` or `")))
        })
    }

    /// The first of `keys` that is present, decoded as `T`: a JSON value is
    /// used as is, a string is parsed as JSON first (SPLAI's `*_json` inputs).
    pub fn json<T: DeserializeOwned>(&self, keys: &[&str]) -> Result<Option<T>, GuestError> {
        for key in keys {
            let Some(value) = self.raw(key) else { continue };
            let decoded = match value {
                Value::String(s) if s.trim().is_empty() => continue,
                Value::String(s) => serde_json::from_str::<T>(s),
                other => serde_json::from_value::<T>(other.clone()),
            };
            return decoded
                .map(Some)
                .map_err(|e| GuestError::InvalidInput(format!("input `{key}` is not valid: {e}")));
        }
        Ok(None)
    }

    /// A boolean flag: JSON booleans, or the strings true/false/1/0/yes/no.
    pub fn flag(&self, keys: &[&str], default: bool) -> Result<bool, GuestError> {
        for key in keys {
            match self.raw(key) {
                None => continue,
                Some(Value::Bool(b)) => return Ok(*b),
                Some(Value::String(s)) => {
                    return match s.trim().to_ascii_lowercase().as_str() {
                        "true" | "1" | "yes" => Ok(true),
                        "false" | "0" | "no" => Ok(false),
                        "" => Ok(default),
                        other => Err(GuestError::InvalidInput(format!(
                            "input `{key}` must be true or false, got `{other}`"
                        ))),
                    };
                }
                Some(Value::Number(n)) => return Ok(n.as_f64() != Some(0.0)),
                Some(other) => {
                    return Err(GuestError::InvalidInput(format!(
                        "input `{key}` must be a boolean, got {}",
                        kind_of(other)
                    )));
                }
            }
        }
        Ok(default)
    }

    /// A non-negative integer: a JSON number or a decimal string.
    pub fn count(&self, keys: &[&str], default: usize) -> Result<usize, GuestError> {
        for key in keys {
            let parsed = match self.raw(key) {
                None => continue,
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(s)) if s.trim().is_empty() => continue,
                Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
                Some(_) => None,
            };
            return parsed.map(|n| n as usize).ok_or_else(|| {
                GuestError::InvalidInput(format!("input `{key}` must be a non-negative integer"))
            });
        }
        Ok(default)
    }

    /// A list of names: a JSON array of strings, a JSON string holding such an
    /// array, or a comma-separated string.
    pub fn names(&self, keys: &[&str]) -> Result<Vec<String>, GuestError> {
        for key in keys {
            let names = match self.raw(key) {
                None => continue,
                Some(Value::String(s)) if s.trim_start().starts_with('[') => {
                    serde_json::from_str::<Vec<String>>(s).map_err(|e| {
                        GuestError::InvalidInput(format!(
                            "input `{key}` is not a list of names: {e}"
                        ))
                    })?
                }
                Some(Value::String(s)) => s.split(',').map(|p| p.trim().to_string()).collect(),
                Some(v @ Value::Array(_)) => serde_json::from_value::<Vec<String>>(v.clone())
                    .map_err(|e| {
                        GuestError::InvalidInput(format!(
                            "input `{key}` is not a list of names: {e}"
                        ))
                    })?,
                Some(other) => {
                    return Err(GuestError::InvalidInput(format!(
                        "input `{key}` must be a list of names, got {}",
                        kind_of(other)
                    )));
                }
            };
            return Ok(names.into_iter().filter(|n| !n.is_empty()).collect());
        }
        Ok(Vec::new())
    }
}

/// A short name for a JSON value's type, for error messages.
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_splai_strings_and_plain_json_alike() {
        let splai =
            Inputs::parse(r#"{"items_json":"[{\"a\":1}]","top_k":"3","strict":"false"}"#).unwrap();
        let plain = Inputs::parse(r#"{"items_json":[{"a":1}],"top_k":3,"strict":false}"#).unwrap();
        for inputs in [splai, plain] {
            let items: Vec<Value> = inputs.json(&["items_json"]).unwrap().unwrap();
            assert_eq!(items[0]["a"], 1);
            assert_eq!(inputs.count(&["top_k"], 5).unwrap(), 3);
            assert!(!inputs.flag(&["strict"], true).unwrap());
        }
    }

    #[test]
    fn rejects_non_objects_and_bad_values() {
        assert!(
            matches!(Inputs::parse("[1]"), Err(GuestError::InvalidInput(m)) if m.contains("an array"))
        );
        assert!(matches!(
            Inputs::parse("{"),
            Err(GuestError::InvalidInput(_))
        ));
        let inputs = Inputs::parse(r#"{"top_k":"-1","flag":"maybe","j":"{"}"#).unwrap();
        assert!(inputs.count(&["top_k"], 5).is_err());
        assert!(inputs.flag(&["flag"], true).is_err());
        assert!(inputs.json::<Value>(&["j"]).is_err());
        assert!(
            matches!(inputs.require_text(&["query", "text"]), Err(GuestError::InvalidInput(m)) if m.contains("`query` or `text`"))
        );
    }

    #[test]
    fn names_accept_commas_and_arrays() {
        let a = Inputs::parse(r#"{"f":"a, b,,c"}"#).unwrap();
        assert_eq!(a.names(&["f"]).unwrap(), ["a", "b", "c"]);
        let b = Inputs::parse(r#"{"f":"[\"x\",\"y\"]"}"#).unwrap();
        assert_eq!(b.names(&["f"]).unwrap(), ["x", "y"]);
        let c = Inputs::parse(r#"{"f":["z"]}"#).unwrap();
        assert_eq!(c.names(&["f"]).unwrap(), ["z"]);
    }
}
