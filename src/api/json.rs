//! The API's own extractors, whose every rejection is a JSON [`ApiError`]
//! (axum's are plain text): [`ApiJson`] for bodies, [`ApiQuery`] for query
//! strings, [`ApiPath`] for path segments.
//!
//! A body that is not `application/json` is a 415, one over the limit a
//! 413, malformed JSON a 400 (with its line and column), and JSON of the
//! wrong shape a 422 that names the field path: `secrets[1].secret:
//! expected a string`. serde's own messages quote the value they got (a
//! secret, perhaps), so only the part that says what was expected is kept.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body.
pub struct ApiJson<T>(pub T);

/// A query string.
pub struct ApiQuery<T>(pub T);

/// The path's parameters.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a body with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "request body is larger than {} bytes",
                            super::MAX_BODY_BYTES
                        ),
                    )
                } else {
                    ApiError::bad_request("the request body could not be read")
                }
            })?;
        parse_body(&bytes).map(ApiJson)
    }
}

/// `application/json`, or a `+json` type such as `application/merge-patch+json`.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON body into `T`: 400 for bad JSON, 422 naming the field for
/// a good JSON of the wrong shape.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        if e.inner().is_data() {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                at_path(&e.path().to_string(), &expectation(&e.inner().to_string())),
            )
        } else {
            syntax_error(e.inner())
        }
    })?;
    deserializer.end().map_err(|e| syntax_error(&e))?;
    Ok(value)
}

/// A 400 that says where the JSON went wrong (line, column), never what it held.
fn syntax_error(e: &serde_json::Error) -> ApiError {
    let what = if e.is_eof() {
        "the body ends too early"
    } else {
        "it is not valid JSON"
    };
    ApiError::bad_request(format!(
        "invalid JSON body: {what} (line {}, column {})",
        e.line(),
        e.column()
    ))
}

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let deserializer =
            serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(ApiQuery)
            .map_err(|e| {
                let message = expectation(&e.inner().to_string());
                let path = e.path().to_string();
                ApiError::bad_request(if path == "." {
                    format!("invalid query string: {message}")
                } else {
                    format!("query parameter `{path}`: {message}")
                })
            })
    }
}

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid path: a segment is not valid UTF-8, or not the number it must be",
                )
            })
    }
}

/// A whole number that JSON may write as `5` or `5.0` (JSON Schema's
/// `integer` allows both; serde's `u64` takes only the first), for
/// `#[serde(default, deserialize_with = "whole_number")]` fields.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a whole number from 0 to 2^64 - 1")
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Option<u64>, E> {
            Ok(Some(n))
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Option<u64>, E> {
            u64::try_from(n)
                .map(Some)
                .map_err(|_| E::custom("expected a whole number from 0 to 2^64 - 1"))
        }
        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Option<u64>, E> {
            if n.fract() == 0.0 && (0.0..1.8e19).contains(&n) {
                Ok(Some(n as u64))
            } else {
                Err(E::custom("expected a whole number from 0 to 2^64 - 1"))
            }
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Option<u64>, D::Error> {
            deserializer.deserialize_any(self)
        }
    }
    deserializer.deserialize_option(Visitor)
}

/// `path: message`, or the message alone at the top level.
fn at_path(path: &str, message: &str) -> String {
    if path == "." || path.is_empty() {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

/// What serde expected, without what it got: `invalid type: integer `5`,
/// expected a string` becomes `expected a string`. Messages that quote no
/// value (a missing or unknown field) are kept as they are.
fn expectation(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(at) if message[at..].contains(" column ") => &message[..at],
        _ => message,
    };
    if message.starts_with("missing field") || message.starts_with("unknown field") {
        return message.to_owned();
    }
    // serde puts what it expected after what it got, which is quoted and
    // may itself hold the words: the last `, expected ` is serde's.
    match message.rfind(", expected ") {
        Some(at) => message[at + 2..].to_owned(),
        None if message.starts_with("expected ") => message.to_owned(),
        None if message.starts_with("invalid") || message.contains('`') => {
            "invalid value".to_owned()
        }
        // Our own messages (a custom deserializer's) never quote values.
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only parsed")]
    struct Item {
        name: String,
        secret: String,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only parsed")]
    struct Body {
        vault_name: String,
        secrets: Vec<Item>,
    }

    fn error_of(json: &str) -> ApiError {
        parse_body::<Body>(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_wrong_type_names_the_field_path_and_not_the_value() {
        let e = error_of(
            r#"{"vault_name":"ci","secrets":[{"name":"A","secret":"x"},{"name":"B","secret":123456789}]}"#,
        );
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.message, "secrets[1].secret: expected a string");
    }

    #[test]
    fn missing_and_unknown_fields_are_named() {
        let e = error_of(r#"{"vault_name":"ci","secrets":[{"name":"A"}]}"#);
        assert_eq!(e.message, "secrets[0]: missing field `secret`");
        let e = error_of(r#"{"vault_name":"ci","secrets":[],"extra":1}"#);
        assert!(
            e.message.starts_with("extra: unknown field `extra`"),
            "{}",
            e.message
        );
        let e = error_of(r#"{"secrets":[]}"#);
        assert_eq!(e.message, "missing field `vault_name`");
    }

    #[test]
    fn a_value_that_says_expected_is_not_echoed() {
        let e = error_of(
            r#"{"vault_name":"ci","secrets":[{"name":"A","secret":["pw, expected SUPERSECRET"]}]}"#,
        );
        assert_eq!(e.message, "secrets[0].secret: expected a string");
        let e = error_of(r#"{"vault_name":["x expected SUPERSECRET"],"secrets":[]}"#);
        assert!(!e.message.contains("SUPERSECRET"), "{}", e.message);
    }

    #[test]
    fn bad_json_is_a_400_with_a_position() {
        let e = error_of(r#"{"vault_name": "s3cr3t-value"#);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(!e.message.contains("s3cr3t"), "{}", e.message);
        assert!(e.message.contains("line 1"), "{}", e.message);
        let e = error_of(r#"{"vault_name":"ci","secrets":[]} trailing"#);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
