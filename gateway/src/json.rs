//! The JSON request body of every endpoint: strict types, and errors that
//! name the field.
//!
//! poem-openapi's own `Json` quietly turns a number into a string and loses
//! the field's name when one is missing. [`JsonBody`] first deserializes
//! with serde (tracking the path, so "name: invalid type: integer `5`,
//! expected a string" or "missing field `password`"), then runs
//! poem-openapi's parser for the validators documented in the schema
//! (lengths, ranges), whose failures are told as sentences ("name: must
//! not be empty", not "field `name` verification failed. minLength(1)").
//! Both failures are `400 VALIDATION`.

use poem::{FromRequest, Request, RequestBody, Result};
use poem_openapi::error::ParseRequestPayloadError;
use poem_openapi::impl_apirequest_for_payload;
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, Type};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A JSON request body of type `T` (an `Object` that also derives
/// `Deserialize`).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        <poem_openapi::payload::Json<T> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

fn invalid(reason: impl Into<String>) -> poem::Error {
    ParseRequestPayloadError {
        reason: reason.into(),
    }
    .into()
}

/// Parses `data` as a `T`; the error is the sentence for the client.
pub fn parse<T: ParseFromJSON + DeserializeOwned>(data: &[u8]) -> Result<T, String> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err("the request body must be a JSON object".into());
    }
    let value: Value = serde_json::from_slice(data).map_err(|e| format!("malformed JSON: {e}"))?;
    if !value.is_object() {
        return Err("the request body must be a JSON object".into());
    }
    if let Err(e) = serde_path_to_error::deserialize::<_, T>(&value) {
        let path = e.path().to_string();
        let inner = plain_number_words(e.into_inner().to_string());
        return Err(if path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        });
    }
    T::parse_from_json(Some(value)).map_err(|e| {
        let message = e.into_message();
        validator_sentence(&message).unwrap_or(message)
    })
}

/// serde names the Rust type a number must fit (`expected u32`); the
/// client is told the range instead.
fn plain_number_words(message: String) -> String {
    const RANGES: [(&str, &str); 4] = [
        (", expected u16", "from 0 to 65535"),
        (", expected u32", "from 0 to 4294967295"),
        (", expected u64", "from 0 to 18446744073709551615"),
        (
            ", expected i64",
            "from -9223372036854775808 to 9223372036854775807",
        ),
    ];
    for (rust, range) in RANGES {
        if let Some(head) = message.strip_suffix(rust) {
            return format!("{head}, expected a whole number {range}");
        }
    }
    message
}

/// poem-openapi reports a failed validator as `failed to parse "Type":
/// field `name` verification failed. minLength(1)` (the email pattern as
/// the whole regular expression); this says the same as a sentence about
/// the field, in the shape of the other messages (`name: must ...`).
/// `None` for any other message.
fn validator_sentence(message: &str) -> Option<String> {
    let (_, rest) = message.split_once(": field `")?;
    let (field, rule) = rest.split_once("` verification failed. ")?;
    let (name, argument) = rule.strip_suffix(')')?.split_once('(')?;
    let (bound, exclusive) = match argument.split_once(", exclusive: ") {
        Some((bound, exclusive)) => (bound, exclusive == "true"),
        None => (argument, false),
    };
    let must = match (name, exclusive) {
        ("minLength", _) if bound == "1" => "must not be empty".to_owned(),
        ("minLength", _) => format!("must be at least {bound} characters long"),
        ("maxLength", _) => format!("must be at most {bound} characters long"),
        ("minimum", false) => format!("must be at least {bound}"),
        ("minimum", true) => format!("must be greater than {bound}"),
        ("maximum", false) => format!("must be at most {bound}"),
        ("maximum", true) => format!("must be less than {bound}"),
        // The names' and titles' "not only spaces".
        ("pattern", _) if argument == r#""\S""# => "must not be only spaces".to_owned(),
        ("pattern", _) if field == "email" => {
            "must be an email address such as name@example.com".to_owned()
        }
        _ => "is not in the expected form".to_owned(),
    };
    Some(format!("{field}: {must}"))
}

impl<T: ParseFromJSON + DeserializeOwned> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> Result<Self> {
        let data = Vec::<u8>::from_request(request, body).await?;
        parse(&data).map(Self).map_err(invalid)
    }
}

impl_apirequest_for_payload!(JsonBody<T>, T: ParseFromJSON + DeserializeOwned);

#[cfg(test)]
mod tests {
    use super::*;
    use poem_openapi::Object;
    use serde::Deserialize;

    #[derive(Object, Deserialize, Debug)]
    struct Sample {
        #[oai(validator(min_length = 1, max_length = 5))]
        name: String,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        count: u32,
        #[oai(validator(pattern = "^[^@]+@[^@]+$"))]
        email: Option<String>,
        #[oai(validator(pattern = "^[a-z]+$"))]
        code: Option<String>,
        #[oai(validator(pattern = r"\S"))]
        label: Option<String>,
    }

    #[test]
    fn errors_name_the_field() {
        let err = |body: &str| parse::<Sample>(body.as_bytes()).unwrap_err();
        assert!(err(r#"{"name": 5, "count": 1}"#).starts_with("name: invalid type"));
        assert!(err(r#"{"name": "a"}"#).contains("missing field `count`"));
        for (body, message) in [
            (
                r#"{"name": "a", "count": -1}"#,
                "count: invalid value: integer `-1`, expected a whole number from 0 to 4294967295",
            ),
            (
                r#"{"name": "a", "count": 1.5}"#,
                "count: invalid type: floating point `1.5`, expected a whole number from 0 to 4294967295",
            ),
            (r#"{"name": "", "count": 1}"#, "name: must not be empty"),
            (
                r#"{"name": "abcdef", "count": 1}"#,
                "name: must be at most 5 characters long",
            ),
            (r#"{"name": "a", "count": 0}"#, "count: must be at least 1"),
            (r#"{"name": "a", "count": 101}"#, "count: must be at most 100"),
            (
                r#"{"name": "a", "count": 1, "email": "nope"}"#,
                "email: must be an email address such as name@example.com",
            ),
            (
                r#"{"name": "a", "count": 1, "code": "1"}"#,
                "code: is not in the expected form",
            ),
            (
                r#"{"name": "a", "count": 1, "label": "  "}"#,
                "label: must not be only spaces",
            ),
        ] {
            assert_eq!(err(body), message, "{body}");
        }
        assert!(err("{oops").starts_with("malformed JSON"));
        assert!(err("[1]").contains("JSON object"));
        assert!(err("").contains("JSON object"));
        assert_eq!(
            parse::<Sample>(br#"{"name":"ab","count":3}"#)
                .unwrap()
                .count,
            3
        );
    }
}
