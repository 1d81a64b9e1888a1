//! Request body size: every body the gateway accepts is small (a form, a
//! JSON object), so anything over [`MAX_BODY_BYTES`] is refused with 413
//! before it is read. A body must announce its length (`Content-Length`);
//! requests without a body (GET, HEAD) need none.

use poem::http::{Method, StatusCode};
use poem::{Endpoint, Error, IntoResponse, Request, Response};

/// The largest request body the gateway reads.
pub const MAX_BODY_BYTES: u64 = 16 * 1024;

pub async fn limit<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let length = req
        .header("content-length")
        .map(|v| v.trim().parse::<u64>());
    let carries_body = !matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE
    );
    match length {
        Some(Ok(n)) if n > MAX_BODY_BYTES => Err(Error::from_string(
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            StatusCode::PAYLOAD_TOO_LARGE,
        )),
        Some(Err(_)) => Err(Error::from_string(
            "Content-Length is not a number",
            StatusCode::BAD_REQUEST,
        )),
        None if carries_body && req.header("transfer-encoding").is_some() => {
            Err(Error::from_string(
                "a request body must have a Content-Length",
                StatusCode::LENGTH_REQUIRED,
            ))
        }
        _ => Ok(next.call(req).await?.into_response()),
    }
}
