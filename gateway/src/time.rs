//! Times in the API: RFC 3339, always UTC with a `Z`
//! (`2026-11-24T01:00:00Z`). Input may carry any offset; it is converted.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct UtcTime(pub DateTime<Utc>);

impl From<DateTime<Utc>> for UtcTime {
    fn from(t: DateTime<Utc>) -> Self {
        Self(t)
    }
}

impl Type for UtcTime {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string_date-time".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "date-time")))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for UtcTime {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(s) => DateTime::parse_from_rfc3339(&s)
                .map(|t| Self(t.with_timezone(&Utc)))
                .map_err(|_| {
                    ParseError::custom("expected an RFC 3339 time such as 2026-11-24T01:00:00Z")
                }),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl<'de> serde::Deserialize<'de> for UtcTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| Self(t.with_timezone(&Utc)))
            .map_err(|_| {
                serde::de::Error::custom("expected an RFC 3339 time such as 2026-11-24T01:00:00Z")
            })
    }
}

impl ToJSON for UtcTime {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(
            self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_z_and_reads_any_offset() {
        let t = UtcTime::parse_from_json(Some(Value::String("2026-11-24T10:00:00+09:00".into())))
            .unwrap();
        assert_eq!(
            t.to_json().unwrap(),
            Value::String("2026-11-24T01:00:00Z".into())
        );
        assert!(UtcTime::parse_from_json(Some(Value::String("yesterday".into()))).is_err());
        assert!(UtcTime::parse_from_json(Some(Value::from(5))).is_err());
    }
}
