//! The members of a token's JOSE header and claims set that verification reads, parsed in one
//! pass over their JSON text and borrowed from it.
//!
//! Building a `serde_json::Map` of every member costs an allocation per name and per string
//! value, and a profile of a cold RS256 verification showed that parse as the largest cost
//! after the signature itself. This parse keeps only the members it names (as [`Member`]s that
//! borrow from the text), parses every other member's value as fully as `serde_json::Value`
//! would (escapes, surrogates, number ranges, nesting depth) and drops it, and refuses a
//! duplicate member name at the top level, known or not, compared after unescaping.
//!
//! [`strict_object`] is the other parse of the same texts: a whole `serde_json::Map`, for the
//! tools that print a token's members, for the receivers and for introspection answers. The two
//! accept exactly the same texts (unit tests and a property test compare them), so the verifier
//! never disagrees with the rest of the crate about which tokens are well formed.
//!
//! Both refuse any object, at any depth, with a member name that starts with
//! `$serde_json::private::`. `serde_json` reserves those names: with its `raw_value` feature
//! (which `axum`'s `json` feature turns on) `serde_json::Value` reads
//! `{"$serde_json::private::RawValue":"\"admin\""}` as the string `"admin"`, and with
//! `arbitrary_precision` it reads `$serde_json::private::Number` objects as numbers. A claim
//! that one parser sees as an object and another as a string is a parser differential, the
//! kind of bypass RFC 8725 §3.7 warns about; no issuer has a reason to send such a name.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::Rejection;

/// A member's value, as much of it as verification reads. No `Debug`: it holds claim values.
pub(crate) enum Member<'a> {
    /// A string, borrowed from the text unless it had escapes.
    Str(Cow<'a, str>),
    /// A number.
    Num(Number),
    /// An array: each item a string (`Some`) or something else (`None`).
    List(Vec<Option<Cow<'a, str>>>),
    /// `null`, a boolean or an object.
    Other,
}

impl<'a> Member<'a> {
    /// The member of an already parsed value (an introspection answer's members).
    pub(crate) fn of(value: &'a Value) -> Self {
        match value {
            Value::String(s) => Member::Str(Cow::Borrowed(s)),
            Value::Number(n) => Member::Num(n.clone()),
            Value::Array(items) => {
                Member::List(items.iter().map(|i| i.as_str().map(Cow::Borrowed)).collect())
            }
            Value::Null | Value::Bool(_) | Value::Object(_) => Member::Other,
        }
    }

    /// The string, when the member is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Member::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A set of named members parsed out of one JSON object.
pub(crate) trait Members<'a>: Default {
    /// The member names this set keeps.
    const NAMES: &'static [&'static str];

    /// Where the member `name` goes, `None` if the set does not keep it.
    fn slot(&mut self, name: &str) -> Option<&mut Option<Member<'a>>>;

    /// The set's members of an already parsed object.
    fn from_map(map: &'a Map<String, Value>) -> Self {
        let mut members = Self::default();
        for name in Self::NAMES {
            if let (Some(value), Some(slot)) = (map.get(*name), members.slot(name)) {
                *slot = Some(Member::of(value));
            }
        }
        members
    }
}

/// Declares a [`Members`] set: one field per member name, so the names cannot drift from the
/// fields.
macro_rules! members {
    ($(#[$doc:meta])* $set:ident { $($field:ident = $name:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Default)]
        pub(crate) struct $set<'a> {
            $(pub(crate) $field: Option<Member<'a>>,)*
        }

        impl<'a> Members<'a> for $set<'a> {
            const NAMES: &'static [&'static str] = &[$($name),*];

            fn slot(&mut self, name: &str) -> Option<&mut Option<Member<'a>>> {
                match name {
                    $($name => Some(&mut self.$field),)*
                    _ => None,
                }
            }
        }
    };
}

members!(
    /// The JOSE header members the verifier reads (RFC 7515 §4.1).
    Header { alg = "alg", kid = "kid", typ = "typ", crit = "crit" }
);

members!(
    /// The claims the verifier checks and the principal keeps (RFC 7519 §4.1, RFC 9068 §2.2,
    /// RFC 8693 §4.2–4.3).
    Claims {
        iss = "iss",
        sub = "sub",
        aud = "aud",
        exp = "exp",
        nbf = "nbf",
        iat = "iat",
        jti = "jti",
        client_id = "client_id",
        azp = "azp",
        sid = "sid",
        scope = "scope",
        scp = "scp",
        events = "events",
    }
);

/// The prefix of the member names `serde_json` reserves for itself (see the module docs).
const RESERVED_PREFIX: &str = "$serde_json::private::";

/// Whether `name` is one of the member names `serde_json` reserves; an object with one is
/// malformed.
fn reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

fn reserved_name<E: de::Error>() -> E {
    de::Error::custom("member name reserved by serde_json")
}

/// Parses `json`, a JSON object without duplicate member names at its top level, into `M`.
pub(crate) fn parse<'a, M: Members<'a>>(json: &'a str) -> Result<M, Rejection> {
    serde_json::from_str::<Strict<M>>(json).map(|strict| strict.0).map_err(|_| Rejection::Malformed)
}

struct Strict<M>(M);

impl<'de, M: Members<'de>> Deserialize<'de> for Strict<M> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StrictVisitor<M>(PhantomData<M>);

        impl<'de, M: Members<'de>> Visitor<'de> for StrictVisitor<M> {
            type Value = Strict<M>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Strict<M>, A::Error> {
                let duplicate = || de::Error::custom("duplicate member name");
                let mut members = M::default();
                // The names of the members not kept, to find duplicates among them at the end
                // (sorting: a token may have a thousand members; comparing all pairs would not do).
                let mut others: Vec<Cow<'de, str>> = Vec::new();
                while let Some(Name(name)) = access.next_key()? {
                    if reserved(&name) {
                        return Err(reserved_name());
                    }
                    match members.slot(&name) {
                        Some(Some(_)) => return Err(duplicate()),
                        Some(slot) => *slot = Some(access.next_value()?),
                        None => {
                            access.next_value::<Checked>()?;
                            others.push(name);
                        }
                    }
                }
                others.sort_unstable();
                if others.windows(2).any(|pair| pair[0] == pair[1]) {
                    return Err(duplicate());
                }
                Ok(Strict(members))
            }
        }

        d.deserialize_map(StrictVisitor(PhantomData))
    }
}

/// A member name, borrowed from the text unless it had escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NameVisitor;

        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }

            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(s)))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(s.to_owned())))
            }
        }

        d.deserialize_str(NameVisitor)
    }
}

impl<'de> Deserialize<'de> for Member<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MemberVisitor;

        impl<'de> Visitor<'de> for MemberVisitor {
            type Value = Member<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Member<'de>, E> {
                Ok(Member::Other)
            }

            fn visit_unit<E: de::Error>(self) -> Result<Member<'de>, E> {
                Ok(Member::Other)
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Member<'de>, E> {
                Ok(Member::Num(n.into()))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Member<'de>, E> {
                Ok(Member::Num(n.into()))
            }

            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Member<'de>, E> {
                // As `serde_json::Value` does: a float that is no JSON number reads as null.
                Ok(Number::from_f64(n).map_or(Member::Other, Member::Num))
            }

            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Member<'de>, E> {
                Ok(Member::Str(Cow::Borrowed(s)))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Member<'de>, E> {
                Ok(Member::Str(Cow::Owned(s.to_owned())))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Member<'de>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Member<'de>>()? {
                    items.push(match item {
                        Member::Str(s) => Some(s),
                        _ => None,
                    });
                }
                Ok(Member::List(items))
            }

            fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Member<'de>, A::Error> {
                Checked::drain_map(access)?;
                Ok(Member::Other)
            }
        }

        d.deserialize_any(MemberVisitor)
    }
}

/// Any JSON value, parsed as fully as `serde_json::Value` parses it, then dropped.
struct Checked;

impl Checked {
    fn drain_map<'de, A: MapAccess<'de>>(mut access: A) -> Result<Checked, A::Error> {
        while let Some(Name(name)) = access.next_key()? {
            if reserved(&name) {
                return Err(reserved_name());
            }
            access.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CheckedVisitor;

        impl<'de> Visitor<'de> for CheckedVisitor {
            type Value = Checked;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Checked, E> {
                Ok(Checked)
            }

            fn visit_unit<E: de::Error>(self) -> Result<Checked, E> {
                Ok(Checked)
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Checked, E> {
                Ok(Checked)
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Checked, E> {
                Ok(Checked)
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Checked, E> {
                Ok(Checked)
            }

            // `visit_str` (not `IgnoredAny`): a string is unescaped like `Value` does, so a lone
            // surrogate escape is refused here too.
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Checked, E> {
                Ok(Checked)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
                while seq.next_element::<Checked>()?.is_some() {}
                Ok(Checked)
            }

            fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Checked, A::Error> {
                Checked::drain_map(access)
            }
        }

        d.deserialize_any(CheckedVisitor)
    }
}

/// Parses a JSON object, refusing duplicate member names at its top level (RFC 8725 §3.7 /
/// RFC 7515 §5.2: a duplicate makes the meaning depend on the parser) and reserved member
/// names at any depth (see the module docs).
pub(crate) fn strict_object(json: &[u8]) -> Result<Map<String, Value>, Rejection> {
    struct StrictObject(Map<String, Value>);

    impl<'de> Deserialize<'de> for StrictObject {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct StrictObjectVisitor;

            impl<'de> Visitor<'de> for StrictObjectVisitor {
                type Value = StrictObject;

                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a JSON object")
                }

                fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictObject, A::Error> {
                    let mut map = Map::new();
                    while let Some(Name(name)) = access.next_key()? {
                        if reserved(&name) {
                            return Err(reserved_name());
                        }
                        let Plain(value) = access.next_value()?;
                        // One search of the map per member: the entry says whether it is new.
                        match map.entry(name.into_owned()) {
                            serde_json::map::Entry::Vacant(slot) => {
                                slot.insert(value);
                            }
                            serde_json::map::Entry::Occupied(_) => {
                                return Err(de::Error::custom("duplicate member name"));
                            }
                        }
                    }
                    Ok(StrictObject(map))
                }
            }

            d.deserialize_map(StrictObjectVisitor)
        }
    }

    serde_json::from_slice::<StrictObject>(json).map(|o| o.0).map_err(|_| Rejection::Malformed)
}

/// A `serde_json::Value` built the way `Value` builds itself, except that an object with a
/// reserved member name is refused instead of being read as a raw value or a number.
struct Plain(Value);

impl<'de> Deserialize<'de> for Plain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PlainVisitor;

        impl<'de> Visitor<'de> for PlainVisitor {
            type Value = Plain;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Plain, E> {
                Ok(Plain(Value::Bool(b)))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Plain, E> {
                Ok(Plain(Value::Null))
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Plain, E> {
                Ok(Plain(Value::Number(n.into())))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Plain, E> {
                Ok(Plain(Value::Number(n.into())))
            }

            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Plain, E> {
                Ok(Plain(Number::from_f64(n).map_or(Value::Null, Value::Number)))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Plain, E> {
                Ok(Plain(Value::String(s.to_owned())))
            }

            fn visit_string<E: de::Error>(self, s: String) -> Result<Plain, E> {
                Ok(Plain(Value::String(s)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Plain, A::Error> {
                let mut items = Vec::new();
                while let Some(Plain(item)) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Plain(Value::Array(items)))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Plain, A::Error> {
                let mut map = Map::new();
                while let Some(Name(name)) = access.next_key()? {
                    if reserved(&name) {
                        return Err(reserved_name());
                    }
                    let Plain(value) = access.next_value()?;
                    // As `Value` does below the top level: a later duplicate wins.
                    map.insert(name.into_owned(), value);
                }
                Ok(Plain(Value::Object(map)))
            }
        }

        d.deserialize_any(PlainVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Objects on which a one-pass parser could disagree with `serde_json::Value`.
    const TRICKY: &[&str] = &[
        r#"{}"#,
        r#" { "a" : 1 } "#,
        r#"{"a":1,"b":2}"#,
        r#"{"a":1,"a":2}"#,
        r#"{"a":1,"\u0061":2}"#,
        r#"{"iss":"x","\u0069ss":"y"}"#,
        r#"{"iss":"x","iss":"x"}"#,
        r#"{"x":{"a":1,"a":2}}"#,
        r#"{"x":"\ud800"}"#,
        r#"{"x":"\udc00\ud800"}"#,
        r#"{"x":"\ud83d\ude00"}"#,
        r#"{"sub":"\ud800"}"#,
        r#"{"x":["\ud800"]}"#,
        r#"{"x":{"\ud800":1}}"#,
        r#"{"x":"\q"}"#,
        r#"{"x":"a	b"}"#,
        r#"{"x":1e400}"#,
        r#"{"exp":1e400}"#,
        r#"{"x":-1e400}"#,
        r#"{"x":1e-400}"#,
        r#"{"x":18446744073709551616}"#,
        r#"{"x":-9223372036854775809}"#,
        r#"{"x":-0}"#,
        r#"{"x":01}"#,
        r#"{"x":1.}"#,
        r#"{"x":.1}"#,
        r#"{"x":+1}"#,
        r#"{"x":NaN}"#,
        r#"{"x":true,"y":false,"z":null}"#,
        r#"{"x":tru}"#,
        r#"{"x":[1,2,]}"#,
        r#"{"x":1,}"#,
        r#"{"x":1} x"#,
        r#"{"x":1}{}"#,
        r#"{"aud":["a",["b"],{"c":1}]}"#,
        r#"{"x":1"#,
        r#"{x:1}"#,
        r#"{'x':1}"#,
        r#"[]"#,
        r#"1"#,
        r#""s""#,
        r#"null"#,
        "",
        "{\"x\":\"\u{feff}\"}",
        "\u{feff}{}",
        r#"{"x":{"$serde_json::private::RawValue":1}}"#,
        r#"{"x":{"$serde_json::private::RawValue":"\"api\""}}"#,
        r#"{"aud":{"$serde_json::private::RawValue":"\"api\""}}"#,
        r#"{"$serde_json::private::RawValue":"{}"}"#,
        r#"{"x":{"$serde_json::private::Number":"1"}}"#,
        r#"{"x":{"\u0024serde_json::private::RawValue":"1"}}"#,
        r#"{"x":[{"$serde_json::private::RawValue":"1"}]}"#,
        r#"{"x":{"a":1,"$serde_json::private::Other":2}}"#,
        r#"{"x":{"$serde_json::privat":1,"serde_json::private::":2}}"#,
    ];

    /// Objects with a member name `serde_json` reserves: refused by both parses, at any depth.
    const RESERVED: &[&str] = &[
        r#"{"x":{"$serde_json::private::RawValue":1}}"#,
        r#"{"x":{"$serde_json::private::RawValue":"\"admin\""}}"#,
        r#"{"role":{"$serde_json::private::RawValue":"\"admin\""}}"#,
        r#"{"aud":{"$serde_json::private::RawValue":"\"api\""}}"#,
        r#"{"alg":{"$serde_json::private::RawValue":"\"RS256\""}}"#,
        r#"{"$serde_json::private::RawValue":"{}"}"#,
        r#"{"$serde_json::private::Number":"1"}"#,
        r#"{"x":{"$serde_json::private::Number":"1"}}"#,
        r#"{"x":{"\u0024serde_json::private::RawValue":"1"}}"#,
        r#"{"x":[{"$serde_json::private::RawValue":"1"}]}"#,
        r#"{"aud":["a",{"$serde_json::private::RawValue":"1"}]}"#,
        r#"{"x":{"a":1,"$serde_json::private::Other":2}}"#,
        r#"{"x":{"y":{"z":[[{"$serde_json::private::RawValue":"null"}]]}}}"#,
    ];

    fn agree(json: &str) {
        let by_map = strict_object(json.as_bytes()).is_ok();
        let by_members = parse::<Claims<'_>>(json).is_ok();
        assert_eq!(by_members, by_map, "{json:?}");
        assert_eq!(parse::<Header<'_>>(json).is_ok(), by_map, "{json:?}");
    }

    #[test]
    fn accepts_exactly_what_the_map_parse_accepts() {
        for json in TRICKY {
            agree(json);
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        agree(&deep);
        let deep_known = format!("{{\"aud\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        agree(&deep_known);
        // Depths around serde_json's recursion limit.
        for depth in 120..135 {
            agree(&format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth)));
            agree(&format!("{{\"aud\":{}1{}}}", "[".repeat(depth), "]".repeat(depth)));
            agree(&format!("{{\"a\":{}1{}}}", "{\"b\":".repeat(depth), "}".repeat(depth)));
        }
    }

    #[test]
    fn reserved_member_names_are_refused_by_both_parses() {
        for json in RESERVED {
            assert_eq!(strict_object(json.as_bytes()).err(), Some(Rejection::Malformed), "{json:?}");
            assert_eq!(parse::<Claims<'_>>(json).err(), Some(Rejection::Malformed), "{json:?}");
            assert_eq!(parse::<Header<'_>>(json).err(), Some(Rejection::Malformed), "{json:?}");
        }
        // Names that only look like the reserved prefix are ordinary members.
        let near = r#"{"x":{"$serde_json::privat":1,"serde_json::private::":2,"$Serde_json::private::":3}}"#;
        assert!(strict_object(near.as_bytes()).is_ok());
        assert!(parse::<Claims<'_>>(near).is_ok());
    }

    /// With `arbitrary_precision` on, `serde_json::Value` would keep `1e400` as a number where
    /// the member parse reads an `f64`, and read `$serde_json::private::Number` objects as
    /// numbers; if a dependency ever turns it on, this fails first.
    #[test]
    fn serde_json_arbitrary_precision_is_off() {
        assert!(serde_json::from_str::<Value>("1e400").is_err());
        assert!(serde_json::from_str::<Value>("18446744073709551616").unwrap().is_f64());
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]

        /// The member parse and the map parse accept the same texts, on texts built from the
        /// parts where parsers differ: escapes, surrogates, odd numbers, duplicates, reserved
        /// names, nesting and stray bytes.
        #[test]
        fn member_parse_agrees_with_the_map_parse(json in json_like()) {
            let by_map = strict_object(json.as_bytes()).is_ok();
            proptest::prop_assert_eq!(parse::<Claims<'_>>(&json).is_ok(), by_map, "{:?}", json);
            proptest::prop_assert_eq!(parse::<Header<'_>>(&json).is_ok(), by_map, "{:?}", json);
        }
    }

    /// Texts that are JSON objects, or nearly: members drawn from known claim names, escaped
    /// and reserved names, with values from a small grammar of tricky leaves.
    fn json_like() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;

        let name = prop_oneof![
            Just("iss".to_owned()),
            Just("aud".to_owned()),
            Just("exp".to_owned()),
            Just("alg".to_owned()),
            Just("kid".to_owned()),
            Just("crit".to_owned()),
            Just("\\u0069ss".to_owned()),
            Just("a".to_owned()),
            Just("\\u0061".to_owned()),
            Just("$serde_json::private::RawValue".to_owned()),
            Just("\\u0024serde_json::private::Number".to_owned()),
            Just("\\ud800".to_owned()),
            "[a-z]{1,3}",
        ];
        let good_leaf = prop_oneof![
            Just("1".to_owned()),
            Just("-0".to_owned()),
            Just("1e-400".to_owned()),
            Just("18446744073709551616".to_owned()),
            Just("-9223372036854775809".to_owned()),
            Just("true".to_owned()),
            Just("null".to_owned()),
            Just("\"s\"".to_owned()),
            Just("\"\\ud83d\\ude00\"".to_owned()),
            Just("\"\\\"admin\\\"\"".to_owned()),
            "-?[0-9]{1,25}(\\.[0-9]{1,5})?([eE][+-]?[0-9]{1,3})?",
        ];
        let bad_leaf = prop_oneof![
            Just("1e400".to_owned()),
            Just("-1e400".to_owned()),
            Just("01".to_owned()),
            Just("1.".to_owned()),
            Just("tru".to_owned()),
            Just("\"\\ud800\"".to_owned()),
            Just("\"\\q\"".to_owned()),
            Just("\"a\tb\"".to_owned()),
        ];
        let leaf = prop_oneof![12 => good_leaf, 1 => bad_leaf];
        let member = (name.clone(), leaf.clone()).prop_map(|(n, v)| format!("\"{n}\":{v}"));
        let value = leaf.prop_recursive(4, 24, 4, move |inner| {
            let member = (name.clone(), inner.clone()).prop_map(|(n, v)| format!("\"{n}\":{v}"));
            prop_oneof![
                proptest::collection::vec(inner, 0..4).prop_map(|items| format!("[{}]", items.join(","))),
                proptest::collection::vec(member, 0..4).prop_map(|ms| format!("{{{}}}", ms.join(","))),
            ]
        });
        let top_member = prop_oneof![member, (Just("x"), value).prop_map(|(n, v)| format!("\"{n}\":{v}"))];
        let tail =
            prop_oneof![8 => Just(""), 1 => Just(" "), 1 => Just(","), 1 => Just("}"), 1 => Just(" x")];
        (proptest::collection::vec(top_member, 0..6), tail)
            .prop_map(|(members, tail)| format!("{{{}}}{tail}", members.join(",")))
    }

    #[test]
    fn duplicates_among_many_members_are_found() {
        let many: Vec<String> = (0..2_000).map(|i| format!("\"m{i}\":{i}")).collect();
        let unique = format!("{{{}}}", many.join(","));
        assert!(parse::<Claims<'_>>(&unique).is_ok());
        let repeated = format!("{{{},\"m1999\":0}}", many.join(","));
        assert_eq!(parse::<Claims<'_>>(&repeated).err(), Some(Rejection::Malformed));
    }

    #[test]
    fn keeps_the_named_members_borrowed_unless_escaped() {
        let claims: Claims<'_> =
            parse(r#"{"iss":"https://i","sub":"a\/b","aud":["x",1],"exp":10.5,"crit":1}"#).unwrap();
        assert!(matches!(claims.iss, Some(Member::Str(Cow::Borrowed("https://i")))));
        assert!(matches!(claims.sub, Some(Member::Str(Cow::Owned(ref s))) if s == "a/b"));
        assert!(
            matches!(claims.aud, Some(Member::List(ref items)) if items.len() == 2 && items[1].is_none())
        );
        assert!(matches!(claims.exp, Some(Member::Num(ref n)) if n.as_f64() == Some(10.5)));
        assert!(claims.nbf.is_none());
        let header: Header<'_> = parse(r#"{"alg":"RS256","crit":null}"#).unwrap();
        assert!(matches!(header.crit, Some(Member::Other)));
        assert_eq!(header.alg.as_ref().and_then(Member::as_str), Some("RS256"));
    }

    #[test]
    fn from_map_reads_the_same_members() {
        let json = r#"{"iss":"i","aud":["a",true],"exp":5,"other":"o"}"#;
        let map = strict_object(json.as_bytes()).unwrap();
        let claims = Claims::from_map(&map);
        assert_eq!(claims.iss.as_ref().and_then(Member::as_str), Some("i"));
        assert!(
            matches!(claims.aud, Some(Member::List(ref items)) if items.len() == 2 && items[1].is_none())
        );
        assert!(matches!(claims.exp, Some(Member::Num(ref n)) if n.as_i64() == Some(5)));
        assert!(claims.sub.is_none());
    }
}
