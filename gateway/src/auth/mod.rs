//! Access tokens and the security schemes of the API.
//!
//! A token is an HS256 JWT signed with `JWT_SECRET`, with the claims `sub`
//! (user id as a string), `role`, `iat` and `exp`. Only the configured
//! algorithm and key are accepted: a changed signature, `alg: none`, another
//! algorithm or key, or a token past `exp` is `401 UNAUTHORIZED`.
//!
//! The API takes the token as `Authorization: Bearer ...` or from the
//! `access_token` cookie (HttpOnly, set by the pages), through one security
//! scheme, so `/docs` shows the lock and its Authorize button works. The
//! cookie is not taken on a post that a browser says came from another
//! site (CSRF; the page forms have their own tokens, [`crate::pages::csrf`]).

pub mod password;

use std::time::Duration;

use chrono::Utc;
use coupon_core::domain::{Role, UserId};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use poem::http::header;
use poem::{Request, RequestBody};
use poem_openapi::auth::{ApiKey, Bearer};
use poem_openapi::error::AuthorizationError;
use poem_openapi::registry::Registry;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, SecurityScheme};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;

/// The name of the cookie that carries the token for pages.
pub const COOKIE: &str = "access_token";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    iat: i64,
    exp: i64,
}

/// Who is calling, as proven by a valid token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthUser {
    pub id: UserId,
    pub role: Role,
}

/// Issues and verifies tokens with one key and one algorithm.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl Tokens {
    pub fn new(secret: &str, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for `user` that expires after the configured lifetime.
    pub fn issue(&self, id: UserId, role: Role) -> anyhow::Result<String> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: id.to_string(),
            role: role.as_str().to_owned(),
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
        };
        Ok(encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    pub fn verify(&self, token: &str) -> Result<AuthUser, ApiError> {
        let invalid = ApiError::Unauthorized(
            "The access token is invalid or has expired. Please log in again.",
        );
        let data =
            decode::<Claims>(token, &self.decoding, &self.validation).map_err(|_| invalid)?;
        let id = data.claims.sub.parse::<u64>().map(UserId);
        let role = Role::parse(&data.claims.role);
        match (id, role) {
            (Ok(id), Some(role)) => Ok(AuthUser { id, role }),
            _ => Err(ApiError::Unauthorized(
                "The access token is invalid or has expired. Please log in again.",
            )),
        }
    }
}

fn tokens(req: &Request) -> Result<&Tokens, ApiError> {
    req.data::<AppState>()
        .map(|s| s.tokens.as_ref())
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("AppState missing from the request")))
}

/// A token the rate limiter verified already for this request.
#[derive(Clone)]
pub struct Verified {
    pub token: String,
    pub user: AuthUser,
}

/// The caller `token` proves, verified once per request.
pub fn verify(req: &Request, token: &str) -> Result<AuthUser, ApiError> {
    match req.extensions().get::<Verified>() {
        Some(verified) if verified.token == token => Ok(verified.user),
        _ => tokens(req)?.verify(token),
    }
}

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<AuthUser> {
    Ok(verify(req, &bearer.token)?)
}

async fn check_cookie(req: &Request, key: ApiKey) -> poem::Result<AuthUser> {
    if !req.method().is_safe() && from_another_site(req) {
        return Err(ApiError::Unauthorized(
            "The session cookie is not accepted on a request from another site.",
        )
        .into());
    }
    Ok(verify(req, &key.key)?)
}

/// Whether the browser says this request comes from another site. A
/// browser sends the cookie along with such a post only if SameSite fails
/// (old browsers), and then it still names the site it came from: a cookie
/// is not taken as the caller's will there. Clients that send neither
/// header (curl, the API tests) are not browsers and are unaffected.
fn from_another_site(req: &Request) -> bool {
    if req.header("sec-fetch-site") == Some("cross-site") {
        return true;
    }
    match (req.header("origin"), req.header("host")) {
        (Some(origin), Some(host)) => {
            origin.split_once("://").map(|(_, authority)| authority) != Some(host)
        }
        (Some(_), None) => true,
        _ => false,
    }
}

/// `Authorization: Bearer <access_token>`.
#[derive(SecurityScheme)]
#[oai(
    rename = "bearer",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_bearer"
)]
pub struct BearerToken(AuthUser);

/// The `access_token` cookie the pages set.
#[derive(SecurityScheme)]
#[oai(
    rename = "cookie",
    ty = "api_key",
    key_name = "access_token",
    key_in = "cookie",
    checker = "check_cookie"
)]
pub struct CookieToken(AuthUser);

/// A signed-in caller: bearer header or cookie.
///
/// Tried in that order, as `#[derive(SecurityScheme)]` on an enum would,
/// but the error is the one that says what is wrong: poem-openapi's derive
/// returns the last scheme's error, which for a caller without the cookie
/// (every API client) is a bare "authorization error", whatever the bearer
/// check found.
pub enum Auth {
    Bearer(BearerToken),
    Cookie(CookieToken),
}

/// The answer to a request that needs a token and sends none.
pub const NO_TOKEN_MESSAGE: &str = "Sign in first: send your access token as \
    `Authorization: Bearer <access_token>` (`POST /api/auth/login` gives one).";

/// The answer to an `Authorization` header of another scheme.
pub const NOT_BEARER_MESSAGE: &str = "The Authorization header must be `Bearer <access_token>`.";

impl<'a> ApiExtractor<'a> for Auth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        BearerToken::register(registry);
        CookieToken::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        let mut schemes = BearerToken::security_schemes();
        schemes.extend(CookieToken::security_schemes());
        schemes
    }

    async fn from_request(
        req: &'a Request,
        body: &mut RequestBody,
        param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let bearer = match BearerToken::from_request(req, body, param_opts.clone()).await {
            Ok(token) => return Ok(Auth::Bearer(token)),
            Err(e) => e,
        };
        let cookie = match CookieToken::from_request(req, body, param_opts).await {
            Ok(token) => return Ok(Auth::Cookie(token)),
            Err(e) => e,
        };
        // A scheme that found its credential and refused it says why;
        // the header's reason first, as the header is tried first.
        Err(if !bearer.is::<AuthorizationError>() {
            bearer
        } else if !cookie.is::<AuthorizationError>() {
            cookie
        } else if req.headers().contains_key(header::AUTHORIZATION) {
            ApiError::Unauthorized(NOT_BEARER_MESSAGE).into()
        } else {
            ApiError::Unauthorized(NO_TOKEN_MESSAGE).into()
        })
    }
}

impl Auth {
    pub fn user(&self) -> AuthUser {
        match self {
            Auth::Bearer(BearerToken(u)) | Auth::Cookie(CookieToken(u)) => *u,
        }
    }

    /// The caller, if an admin; else `403 FORBIDDEN`.
    pub fn admin(&self) -> Result<AuthUser, ApiError> {
        let user = self.user();
        if user.role == Role::Admin {
            Ok(user)
        } else {
            Err(ApiError::Forbidden)
        }
    }
}
