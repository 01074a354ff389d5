//! The members of a token's JOSE header and claims set that verification reads, parsed in one
//! pass over their JSON text and borrowed from it.
//!
//! Building a `serde_json::Map` of every member costs an allocation per name and per string
//! value, and a profile of a cold RS256 verification showed that parse as the largest cost
//! after the signature itself. This parse keeps only the members it names (as [`Member`]s that
//! borrow from the text), parses every other member's value as fully as `serde_json::Value`
//! would (escapes, surrogates, number ranges, nesting depth) and drops it, and refuses a
//! duplicate member name at the top level, known or not, compared after unescaping. So it
//! accepts exactly the objects [`strict_object`](super::strict_object) accepts (the tests
//! compare the two), and the verifier never disagrees with the tools that print a token's
//! members about which tokens are well formed.

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
    }
);

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
        while access.next_entry::<Checked, Checked>()?.is_some() {}
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
    ];

    fn agree(json: &str) {
        let by_map = super::super::strict_object(json.as_bytes()).is_ok();
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
        let map = super::super::strict_object(json.as_bytes()).unwrap();
        let claims = Claims::from_map(&map);
        assert_eq!(claims.iss.as_ref().and_then(Member::as_str), Some("i"));
        assert!(
            matches!(claims.aud, Some(Member::List(ref items)) if items.len() == 2 && items[1].is_none())
        );
        assert!(matches!(claims.exp, Some(Member::Num(ref n)) if n.as_i64() == Some(5)));
        assert!(claims.sub.is_none());
    }
}
