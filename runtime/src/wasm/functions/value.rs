//! JSON to component values and back, by the mapping `schema.rs` documents.
//! Arguments are checked against the schema first; these conversions still
//! refuse anything that does not fit, naming where.

use serde_json::{Map, Value};
use wasmtime::component::Val;
use wasmtime::component::types::Type;

/// Why a JSON value does not fit a WIT type: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: expected {expected}")]
pub struct Mismatch {
    /// JSON pointer of the value.
    pub at: String,
    /// What the type needs.
    pub expected: String,
}

/// The value of `ty` that `json` (found at `at`) stands for.
pub fn from_json(json: &Value, ty: &Type, at: &str) -> Result<Val, Mismatch> {
    let wrong = |expected: &str| Mismatch {
        at: if at.is_empty() { "/".into() } else { at.into() },
        expected: expected.into(),
    };
    let int = |lo: i128, hi: i128, name: &str| -> Result<i128, Mismatch> {
        let n = json
            .as_i64()
            .map(i128::from)
            .or_else(|| json.as_u64().map(i128::from));
        n.filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| wrong(&format!("an integer that fits {name}")))
    };
    let child = |key: &str| format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
    Ok(match ty {
        Type::Bool => Val::Bool(json.as_bool().ok_or_else(|| wrong("a boolean"))?),
        Type::S8 => Val::S8(int(i8::MIN.into(), i8::MAX.into(), "s8")? as i8),
        Type::U8 => Val::U8(int(0, u8::MAX.into(), "u8")? as u8),
        Type::S16 => Val::S16(int(i16::MIN.into(), i16::MAX.into(), "s16")? as i16),
        Type::U16 => Val::U16(int(0, u16::MAX.into(), "u16")? as u16),
        Type::S32 => Val::S32(int(i32::MIN.into(), i32::MAX.into(), "s32")? as i32),
        Type::U32 => Val::U32(int(0, u32::MAX.into(), "u32")? as u32),
        Type::S64 => Val::S64(int(i64::MIN.into(), i64::MAX.into(), "s64")? as i64),
        Type::U64 => Val::U64(int(0, u64::MAX.into(), "u64")? as u64),
        Type::Float32 => Val::Float32(json.as_f64().ok_or_else(|| wrong("a number"))? as f32),
        Type::Float64 => Val::Float64(json.as_f64().ok_or_else(|| wrong("a number"))?),
        Type::Char => {
            let text = json.as_str().unwrap_or_default();
            let mut chars = text.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => return Err(wrong("a string of one character")),
            }
        }
        Type::String => Val::String(json.as_str().ok_or_else(|| wrong("a string"))?.into()),
        Type::List(list) => Val::List(items(json, &list.ty(), at, None)?),
        Type::FixedLengthList(list) => {
            Val::FixedLengthList(items(json, &list.ty(), at, Some(list.len() as usize))?)
        }
        Type::Tuple(tuple) => {
            let types: Vec<Type> = tuple.types().collect();
            let array = json
                .as_array()
                .filter(|a| a.len() == types.len())
                .ok_or_else(|| wrong(&format!("an array of {}", types.len())))?;
            let values = array
                .iter()
                .zip(&types)
                .enumerate()
                .map(|(i, (v, t))| from_json(v, t, &child(&i.to_string())))
                .collect::<Result<_, _>>()?;
            Val::Tuple(values)
        }
        Type::Record(record) => {
            let fields = json.as_object().ok_or_else(|| wrong("an object"))?;
            let values = record
                .fields()
                .map(|f| field(fields, f.name, &f.ty, &child(f.name)))
                .collect::<Result<_, _>>()?;
            if let Some(extra) = fields
                .keys()
                .find(|k| !record.fields().any(|f| f.name == *k))
            {
                return Err(wrong(&format!("no field `{extra}`")));
            }
            Val::Record(values)
        }
        Type::Variant(variant) => {
            let (name, payload) =
                tagged(json).ok_or_else(|| wrong("a case name, or an object of one case"))?;
            let case = variant.cases().find(|c| c.name == name).ok_or_else(|| {
                wrong(&format!(
                    "one of the cases {}",
                    names(variant.cases().map(|c| c.name))
                ))
            })?;
            let value = match (&case.ty, payload) {
                (None, None | Some(Value::Null)) => None,
                (Some(ty), Some(v)) => Some(Box::new(from_json(v, ty, &child(name))?)),
                (None, Some(_)) => return Err(wrong(&format!("case `{name}` without a value"))),
                (Some(_), None) => return Err(wrong(&format!("`{{\"{name}\": value}}`"))),
            };
            Val::Variant(name.to_string(), value)
        }
        Type::Enum(e) => {
            let name = json
                .as_str()
                .filter(|n| e.names().any(|m| m == *n))
                .ok_or_else(|| wrong(&format!("one of {}", names(e.names()))))?;
            Val::Enum(name.into())
        }
        Type::Option(option) => match json {
            Value::Null => Val::Option(None),
            v => Val::Option(Some(Box::new(from_json(v, &option.ty(), at)?))),
        },
        Type::Result(result) => {
            let side = |ty: Option<Type>, v: &Value, at: &str| match ty {
                Some(ty) => from_json(v, &ty, at).map(|v| Some(Box::new(v))),
                None => Ok(None),
            };
            let object = json.as_object().filter(|o| o.len() == 1);
            match object.and_then(|o| o.iter().next()) {
                Some((k, v)) if k == "ok" => Val::Result(Ok(side(result.ok(), v, &child("ok"))?)),
                Some((k, v)) if k == "err" => {
                    Val::Result(Err(side(result.err(), v, &child("err"))?))
                }
                _ => return Err(wrong("`{\"ok\": value}` or `{\"err\": value}`")),
            }
        }
        Type::Flags(flags) => {
            let set = json
                .as_array()
                .ok_or_else(|| wrong("an array of flag names"))?;
            let mut names_set = Vec::new();
            for name in set {
                match name.as_str().filter(|n| flags.names().any(|m| m == *n)) {
                    Some(n) if !names_set.iter().any(|m: &String| m == n) => {
                        names_set.push(n.to_string())
                    }
                    Some(_) => {}
                    None => return Err(wrong(&format!("flags among {}", names(flags.names())))),
                }
            }
            Val::Flags(names_set)
        }
        Type::Map(map) => {
            let (key_ty, value_ty) = (map.key(), map.value());
            let pairs = match (json, &key_ty) {
                (Value::Object(o), Type::String) => o
                    .iter()
                    .map(|(k, v)| Ok((Val::String(k.clone()), from_json(v, &value_ty, &child(k))?)))
                    .collect::<Result<Vec<_>, Mismatch>>()?,
                (Value::Array(a), _) => a
                    .iter()
                    .enumerate()
                    .map(|(i, pair)| match pair.as_array().map(Vec::as_slice) {
                        Some([k, v]) => {
                            let at = child(&i.to_string());
                            Ok((
                                from_json(k, &key_ty, &format!("{at}/0"))?,
                                from_json(v, &value_ty, &format!("{at}/1"))?,
                            ))
                        }
                        _ => Err(Mismatch {
                            at: child(&i.to_string()),
                            expected: "a [key, value] pair".into(),
                        }),
                    })
                    .collect::<Result<Vec<_>, Mismatch>>()?,
                _ => return Err(wrong("an object, or an array of [key, value] pairs")),
            };
            Val::Map(pairs)
        }
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            return Err(wrong(
                "a value with a JSON form (resources, futures and streams have none)",
            ));
        }
    })
}

/// `val` as JSON.
pub fn to_json(val: &Val) -> Value {
    match val {
        Val::Bool(b) => Value::Bool(*b),
        Val::S8(n) => (*n).into(),
        Val::U8(n) => (*n).into(),
        Val::S16(n) => (*n).into(),
        Val::U16(n) => (*n).into(),
        Val::S32(n) => (*n).into(),
        Val::U32(n) => (*n).into(),
        Val::S64(n) => (*n).into(),
        Val::U64(n) => (*n).into(),
        Val::Float32(f) => float(f64::from(*f)),
        Val::Float64(f) => float(*f),
        Val::Char(c) => Value::String(c.to_string()),
        Val::String(s) => Value::String(s.clone()),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            Value::Array(items.iter().map(to_json).collect())
        }
        Val::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, v)| (name.clone(), to_json(v)))
                .collect(),
        ),
        Val::Variant(name, None) | Val::Enum(name) => Value::String(name.clone()),
        Val::Variant(name, Some(v)) => Value::Object(Map::from_iter([(name.clone(), to_json(v))])),
        Val::Option(v) => v.as_deref().map_or(Value::Null, to_json),
        Val::Result(r) => {
            let (side, v) = match r {
                Ok(v) => ("ok", v),
                Err(v) => ("err", v),
            };
            Value::Object(Map::from_iter([(
                side.to_string(),
                v.as_deref().map_or(Value::Null, to_json),
            )]))
        }
        Val::Flags(names) => Value::Array(names.iter().cloned().map(Value::String).collect()),
        Val::Map(pairs) => {
            if pairs.iter().all(|(k, _)| matches!(k, Val::String(_))) {
                Value::Object(
                    pairs
                        .iter()
                        .map(|(k, v)| match k {
                            Val::String(k) => (k.clone(), to_json(v)),
                            _ => unreachable!("every key is a string"),
                        })
                        .collect(),
                )
            } else {
                Value::Array(
                    pairs
                        .iter()
                        .map(|(k, v)| Value::Array(vec![to_json(k), to_json(v)]))
                        .collect(),
                )
            }
        }
        Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => Value::Null,
    }
}

/// The value of the argument or field `name` of type `ty` in `fields`: an
/// absent `option` is none.
pub fn field(
    fields: &Map<String, Value>,
    name: &str,
    ty: &Type,
    at: &str,
) -> Result<(String, Val), Mismatch> {
    let value = match (fields.get(name), ty) {
        (Some(v), ty) => from_json(v, ty, at)?,
        (None, Type::Option(_)) => Val::Option(None),
        (None, _) => {
            return Err(Mismatch {
                at: at.into(),
                expected: "a value (it is required)".into(),
            });
        }
    };
    Ok((name.to_string(), value))
}

/// A JSON number, or `null` for NaN and the infinities (JSON has neither).
fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// The elements of a JSON array (of `len` elements, when given) as values
/// of `ty`.
fn items(json: &Value, ty: &Type, at: &str, len: Option<usize>) -> Result<Vec<Val>, Mismatch> {
    let array = json
        .as_array()
        .filter(|a| len.is_none_or(|n| a.len() == n))
        .ok_or_else(|| Mismatch {
            at: if at.is_empty() { "/".into() } else { at.into() },
            expected: len.map_or("an array".into(), |n| format!("an array of {n}")),
        })?;
    array
        .iter()
        .enumerate()
        .map(|(i, v)| from_json(v, ty, &format!("{at}/{i}")))
        .collect()
}

/// A case as `"name"` or `{"name": value}`.
fn tagged(json: &Value) -> Option<(&str, Option<&Value>)> {
    match json {
        Value::String(name) => Some((name, None)),
        Value::Object(o) if o.len() == 1 => o.iter().next().map(|(k, v)| (k.as_str(), Some(v))),
        _ => None,
    }
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_become_the_json_the_schema_describes() {
        let point = Val::Record(vec![
            ("x".into(), Val::Float64(1.5)),
            ("y".into(), Val::S32(-2)),
        ]);
        assert_eq!(to_json(&point), json!({"x": 1.5, "y": -2}));
        assert_eq!(to_json(&Val::Variant("dot".into(), None)), json!("dot"));
        assert_eq!(
            to_json(&Val::Variant(
                "circle".into(),
                Some(Box::new(Val::Float32(2.0)))
            )),
            json!({"circle": 2.0})
        );
        assert_eq!(to_json(&Val::Option(None)), Value::Null);
        assert_eq!(to_json(&Val::Result(Ok(None))), json!({"ok": null}));
        assert_eq!(
            to_json(&Val::Result(Err(Some(Box::new(Val::String("no".into())))))),
            json!({"err": "no"})
        );
        assert_eq!(to_json(&Val::Flags(vec!["bold".into()])), json!(["bold"]));
        assert_eq!(to_json(&Val::Char('é')), json!("é"));
        assert_eq!(to_json(&Val::U64(u64::MAX)), json!(u64::MAX));
        assert_eq!(to_json(&Val::Float64(f64::NAN)), Value::Null);
        assert_eq!(
            to_json(&Val::Map(vec![(Val::U8(1), Val::Bool(true))])),
            json!([[1, true]])
        );
        assert_eq!(
            to_json(&Val::Map(vec![(Val::String("k".into()), Val::Bool(true))])),
            json!({"k": true})
        );
    }

    #[test]
    fn scalars_are_read_within_their_type_and_mismatches_say_where() {
        assert_eq!(
            from_json(&json!(255), &Type::U8, "/n").unwrap(),
            Val::U8(255)
        );
        let err = from_json(&json!(256), &Type::U8, "/n").unwrap_err();
        assert_eq!(err.to_string(), "/n: expected an integer that fits u8");
        assert_eq!(from_json(&json!(-1), &Type::U64, "").unwrap_err().at, "/");
        assert_eq!(
            from_json(&json!(u64::MAX), &Type::U64, "").unwrap(),
            Val::U64(u64::MAX)
        );
        assert!(from_json(&json!(1.5), &Type::S32, "").is_err());
        assert_eq!(
            from_json(&json!("ab"), &Type::Char, "")
                .unwrap_err()
                .expected,
            "a string of one character"
        );
        assert_eq!(
            from_json(&json!(2), &Type::Float64, "").unwrap(),
            Val::Float64(2.0)
        );
        let missing = field(&Map::new(), "a", &Type::S32, "/a").unwrap_err();
        assert_eq!(missing.to_string(), "/a: expected a value (it is required)");
    }
}
