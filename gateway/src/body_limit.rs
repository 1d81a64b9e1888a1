//! Request size: every body the gateway accepts is small (a form, a JSON
//! object), so anything over [`MAX_BODY_BYTES`] is refused with 413 before
//! it is read. A body must announce its length (`Content-Length`);
//! requests without a body (GET, HEAD) need none. Headers over
//! [`MAX_HEADER_BYTES`] in all are refused with 431, and a path with its
//! query over [`MAX_URI_BYTES`] with 414, before any handler or rate
//! limiter sees them. (hyper itself reads at most about 400 KB of a
//! request's head and answers 431 beyond that.)

use poem::http::{Method, StatusCode};
use poem::{Endpoint, Error, IntoResponse, Request, Response};

/// The largest request body the gateway reads.
pub const MAX_BODY_BYTES: u64 = 16 * 1024;

/// The most bytes of headers a request may send, names and values
/// together (a browser's with our cookies is well under 2 KiB; nginx
/// allows 4 lines of 8 KiB).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The longest path with query a request may ask for.
pub const MAX_URI_BYTES: usize = 8 * 1024;

pub async fn limit<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let uri_bytes = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        return Err(Error::from_string(
            format!("the address is longer than {MAX_URI_BYTES} bytes"),
            StatusCode::URI_TOO_LONG,
        ));
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(Error::from_string(
            format!("the request headers are larger than {MAX_HEADER_BYTES} bytes in all"),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ));
    }
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
