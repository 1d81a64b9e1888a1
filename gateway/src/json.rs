//! The JSON request body of every endpoint: strict types, and errors that
//! name the field.
//!
//! poem-openapi's own `Json` quietly turns a number into a string and loses
//! the field's name when one is missing. [`JsonBody`] first deserializes
//! with serde (tracking the path, so "name: invalid type: integer `5`,
//! expected a string" or "missing field `password`"), then runs
//! poem-openapi's parser for the validators documented in the schema
//! (lengths, ranges). Both failures are `400 VALIDATION`.

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
        let inner = e.into_inner().to_string();
        return Err(if path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        });
    }
    T::parse_from_json(Some(value)).map_err(|e| e.into_message())
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
        count: u32,
    }

    #[test]
    fn errors_name_the_field() {
        let err = |body: &str| parse::<Sample>(body.as_bytes()).unwrap_err();
        assert!(err(r#"{"name": 5, "count": 1}"#).starts_with("name: invalid type"));
        assert!(err(r#"{"name": "a"}"#).contains("missing field `count`"));
        assert!(err(r#"{"name": "a", "count": -1}"#).starts_with("count: invalid value"));
        assert!(err(r#"{"name": "", "count": 1}"#).contains("field `name`"));
        assert!(err(r#"{"name": "abcdef", "count": 1}"#).contains("maxLength(5)"));
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
