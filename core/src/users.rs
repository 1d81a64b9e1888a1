//! The `user` table.

use chrono::{DateTime, Utc};
use sqlx::MySqlPool;

use crate::domain::{Email, Role, UserId};

/// A row of `user`, without the password hash.
#[derive(Clone, Debug)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// What login needs: the account and its password hash.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: u64,
    email: String,
    name: String,
    role: String,
    created_at: DateTime<Utc>,
    password_hash: String,
}

impl Row {
    fn into_credentials(self) -> Credentials {
        Credentials {
            user: User {
                id: UserId(self.id),
                email: self.email,
                name: self.name,
                // The CHECK constraint allows only these two.
                role: Role::parse(&self.role).unwrap_or(Role::User),
                created_at: self.created_at,
            },
            password_hash: self.password_hash,
        }
    }
}

const COLUMNS: &str = "id, email, name, role, created_at, password_hash";

/// Whether an insert failed because the email is taken.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("email is taken")]
    EmailTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub async fn create(
    db: &MySqlPool,
    email: &Email,
    name: &str,
    password_hash: &str,
    role: Role,
) -> Result<User, CreateError> {
    let result =
        sqlx::query("INSERT INTO `user` (email, name, password_hash, role) VALUES (?, ?, ?, ?)")
            .bind(email.as_str())
            .bind(name)
            .bind(password_hash)
            .bind(role.as_str())
            .execute(db)
            .await;
    match result {
        Ok(done) => Ok(by_id(db, UserId(done.last_insert_id()))
            .await?
            .ok_or(sqlx::Error::RowNotFound)?),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(CreateError::EmailTaken),
        Err(e) => Err(e.into()),
    }
}

pub async fn by_id(db: &MySqlPool, id: UserId) -> Result<Option<User>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM `user` WHERE id = ?"))
        .bind(id.0)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| r.into_credentials().user))
}

pub async fn credentials(
    db: &MySqlPool,
    email: &Email,
) -> Result<Option<Credentials>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM `user` WHERE email = ?"))
        .bind(email.as_str())
        .fetch_optional(db)
        .await?;
    Ok(row.map(Row::into_credentials))
}

/// Creates the account as an admin, or makes the existing account an admin
/// with this password. Idempotent.
pub async fn upsert_admin(
    db: &MySqlPool,
    email: &Email,
    password_hash: &str,
) -> Result<User, sqlx::Error> {
    sqlx::query(
        "INSERT INTO `user` (email, name, password_hash, role) VALUES (?, 'Administrator', ?, 'admin') \
         ON DUPLICATE KEY UPDATE role = 'admin', password_hash = VALUES(password_hash)",
    )
    .bind(email.as_str())
    .bind(password_hash)
    .execute(db)
    .await?;
    credentials(db, email)
        .await?
        .map(|c| c.user)
        .ok_or(sqlx::Error::RowNotFound)
}
