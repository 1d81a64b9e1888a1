//! One error type for the whole HTTP boundary.
//!
//! [`ApiError`] is what handlers return; [`ApiError::code`] is the one place
//! that maps each variant to a stable [`ErrorCode`], and
//! [`ErrorCode::status`] the one place that maps a code to an HTTP status.
//! Database, Redis and other internal errors convert with `?`, are logged
//! once when they become a response, and reach the client as a bare
//! `500 INTERNAL`; when the cause is MySQL or Redis not answering (refused,
//! dropped or timed-out connections, a server loading or shutting down), as
//! `503 UNAVAILABLE` with `Retry-After` instead, since asking again shortly
//! is the right thing to do.
//!
//! Each endpoint documents only the errors it can return: the
//! [`api_errors!`] macro makes a small response enum per endpoint (checked
//! at compile time against [`ErrorCode::status`]), and `?` converts an
//! [`ApiError`] into it. Errors raised before a handler runs (malformed
//! JSON, a missing field, an unknown route, a bad token) are shaped by
//! [`catch_all`] into the same `{code, message}` body.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::Object;

/// The body of every error response.
#[derive(Object, Debug, Clone, PartialEq, Eq)]
#[oai(example)]
pub struct ErrorBody {
    /// Stable and machine-readable, e.g. `SOLD_OUT`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

impl poem_openapi::types::Example for ErrorBody {
    fn example() -> Self {
        Self {
            code: "SOLD_OUT".into(),
            message: "All coupons have been handed out.".into(),
        }
    }
}

/// Every error code the API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    Validation,
    Unauthorized,
    Forbidden,
    InvalidCredentials,
    EmailTaken,
    CouponNotFound,
    TicketNotFound,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    AlreadyIssued,
    SoldOut,
    NotActive,
    DailyLimit,
    RateLimited,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub const fn status(self) -> u16 {
        match self {
            ErrorCode::Validation => 400,
            ErrorCode::Unauthorized | ErrorCode::InvalidCredentials => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::CouponNotFound | ErrorCode::TicketNotFound | ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::EmailTaken | ErrorCode::AlreadyIssued => 409,
            ErrorCode::SoldOut => 410,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::NotActive => 422,
            ErrorCode::DailyLimit | ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Validation => "VALIDATION",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::InvalidCredentials => "INVALID_CREDENTIALS",
            ErrorCode::EmailTaken => "EMAIL_TAKEN",
            ErrorCode::CouponNotFound => "COUPON_NOT_FOUND",
            ErrorCode::TicketNotFound => "TICKET_NOT_FOUND",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::AlreadyIssued => "ALREADY_ISSUED",
            ErrorCode::SoldOut => "SOLD_OUT",
            ErrorCode::NotActive => "NOT_ACTIVE",
            ErrorCode::DailyLimit => "DAILY_LIMIT",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    fn for_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 | 422 => ErrorCode::Validation,
            401 => ErrorCode::Unauthorized,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            411 => ErrorCode::Validation,
            413 => ErrorCode::PayloadTooLarge,
            429 => ErrorCode::RateLimited,
            503 => ErrorCode::Unavailable,
            _ if status.is_client_error() => ErrorCode::Validation,
            _ => ErrorCode::Internal,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input; the message names the field.
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("This needs an administrator.")]
    Forbidden,
    #[error("The email or password is wrong.")]
    InvalidCredentials,
    #[error("An account with this email exists already.")]
    EmailTaken,
    #[error("There is no coupon with this id.")]
    CouponNotFound,
    #[error("There is no such ticket.")]
    TicketNotFound,
    #[error("You have this coupon already.")]
    AlreadyIssued,
    #[error("All coupons have been handed out.")]
    SoldOut,
    /// Before `valid_from`, after `valid_to`, or expired; the message says which.
    #[error("{0}")]
    NotActive(String),
    #[error("You have reached today's limit of coupons.")]
    DailyLimit,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<coupon_core::domain::Invalid> for ApiError {
    fn from(e: coupon_core::domain::Invalid) -> Self {
        ApiError::Validation(e.to_string())
    }
}

impl ApiError {
    /// The one mapping from error to code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Validation(_) => ErrorCode::Validation,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden => ErrorCode::Forbidden,
            ApiError::InvalidCredentials => ErrorCode::InvalidCredentials,
            ApiError::EmailTaken => ErrorCode::EmailTaken,
            ApiError::CouponNotFound => ErrorCode::CouponNotFound,
            ApiError::TicketNotFound => ErrorCode::TicketNotFound,
            ApiError::AlreadyIssued => ErrorCode::AlreadyIssued,
            ApiError::SoldOut => ErrorCode::SoldOut,
            ApiError::NotActive(_) => ErrorCode::NotActive,
            ApiError::DailyLimit => ErrorCode::DailyLimit,
            ApiError::Database(e) if db_unreachable(e) => ErrorCode::Unavailable,
            ApiError::Redis(e) if redis_unreachable(e) => ErrorCode::Unavailable,
            ApiError::Internal(e) if e.chain().any(unreachable_cause) => ErrorCode::Unavailable,
            ApiError::Database(_) | ApiError::Redis(_) | ApiError::Internal(_) => {
                ErrorCode::Internal
            }
        }
    }

    /// The client's view. Internal errors are logged here, once (every
    /// error becomes a response exactly once), and their text never leaves
    /// the process.
    pub fn body(&self) -> ErrorBody {
        let code = self.code();
        let message = match code {
            ErrorCode::Internal => {
                tracing::error!(error = %self, "request failed");
                INTERNAL_MESSAGE.to_owned()
            }
            ErrorCode::Unavailable => {
                tracing::warn!(error = %self, "request failed: a dependency is not answering");
                UNAVAILABLE_MESSAGE.to_owned()
            }
            _ => self.to_string(),
        };
        ErrorBody {
            code: code.as_str().to_owned(),
            message,
        }
    }
}

const INTERNAL_MESSAGE: &str = "Something went wrong on our side. Please try again.";
const UNAVAILABLE_MESSAGE: &str =
    "The service is briefly unavailable. Please try again in a few seconds.";

/// What a `503 UNAVAILABLE` asks the client to wait, in seconds: about as
/// long as the connections take to come back once MySQL or Redis answers.
pub const RETRY_AFTER_SECS: u64 = 5;

/// MySQL did not answer: no connection, a broken one, none free in time, or
/// a server refusing work (too many connections, shutting down).
fn db_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // ER_CON_COUNT_ERROR, ER_SERVER_SHUTDOWN.
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("1040" | "1053")),
        _ => false,
    }
}

/// Redis did not answer: a connection refused, dropped or timed out, or a
/// server still loading its data or without a master.
fn redis_unreachable(e: &redis::RedisError) -> bool {
    use redis::ErrorKind::*;
    matches!(
        e.kind(),
        IoError | BusyLoadingError | TryAgain | ClusterDown | MasterDown
    )
}

fn unreachable_cause(cause: &(dyn std::error::Error + 'static)) -> bool {
    cause
        .downcast_ref::<sqlx::Error>()
        .is_some_and(db_unreachable)
        || cause
            .downcast_ref::<redis::RedisError>()
            .is_some_and(redis_unreachable)
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn as_response(&self) -> Response {
        let response = Json(self.body()).with_status(self.status());
        if self.code() == ErrorCode::Unavailable {
            response
                .with_header("retry-after", RETRY_AFTER_SECS)
                .into_response()
        } else {
            response.into_response()
        }
    }
}

/// Declares the error responses of one endpoint:
/// `api_errors!(pub SignupError { Validation = 400, EmailTaken = 409 });`
///
/// The enum documents exactly these statuses (each with its code's
/// description, from the table below) plus `500 INTERNAL` and `503
/// UNAVAILABLE`. The statuses are
/// checked at compile time against [`ErrorCode::status`]. An error outside
/// the list still gets its right status and code (as the documented
/// `default` response) and is logged, since it means the list is stale.
#[macro_export]
macro_rules! api_errors {
    ($vis:vis $name:ident { $($body:tt)* }) => {
        $crate::api_errors!(@build $vis $name [] [] $($body)*);
    };
    (@build $vis:vis $name:ident [$($acc:tt)*] [$($seen:ident = $st:literal)*] Validation = $s:literal $(, $($rest:tt)*)?) => {
        $crate::api_errors!(@build $vis $name [$($acc)*
            #[doc = "`VALIDATION`: the input is malformed or out of range; `message` names the field."]
            #[oai(status = $s)]
            Validation(poem_openapi::payload::Json<$crate::error::ErrorBody>),
        ] [$($seen = $st)* Validation = $s] $($($rest)*)?);
    };
    (@build $vis:vis $name:ident [$($acc:tt)*] [$($seen:ident = $st:literal)*] Unauthorized = $s:literal $(, $($rest:tt)*)?) => {
        $crate::api_errors!(@build $vis $name [$($acc)*
            #[doc = "`UNAUTHORIZED`: no access token, or one that is invalid or expired."]
            #[oai(status = $s)]
            Unauthorized(poem_openapi::payload::Json<$crate::error::ErrorBody>),
        ] [$($seen = $st)* Unauthorized = $s] $($($rest)*)?);
    };
    (@build $vis:vis $name:ident [$($acc:tt)*] [$($seen:ident = $st:literal)*] Forbidden = $s:literal $(, $($rest:tt)*)?) => {
        $crate::api_errors!(@build $vis $name [$($acc)*
            #[doc = "`FORBIDDEN`: this needs an administrator."]
            #[oai(status = $s)]
            Forbidden(poem_openapi::payload::Json<$crate::error::ErrorBody>),
        ] [$($seen = $st)* Forbidden = $s] $($($rest)*)?);
    };
    (@build $vis:vis $name:ident [$($acc:tt)*] [$($seen:ident = $st:literal)*] InvalidCredentials = $s:literal $(, $($rest:tt)*)?) => {
        $crate::api_errors!(@build $vis $name [$($acc)*
            #[doc = "`INVALID_CREDENTIALS`: the email or password is wrong."]
            #[oai(status = $s)]
            InvalidCredentials(poem_openapi::payload::Json<$crate::error::ErrorBody>),
        ] [$($seen = $st)* InvalidCredentials = $s] $($($rest)*)?);
    };
    (@build $vis:vis $name:ident [$($acc:tt)*] [$($seen:ident = $st:literal)*] EmailTaken = $s:literal $(, $($rest:tt)*)?) => {
        $crate::api_errors!(@build $vis $name [$($acc)*
            #[doc = "`EMAIL_TAKEN`: an account with this email exists (in any letter case)."]
            #[oai(status = $s)]
            EmailTaken(poem_openapi::payload::Json<$crate::error::ErrorBody>),
        ] [$($seen = $st)* EmailTaken = $s] $($($rest)*)?);
    };
    (@build $vis:vis $name:ident [$($acc:tt)*] [$($seen:ident = $st:literal)*] CouponNotFound = $s:literal $(, $($rest:tt)*)?) => {
        $crate::api_errors!(@build $vis $name [$($acc)*
            #[doc = "`COUPON_NOT_FOUND`: there is no coupon with this id."]
            #[oai(status = $s)]
            CouponNotFound(poem_openapi::payload::Json<$crate::error::ErrorBody>),
        ] [$($seen = $st)* CouponNotFound = $s] $($($rest)*)?);
    };
    (@build $vis:vis $name:ident [$($acc:tt)*] [$($seen:ident = $st:literal)*] TicketNotFound = $s:literal $(, $($rest:tt)*)?) => {
        $crate::api_errors!(@build $vis $name [$($acc)*
            #[doc = "`TICKET_NOT_FOUND`: no such ticket, or not yours."]
            #[oai(status = $s)]
            TicketNotFound(poem_openapi::payload::Json<$crate::error::ErrorBody>),
        ] [$($seen = $st)* TicketNotFound = $s] $($($rest)*)?);
    };
    (@build $vis:vis $name:ident [$($acc:tt)*] [$($seen:ident = $st:literal)*] NotFound = $s:literal $(, $($rest:tt)*)?) => {
        $crate::api_errors!(@build $vis $name [$($acc)*
            #[doc = "`NOT_FOUND`: nothing at this address."]
            #[oai(status = $s)]
            NotFound(poem_openapi::payload::Json<$crate::error::ErrorBody>),
        ] [$($seen = $st)* NotFound = $s] $($($rest)*)?);
    };
    (@build $vis:vis $name:ident [$($acc:tt)*] [$($seen:ident = $st:literal)*] AlreadyIssued = $s:literal $(, $($rest:tt)*)?) => {
        $crate::api_errors!(@build $vis $name [$($acc)*
            #[doc = "`ALREADY_ISSUED`: you have this coupon already."]
            #[oai(status = $s)]
            AlreadyIssued(poem_openapi::payload::Json<$crate::error::ErrorBody>),
        ] [$($seen = $st)* AlreadyIssued = $s] $($($rest)*)?);
    };
    (@build $vis:vis $name:ident [$($acc:tt)*] [$($seen:ident = $st:literal)*] SoldOut = $s:literal $(, $($rest:tt)*)?) => {
        $crate::api_errors!(@build $vis $name [$($acc)*
            #[doc = "`SOLD_OUT`: all coupons have been handed out."]
            #[oai(status = $s)]
            SoldOut(poem_openapi::payload::Json<$crate::error::ErrorBody>),
        ] [$($seen = $st)* SoldOut = $s] $($($rest)*)?);
    };
    (@build $vis:vis $name:ident [$($acc:tt)*] [$($seen:ident = $st:literal)*] NotActive = $s:literal $(, $($rest:tt)*)?) => {
        $crate::api_errors!(@build $vis $name [$($acc)*
            #[doc = "`NOT_ACTIVE`: before `valid_from`, after `valid_to`, or expired."]
            #[oai(status = $s)]
            NotActive(poem_openapi::payload::Json<$crate::error::ErrorBody>),
        ] [$($seen = $st)* NotActive = $s] $($($rest)*)?);
    };
    (@build $vis:vis $name:ident [$($acc:tt)*] [$($seen:ident = $st:literal)*] DailyLimit = $s:literal $(, $($rest:tt)*)?) => {
        $crate::api_errors!(@build $vis $name [$($acc)*
            #[doc = "`DAILY_LIMIT`: you reached today's limit of coupons."]
            #[oai(status = $s)]
            DailyLimit(poem_openapi::payload::Json<$crate::error::ErrorBody>),
        ] [$($seen = $st)* DailyLimit = $s] $($($rest)*)?);
    };
    (@build $vis:vis $name:ident [$($acc:tt)*] [$($seen:ident = $st:literal)*] RateLimited = $s:literal $(, $($rest:tt)*)?) => {
        $crate::api_errors!(@build $vis $name [$($acc)*
            #[doc = "`RATE_LIMITED`: too many requests; retry after `Retry-After` seconds."]
            #[oai(status = $s)]
            RateLimited(poem_openapi::payload::Json<$crate::error::ErrorBody>),
        ] [$($seen = $st)* RateLimited = $s] $($($rest)*)?);
    };
    (@build $vis:vis $name:ident [$($acc:tt)*] [$($variant:ident = $status:literal)*]) => {
        #[derive(poem_openapi::ApiResponse, Debug)]
        $vis enum $name {
            $($acc)*
            /// `INTERNAL`: something failed on our side; details are in the log.
            #[oai(status = 500)]
            Internal(poem_openapi::payload::Json<$crate::error::ErrorBody>),
            /// `UNAVAILABLE`: MySQL or Redis is not answering; ask again after `Retry-After` seconds.
            #[oai(status = 503)]
            Unavailable(
                poem_openapi::payload::Json<$crate::error::ErrorBody>,
                /// Seconds to wait before asking again.
                #[oai(header = "Retry-After")]
                u64,
            ),
            /// Any other error, in the same `{code, message}` shape.
            Other(
                poem::http::StatusCode,
                poem_openapi::payload::Json<$crate::error::ErrorBody>,
            ),
        }

        $( const _: () = assert!(
            $crate::error::ErrorCode::$variant.status() == $status,
            concat!(stringify!($name), "::", stringify!($variant), " has the wrong status"),
        ); )*

        impl From<$crate::error::ApiError> for $name {
            fn from(error: $crate::error::ApiError) -> Self {
                let code = error.code();
                let body = poem_openapi::payload::Json(error.body());
                match code {
                    $( $crate::error::ErrorCode::$variant => Self::$variant(body), )*
                    $crate::error::ErrorCode::Internal => Self::Internal(body),
                    $crate::error::ErrorCode::Unavailable => {
                        Self::Unavailable(body, $crate::error::RETRY_AFTER_SECS)
                    }
                    #[allow(unreachable_patterns)]
                    other => {
                        tracing::warn!(code = other.as_str(), endpoint = stringify!($name), "undocumented error");
                        Self::Other(
                            poem::http::StatusCode::from_u16(other.status())
                                .unwrap_or(poem::http::StatusCode::INTERNAL_SERVER_ERROR),
                            body,
                        )
                    }
                }
            }
        }
    };
}

/// Shapes every error that did not come from a handler (poem's and
/// poem-openapi's own rejections: malformed JSON, missing fields, wrong
/// types, unknown routes, failed auth) as `{code, message}`.
pub async fn catch_all(error: poem::Error) -> Response {
    let status = error.status();
    // poem-openapi calls path parameters `param0`, `param1`... in these
    // errors, which names nothing the client sent. Every path parameter of
    // this API that can fail to parse is a coupon's `id` (the ticket id is a
    // string); `gateway/tests/openapi.rs` keeps that true.
    // A value out of the id's range (`/api/coupons/0`) fails its validator
    // under the parameter's real name.
    let bad_path_id = error.is::<poem_openapi::error::ParsePathError>()
        || error
            .downcast_ref::<poem_openapi::error::ParseParamError>()
            .is_some_and(|e| e.name == "id");
    // poem's own: the path does not decode (`/api/coupons/%FF`).
    let undecodable_path = error.is::<poem::error::ParsePathError>();
    // Every security scheme says why it refused (`crate::auth::Auth`);
    // this is the fallback for one that does not.
    let no_token = error.is::<poem_openapi::error::AuthorizationError>();
    let response = error.into_response();
    let is_json = response
        .content_type()
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        // Already ours (a handler's or the auth checker's error).
        return response;
    }
    let code = ErrorCode::for_status(status);
    let text = response.into_body().into_string().await.unwrap_or_default();
    let message = match code {
        ErrorCode::Internal => {
            tracing::error!(%status, error = %text, "unhandled error");
            INTERNAL_MESSAGE.to_owned()
        }
        ErrorCode::NotFound => "There is nothing at this address.".to_owned(),
        ErrorCode::MethodNotAllowed => "This method is not allowed here.".to_owned(),
        _ if bad_path_id => PATH_ID_MESSAGE.to_owned(),
        _ if undecodable_path => UNDECODABLE_PATH_MESSAGE.to_owned(),
        _ if no_token => crate::auth::NO_TOKEN_MESSAGE.to_owned(),
        _ => humanize(&text),
    };
    Json(ErrorBody {
        code: code.as_str().to_owned(),
        message,
    })
    .with_status(status)
    .into_response()
}

/// The answer to a path whose `id` is not a number (`/api/coupons/abc`).
pub const PATH_ID_MESSAGE: &str =
    "`id` in the path must be a whole number from 1 to 9223372036854775807.";

/// The answer to a path whose percent-encoded bytes are not UTF-8.
pub const UNDECODABLE_PATH_MESSAGE: &str =
    "The path is not valid: its percent-encoded bytes must spell UTF-8 text.";

/// poem-openapi's parse errors say which field and why, wrapped in
/// implementation words; keep the useful part.
fn humanize(text: &str) -> String {
    let text = text.trim();
    let text = text
        .strip_prefix("parse request payload error: ")
        .or_else(|| text.strip_prefix("failed to parse parameter "))
        .unwrap_or(text);
    if text.is_empty() {
        "The request is not valid.".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::ConnectionRefused)
    }

    #[test]
    fn an_unreachable_dependency_is_unavailable_and_any_other_failure_internal() {
        let unavailable = [
            ApiError::Database(sqlx::Error::Io(refused())),
            ApiError::Database(sqlx::Error::PoolTimedOut),
            ApiError::Redis(redis::RedisError::from(refused())),
            ApiError::Redis(redis::RedisError::from((
                redis::ErrorKind::BusyLoadingError,
                "loading",
            ))),
            ApiError::Internal(
                anyhow::Error::from(sqlx::Error::PoolTimedOut).context("warming the coupon up"),
            ),
        ];
        for error in unavailable {
            assert_eq!(error.code(), ErrorCode::Unavailable, "{error}");
            let body = error.body();
            assert_eq!(body.code, "UNAVAILABLE");
            assert_eq!(body.message, UNAVAILABLE_MESSAGE, "no internal text leaves");
            let response = poem::error::ResponseError::as_response(&error);
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(
                response.headers()["retry-after"],
                RETRY_AFTER_SECS.to_string().as_str()
            );
        }
        let internal = [
            ApiError::Database(sqlx::Error::RowNotFound),
            ApiError::Redis(redis::RedisError::from((
                redis::ErrorKind::TypeError,
                "unexpected reply",
            ))),
            ApiError::Internal(anyhow::anyhow!("a bug")),
        ];
        for error in internal {
            assert_eq!(error.code(), ErrorCode::Internal, "{error}");
            assert_eq!(error.body().message, INTERNAL_MESSAGE);
            let response = poem::error::ResponseError::as_response(&error);
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert!(response.headers().get("retry-after").is_none());
        }
    }
}
