//! WIT types as JSON Schema: what a plain function's arguments and result
//! look like as JSON (the mapping `value.rs` reads and writes).
//!
//! | WIT | JSON |
//! |---|---|
//! | `bool` | boolean |
//! | `s8`…`u64` | integer, bounded to the type's range |
//! | `f32`, `f64` | number (a NaN or infinite result is `null`) |
//! | `char` | string of one character |
//! | `string` | string |
//! | `list<T>`, `list<T, N>` | array of T (of exactly N) |
//! | `tuple<A, B>` | array `[A, B]` |
//! | `record` | object, one property per field (an `option` field may be left out) |
//! | `variant` | `"case"` for a case without a value, `{"case": value}` for one with |
//! | `enum` | string, one of the names |
//! | `option<T>` | T, or `null` for none |
//! | `result<T, E>` | `{"ok": T}` or `{"err": E}` (`null` for a missing type) |
//! | `flags` | array of the names that are set |
//! | `map<string, V>` | object; other keys: array of `[key, value]` pairs |
//!
//! Resources, futures, streams and error contexts have no JSON form: a
//! function that uses one is not offered.

use serde_json::{Value, json};
use wasmtime::component::types::Type;

/// A type with no JSON form, by its WIT name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("uses a {0}, which has no JSON form")]
pub struct Unsupported(pub &'static str);

/// The JSON Schema of values of `ty`.
pub fn of(ty: &Type) -> Result<Value, Unsupported> {
    Ok(match ty {
        Type::Bool => json!({"type": "boolean"}),
        Type::S8 => integer(i8::MIN.into(), i8::MAX.into()),
        Type::U8 => integer(0, u8::MAX.into()),
        Type::S16 => integer(i16::MIN.into(), i16::MAX.into()),
        Type::U16 => integer(0, u16::MAX.into()),
        Type::S32 => integer(i32::MIN.into(), i32::MAX.into()),
        Type::U32 => integer(0, u32::MAX.into()),
        Type::S64 => integer(i64::MIN.into(), i64::MAX.into()),
        Type::U64 => integer(0, u64::MAX.into()),
        Type::Float32 | Type::Float64 => json!({"type": "number"}),
        Type::Char => json!({"type": "string", "minLength": 1, "maxLength": 1}),
        Type::String => json!({"type": "string"}),
        Type::List(list) => json!({"type": "array", "items": of(&list.ty())?}),
        Type::FixedLengthList(list) => json!({
            "type": "array", "items": of(&list.ty())?,
            "minItems": list.len(), "maxItems": list.len()
        }),
        Type::Tuple(tuple) => {
            let items = tuple
                .types()
                .map(|t| of(&t))
                .collect::<Result<Vec<_>, _>>()?;
            json!({
                "type": "array", "prefixItems": items,
                "minItems": items.len(), "maxItems": items.len()
            })
        }
        Type::Record(record) => {
            let fields = record.fields().map(|f| (f.name.to_string(), f.ty));
            object(fields)?
        }
        Type::Variant(variant) => {
            let cases = variant
                .cases()
                .map(|case| match &case.ty {
                    None => Ok(json!({"const": case.name})),
                    Some(ty) => Ok(one_property(case.name, of(ty)?)),
                })
                .collect::<Result<Vec<_>, _>>()?;
            json!({"oneOf": cases})
        }
        Type::Enum(e) => json!({"type": "string", "enum": e.names().collect::<Vec<_>>()}),
        Type::Option(option) => json!({"anyOf": [of(&option.ty())?, {"type": "null"}]}),
        Type::Result(result) => {
            let side = |ty: Option<Type>| match ty {
                Some(ty) => of(&ty),
                None => Ok(json!({"type": "null"})),
            };
            json!({"oneOf": [
                one_property("ok", side(result.ok())?),
                one_property("err", side(result.err())?),
            ]})
        }
        Type::Flags(flags) => json!({
            "type": "array", "uniqueItems": true,
            "items": {"type": "string", "enum": flags.names().collect::<Vec<_>>()}
        }),
        Type::Map(map) => match map.key() {
            Type::String => json!({"type": "object", "additionalProperties": of(&map.value())?}),
            key => json!({"type": "array", "items": {
                "type": "array", "prefixItems": [of(&key)?, of(&map.value())?],
                "minItems": 2, "maxItems": 2
            }}),
        },
        Type::Own(_) | Type::Borrow(_) => return Err(Unsupported("resource")),
        Type::Future(_) => return Err(Unsupported("future")),
        Type::Stream(_) => return Err(Unsupported("stream")),
        Type::ErrorContext => return Err(Unsupported("error-context")),
    })
}

/// The schema of an object with one property per `(name, type)`: each is
/// required unless it is an `option`, and no others are allowed.
pub fn object(fields: impl Iterator<Item = (String, Type)>) -> Result<Value, Unsupported> {
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for (name, ty) in fields {
        if !matches!(ty, Type::Option(_)) {
            required.push(Value::String(name.clone()));
        }
        properties.insert(name, of(&ty)?);
    }
    Ok(json!({
        "type": "object", "properties": properties,
        "required": required, "additionalProperties": false
    }))
}

fn integer(minimum: i128, maximum: i128) -> Value {
    // Every bound fits an i64 or a u64, so it stays an exact JSON integer.
    let bound = |n: i128| match i64::try_from(n) {
        Ok(n) => Value::from(n),
        Err(_) => Value::from(n as u64),
    };
    json!({"type": "integer", "minimum": bound(minimum), "maximum": bound(maximum)})
}

fn one_property(name: &str, schema: Value) -> Value {
    json!({
        "type": "object", "properties": {name: schema},
        "required": [name], "additionalProperties": false
    })
}
