//! Verdict reasons on the wire: by the names `bpfnet stats` prints (`drop-isolation`),
//! `Reason::name` one way and `parse` the other.
use common::Reason;
use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};

#[derive(Debug, thiserror::Error)]
#[error("unknown reason `{name}` (see `bpfnet stats` for the names)")]
pub struct UnknownReason {
    pub name: String,
}

/// A reason by its name.
pub fn parse(name: &str) -> Result<Reason, UnknownReason> {
    Reason::ALL
        .iter()
        .copied()
        .find(|r| r.name() == name)
        .ok_or_else(|| UnknownReason { name: name.into() })
}

/// `#[serde(with = "reason::by_name")]` for a `Reason` field.
pub mod by_name {
    use super::*;

    pub fn serialize<S: Serializer>(r: &Reason, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(r.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Reason, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse(&name).map_err(D::Error::custom)
    }
}

/// `#[serde(with = "reason::by_names")]` for a `Vec<Reason>` field.
pub mod by_names {
    use serde::ser::SerializeSeq as _;

    use super::*;

    pub fn serialize<S: Serializer>(rs: &[Reason], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(rs.len()))?;
        for r in rs {
            seq.serialize_element(r.name())?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Reason>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|name| parse(name).map_err(D::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct One {
        #[serde(with = "by_name")]
        reason: Reason,
        #[serde(with = "by_names")]
        reasons: Vec<Reason>,
    }

    #[test]
    fn every_name_parses_back_to_its_reason() {
        for &r in Reason::ALL {
            assert_eq!(parse(r.name()).unwrap(), r, "{}", r.name());
        }
        assert_eq!(
            parse("drop-everything").unwrap_err().name,
            "drop-everything"
        );
    }

    #[test]
    fn reasons_travel_by_name() {
        let one = One {
            reason: Reason::DropIsolation,
            reasons: vec![Reason::DnatNew, Reason::CtReply],
        };
        let json = serde_json::to_string(&one).unwrap();
        assert_eq!(
            json,
            r#"{"reason":"drop-isolation","reasons":["dnat-new","ct-reply"]}"#
        );
        assert_eq!(serde_json::from_str::<One>(&json).unwrap(), one);
        let err = serde_json::from_str::<One>(r#"{"reason":"nonsense","reasons":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown reason `nonsense`"), "{err}");
    }
}
