//! CSRF protection for the page forms: signed double-submit tokens.
//!
//! A page with a form makes sure the browser holds a random `csrf` cookie
//! (HttpOnly, SameSite=Lax) and puts a hidden `csrf_token` field in each
//! form: the HMAC of that cookie and of who is signed in, keyed from
//! `JWT_SECRET`. A post is taken only when its field matches its cookie for
//! the same user. Another site can neither read the cookie nor compute the
//! HMAC, and a cookie planted from a sibling domain does not help it either:
//! the token it could fetch for itself is bound to its own user, not the
//! victim's.
//!
//! This comes on top of the SameSite=Lax session cookie, which already keeps
//! most browsers from sending the session on another site's POST.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use coupon_core::domain::UserId;
use poem::http::header::SET_COOKIE;
use poem::http::HeaderValue;
use poem::{FromRequest, IntoResponse, Request, RequestBody, Response};
use rand::Rng;
use ring::hmac;

use crate::state::AppState;
use crate::tickets::derive_key;

/// The cookie holding the random half.
pub const COOKIE: &str = "csrf";
/// The form field holding the signed half.
pub const FIELD: &str = "csrf_token";
/// Random bytes in the cookie (hex-encoded).
const SEED_BYTES: usize = 16;

/// Signs form tokens; derived from the JWT secret so it never signs anything
/// else.
#[derive(Clone)]
pub struct CsrfKey(Arc<hmac::Key>);

impl CsrfKey {
    pub fn derive(secret: &str) -> Self {
        Self(Arc::new(derive_key(
            secret,
            b"coupon-rush page form token v1",
        )))
    }

    fn message(seed: &str, user: Option<UserId>) -> Vec<u8> {
        let mut message = seed.as_bytes().to_vec();
        message.push(0);
        match user {
            Some(user) => message.extend_from_slice(&user.0.to_be_bytes()),
            None => message.extend_from_slice(b"anonymous"),
        }
        message
    }

    fn sign(&self, seed: &str, user: Option<UserId>) -> String {
        B64.encode(hmac::sign(&self.0, &Self::message(seed, user)).as_ref())
    }

    fn verify(&self, seed: &str, user: Option<UserId>, token: &str) -> bool {
        let Ok(tag) = B64.decode(token) else {
            return false;
        };
        // Compares in constant time.
        hmac::verify(&self.0, &Self::message(seed, user), &tag).is_ok()
    }
}

/// The browser's CSRF cookie, or a new one to hand out with this response.
pub struct Csrf {
    key: CsrfKey,
    seed: String,
    /// Not sent by the browser: set it on the response, and refuse any post
    /// (there is nothing to check its token against).
    fresh: bool,
    secure: bool,
}

fn well_formed(seed: &str) -> bool {
    seed.len() == SEED_BYTES * 2 && seed.bytes().all(|b| b.is_ascii_hexdigit())
}

impl<'a> FromRequest<'a> for Csrf {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let state = req.data::<AppState>().ok_or_else(|| {
            poem::Error::from_string(
                "the gateway state is missing",
                poem::http::StatusCode::INTERNAL_SERVER_ERROR,
            )
        })?;
        let sent = req
            .cookie()
            .get(COOKIE)
            .map(|c| c.value_str().to_owned())
            .filter(|seed| well_formed(seed));
        let secure = state.config.app_env == coupon_core::config::AppEnv::Production;
        Ok(match sent {
            Some(seed) => Self {
                key: state.csrf.clone(),
                seed,
                fresh: false,
                secure,
            },
            None => {
                let bytes: [u8; SEED_BYTES] = rand::rng().random();
                Self {
                    key: state.csrf.clone(),
                    seed: bytes.iter().map(|b| format!("{b:02x}")).collect(),
                    fresh: true,
                    secure,
                }
            }
        })
    }
}

impl Csrf {
    /// The hidden field's value for forms shown to `user`.
    pub fn token(&self, user: Option<UserId>) -> String {
        self.key.sign(&self.seed, user)
    }

    /// Whether a post by `user` carried the token of this browser's cookie.
    pub fn accepts(&self, user: Option<UserId>, submitted: Option<&str>) -> bool {
        match submitted {
            Some(token) if !self.fresh => self.key.verify(&self.seed, user, token),
            _ => false,
        }
    }

    /// Hands a new cookie to the browser with `response`, if it had none.
    pub fn keep(&self, response: impl IntoResponse) -> Response {
        let mut response = response.into_response();
        if self.fresh {
            let secure = if self.secure { "; Secure" } else { "" };
            let cookie = format!(
                "{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax{secure}",
                self.seed
            );
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(SET_COOKIE, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csrf(seed: &str, fresh: bool) -> Csrf {
        Csrf {
            key: CsrfKey::derive("a-test-secret-that-is-long-enough-000"),
            seed: seed.into(),
            fresh,
            secure: false,
        }
    }

    const SEED: &str = "00112233445566778899aabbccddeeff";
    const OTHER: &str = "ffeeddccbbaa99887766554433221100";

    #[test]
    fn a_token_is_good_for_its_cookie_and_user_only() {
        let browser = csrf(SEED, false);
        let alice = Some(UserId(1));
        let token = browser.token(alice);
        assert!(browser.accepts(alice, Some(&token)));
        assert!(
            !browser.accepts(Some(UserId(2)), Some(&token)),
            "another user"
        );
        assert!(!browser.accepts(None, Some(&token)), "signed out");
        assert!(
            !csrf(OTHER, false).accepts(alice, Some(&token)),
            "another cookie"
        );
        assert!(!browser.accepts(alice, None), "no field");
        assert!(!browser.accepts(alice, Some("")), "empty field");
        assert!(!browser.accepts(alice, Some("not base64!")), "garbage");
        let anonymous = browser.token(None);
        assert!(browser.accepts(None, Some(&anonymous)));
        assert!(!browser.accepts(alice, Some(&anonymous)));
    }

    #[test]
    fn a_new_cookie_accepts_nothing_yet() {
        let browser = csrf(SEED, true);
        let token = browser.token(None);
        assert!(!browser.accepts(None, Some(&token)));
    }

    #[test]
    fn another_secret_signs_differently() {
        let other = Csrf {
            key: CsrfKey::derive("another-test-secret-that-is-long-enough"),
            ..csrf(SEED, false)
        };
        assert!(!other.accepts(None, Some(&csrf(SEED, false).token(None))));
    }

    #[test]
    fn only_well_formed_cookies_are_kept() {
        assert!(well_formed(SEED));
        assert!(!well_formed("short"));
        assert!(!well_formed(&"z".repeat(32)));
    }
}
