//! Reads a JSON list of documents without copying what it need not: an id
//! or text without escapes borrows from the list's own text, and metadata
//! stays the JSON it arrived in until a filter or a result needs it.

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// One document as given: a string, or `{id, text (or content), metadata}`.
pub enum DocInput<'a> {
    Text(Cow<'a, str>),
    Object {
        id: Option<Cow<'a, str>>,
        text: Option<Cow<'a, str>>,
        /// The metadata object's JSON, as given.
        metadata: Option<&'a str>,
    },
}

/// Parses a JSON list of documents, passing each with its position to
/// `convert` as it is read (no list of [`DocInput`]s is built first).
pub fn parse<'a, T>(
    text: &'a str,
    convert: impl FnMut(usize, DocInput<'a>) -> Result<T, String>,
) -> Result<Vec<T>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let docs = List(convert, std::marker::PhantomData).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(docs)
}

/// A list of documents, each converted as it is read.
struct List<F, T>(F, std::marker::PhantomData<T>);

impl<'de, T, F: FnMut(usize, DocInput<'de>) -> Result<T, String>> DeserializeSeed<'de>
    for List<F, T>
{
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<T>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, T, F: FnMut(usize, DocInput<'de>) -> Result<T, String>> Visitor<'de> for List<F, T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of documents")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut docs = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(doc) = seq.next_element()? {
            docs.push((self.0)(docs.len(), doc).map_err(de::Error::custom)?);
        }
        Ok(docs)
    }
}

/// Read field by field rather than through `#[serde(untagged)]`, which
/// buffers every document into an intermediate tree first.
impl<'de> Deserialize<'de> for DocInput<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = DocInput<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a document: a string, or an object with `text`")
            }

            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(DocInput::Text(Cow::Borrowed(text)))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(DocInput::Text(Cow::Owned(text.to_owned())))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut id, mut text, mut metadata) = (None, None, None);
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    match key.0.as_ref() {
                        "id" if id.is_none() => id = Some(map.next_value::<Id<'de>>()?.0),
                        "text" | "content" if text.is_none() => {
                            text = Some(map.next_value::<Option<Str<'de>>>()?.map(|s| s.0));
                        }
                        "metadata" if metadata.is_none() => {
                            let raw: &'de RawValue = map.next_value()?;
                            if !raw.get().starts_with('{') {
                                return Err(de::Error::custom("`metadata` must be an object"));
                            }
                            metadata = Some(raw.get());
                        }
                        "id" | "text" | "content" | "metadata" => {
                            return Err(de::Error::custom(format!("duplicate field `{}`", key.0)));
                        }
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(DocInput::Object {
                    id: id.flatten(),
                    text: text.flatten(),
                    metadata,
                })
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

/// A string, borrowed where the JSON holds it without escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Str<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(s)))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

/// A document id: a string as is, `null` as none, any other value as its
/// JSON rendering.
struct Id<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Id<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Id<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a document id")
            }

            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Id(Some(Cow::Borrowed(s))))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Id(Some(Cow::Owned(s.to_owned()))))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Id(None))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(rendered(Value::from(v)))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(rendered(Value::from(v)))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(rendered(Value::from(v)))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(rendered(Value::from(v)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(rendered)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(rendered)
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

fn rendered<'a>(value: Value) -> Id<'a> {
    Id(Some(Cow::Owned(value.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(doc: &DocInput<'_>) -> (Option<String>, Option<String>, Option<String>) {
        match doc {
            DocInput::Object { id, text, metadata } => (
                id.as_deref().map(str::to_owned),
                text.as_deref().map(str::to_owned),
                metadata.map(str::to_owned),
            ),
            DocInput::Text(_) => panic!("an object"),
        }
    }

    fn parse(text: &str) -> Result<Vec<DocInput<'_>>, serde_json::Error> {
        super::parse(text, |_, doc| Ok(doc))
    }

    #[test]
    fn each_document_is_converted_with_its_position_and_a_refusal_names_where() {
        let positions = super::parse(r#"["a", {"text": "b"}]"#, |i, _| Ok(i)).unwrap();
        assert_eq!(positions, [0, 1]);
        let err = super::parse::<()>(r#"["a", "b"]"#, |i, _| Err(format!("document {i} refused")))
            .unwrap_err();
        assert!(err.to_string().starts_with("document 0 refused"), "{err}");
        assert!(super::parse("[] trailing", |_, doc| Ok(doc)).is_err());
    }

    #[test]
    fn text_without_escapes_is_borrowed_and_with_them_decoded() {
        let list =
            r#"[{"id": "a", "text": "plain words"}, {"id": "b", "text": "say \"hi\"\n"}, "bare"]"#;
        let docs = parse(list).unwrap();
        let DocInput::Object {
            text: Some(plain), ..
        } = &docs[0]
        else {
            panic!("an object")
        };
        assert!(matches!(plain, Cow::Borrowed(_)));
        let at = plain.as_ptr() as usize - list.as_ptr() as usize;
        assert_eq!(&list[at..at + plain.len()], "plain words");
        assert_eq!(object(&docs[1]).1.as_deref(), Some("say \"hi\"\n"));
        assert!(matches!(&docs[2], DocInput::Text(Cow::Borrowed("bare"))));
    }

    #[test]
    fn ids_of_any_kind_are_rendered_and_null_is_none() {
        let docs = parse(r#"[{"id": 7, "text": "x"}, {"id": 1.50, "text": "x"}, {"id": [1, "a"], "text": "x"}, {"id": null, "text": "x"}, {"text": "x", "id": true}]"#).unwrap();
        let ids: Vec<_> = docs.iter().map(|d| object(d).0).collect();
        assert_eq!(
            ids,
            [
                Some("7".into()),
                Some("1.5".into()),
                Some("[1,\"a\"]".into()),
                None,
                Some("true".into())
            ]
        );
    }

    #[test]
    fn metadata_is_kept_as_given_and_must_be_an_object() {
        let docs =
            parse(r#"[{"text": "x", "metadata": {"b": 1, "a": [true]}, "extra": {"ignored": 1}}]"#)
                .unwrap();
        assert_eq!(
            object(&docs[0]).2.as_deref(),
            Some(r#"{"b": 1, "a": [true]}"#)
        );
        for bad in [
            r#"[{"text": "x", "metadata": null}]"#,
            r#"[{"text": "x", "metadata": [1]}]"#,
            r#"[{"text": "x", "text": "y"}]"#,
            r#"[{"text": 5}]"#,
            r#"[5]"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
