//! Sign-up, login and "who am I".

use coupon_core::domain::{Email, NewAccount, Role};
use coupon_core::users::{self, CreateError};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::api::ApiTags;
use crate::api_errors;
use crate::auth::{password, Auth};
use crate::error::ApiError;
use crate::json::JsonBody;
use crate::state::AppState;
use crate::time::UtcTime;

/// An account, as anyone may see it (never the password).
#[derive(Object)]
pub struct User {
    pub id: u64,
    pub email: String,
    pub name: String,
    /// `user` or `admin`.
    pub role: String,
    pub created_at: UtcTime,
}

impl From<users::User> for User {
    fn from(u: users::User) -> Self {
        Self {
            id: u.id.0,
            email: u.email,
            name: u.name,
            role: u.role.as_str().to_owned(),
            created_at: u.created_at.into(),
        }
    }
}

#[derive(Object, serde::Deserialize)]
struct SignupRequest {
    /// A well-formed address, at most 100 characters; unique in any letter
    /// case. (The pattern documents the accepted form; the server parses
    /// the address itself, so the pattern never admits what it refuses.)
    #[oai(validator(
        max_length = 100,
        pattern = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,32}(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,16}){0,2}@([A-Za-z0-9]([A-Za-z0-9-]{0,18}[A-Za-z0-9])?\.){1,3}[A-Za-z]{2,10}$"
    ))]
    email: String,
    /// 1 to 50 characters, not all blank.
    #[oai(validator(min_length = 1, max_length = 50, pattern = r"\S"))]
    name: String,
    /// 8 to 128 characters.
    #[oai(validator(min_length = 8, max_length = 128))]
    password: String,
}

#[derive(Object, serde::Deserialize)]
pub(crate) struct LoginRequest {
    #[oai(validator(max_length = 200))]
    pub email: String,
    #[oai(validator(max_length = 200))]
    pub password: String,
}

#[derive(Object)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

#[derive(ApiResponse)]
enum SignupResponse {
    /// The account was created.
    #[oai(status = 201)]
    Created(Json<User>),
}

#[derive(ApiResponse)]
enum LoginResponse {
    /// Use `access_token` as `Authorization: Bearer <access_token>`.
    #[oai(status = 200)]
    Ok(Json<TokenResponse>),
}

api_errors!(pub SignupError { Validation = 400, EmailTaken = 409, RateLimited = 429 });
api_errors!(pub LoginError { Validation = 400, InvalidCredentials = 401, RateLimited = 429 });
api_errors!(pub MeError { Unauthorized = 401 });

pub struct AccountsApi;

#[OpenApi(tag = "ApiTags::Accounts")]
impl AccountsApi {
    /// Create an account.
    #[oai(path = "/api/auth/signup", method = "post")]
    async fn signup(
        &self,
        state: Data<&AppState>,
        body: JsonBody<SignupRequest>,
    ) -> Result<SignupResponse, SignupError> {
        Ok(SignupResponse::Created(Json(signup(&state, body.0).await?)))
    }

    /// Log in and get an access token.
    ///
    /// A wrong email and a wrong password get the same answer, in about the
    /// same time.
    #[oai(path = "/api/auth/login", method = "post")]
    async fn login(
        &self,
        state: Data<&AppState>,
        body: JsonBody<LoginRequest>,
    ) -> Result<LoginResponse, LoginError> {
        Ok(LoginResponse::Ok(Json(login(&state, body.0).await?)))
    }

    /// The signed-in account.
    #[oai(path = "/api/me", method = "get")]
    async fn me(&self, state: Data<&AppState>, auth: Auth) -> Result<Json<User>, MeError> {
        Ok(Json(me(&state, auth).await?))
    }
}

async fn signup(state: &AppState, body: SignupRequest) -> Result<User, ApiError> {
    create_account(
        state,
        NewAccount::parse(&body.email, &body.name, &body.password)?,
    )
    .await
}

/// Creates a user account (API and sign-up page).
pub(crate) async fn create_account(
    state: &AppState,
    account: NewAccount,
) -> Result<User, ApiError> {
    let hash = password::hash(account.password).await?;
    let user = users::create(&state.db, &account.email, &account.name, &hash, Role::User)
        .await
        .map_err(|e| match e {
            CreateError::EmailTaken => ApiError::EmailTaken,
            CreateError::Database(e) => e.into(),
        })?;
    tracing::info!(user_id = %user.id, "account created");
    Ok(user.into())
}

pub(crate) async fn login(state: &AppState, body: LoginRequest) -> Result<TokenResponse, ApiError> {
    let email = Email::parse(&body.email).ok();
    let account = match &email {
        Some(email) => users::credentials(&state.db, email).await?,
        None => None,
    };
    let hash = account.as_ref().map(|a| a.password_hash.clone());
    let ok = password::verify(body.password, hash).await?;
    let Some(account) = account.filter(|_| ok) else {
        if let Some(email) = &email {
            lockout::record_failure(&state.redis, email).await?;
        }
        return Err(ApiError::InvalidCredentials);
    };
    lockout::clear(&state.redis, &account.user.email).await?;
    Ok(TokenResponse {
        access_token: state.tokens.issue(account.user.id, account.user.role)?,
        token_type: "Bearer".into(),
        expires_in: state.tokens.ttl().as_secs(),
    })
}

async fn me(state: &AppState, auth: Auth) -> Result<User, ApiError> {
    users::by_id(&state.db, auth.user().id)
        .await?
        .map(User::from)
        // A valid token for an account that no longer exists.
        .ok_or(ApiError::Unauthorized("This account no longer exists."))
}

/// Creates or promotes the configured admin (`ADMIN_EMAIL`,
/// `ADMIN_PASSWORD`). Idempotent: a second start changes nothing but the
/// password hash's salt.
pub async fn bootstrap_admin(state: &AppState) -> anyhow::Result<()> {
    let Some(admin) = &state.config.admin else {
        return Ok(());
    };
    let email = Email::parse(&admin.email).map_err(|e| anyhow::anyhow!("ADMIN_EMAIL: {e}"))?;
    let pw = admin.password.expose();
    if !(8..=128).contains(&pw.chars().count()) {
        anyhow::bail!("ADMIN_PASSWORD: must be 8 to 128 characters");
    }
    let hash = password::hash(pw.to_owned()).await?;
    let user = users::upsert_admin(&state.db, &email, &hash).await?;
    tracing::info!(user_id = %user.id, email = %user.email, "admin account ready");
    Ok(())
}

/// Login lockout, shared by every gateway through Redis: after
/// [`lockout::MAX_FAILURES`] wrong passwords for one email within
/// [`lockout::WINDOW`], logins for it are refused (429 with Retry-After,
/// in [`crate::rate_limit`]) until the window ends.
pub mod lockout {
    use std::time::Duration;

    use coupon_core::domain::Email;
    use coupon_core::RedisStore;

    pub const MAX_FAILURES: u64 = 5;
    pub const WINDOW: Duration = Duration::from_secs(15 * 60);

    fn key(redis: &RedisStore, email: &str) -> String {
        redis.keys().global(&format!("login_failures:{email}"))
    }

    /// Seconds left of the lockout, if `email` is locked out.
    pub async fn locked(redis: &RedisStore, email: &Email) -> redis::RedisResult<Option<u64>> {
        let mut conn = redis.conn().await?;
        let (failures, ttl): (Option<u64>, i64) = redis::pipe()
            .get(key(redis, email.as_str()))
            .ttl(key(redis, email.as_str()))
            .query_async(&mut conn)
            .await?;
        Ok((failures.unwrap_or(0) >= MAX_FAILURES).then_some(ttl.max(1) as u64))
    }

    pub async fn record_failure(redis: &RedisStore, email: &Email) -> redis::RedisResult<()> {
        let mut conn = redis.conn().await?;
        redis::pipe()
            .incr(key(redis, email.as_str()), 1)
            .ignore()
            .cmd("EXPIRE")
            .arg(key(redis, email.as_str()))
            .arg(WINDOW.as_secs())
            .arg("NX")
            .ignore()
            .query_async(&mut conn)
            .await
    }

    pub async fn clear(redis: &RedisStore, email: &str) -> redis::RedisResult<()> {
        let mut conn = redis.conn().await?;
        redis::cmd("DEL")
            .arg(key(redis, email))
            .query_async(&mut conn)
            .await
    }
}
