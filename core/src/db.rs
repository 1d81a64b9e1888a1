//! The MySQL pool and the schema migrations (`migrations/`, embedded at
//! compile time so a binary carries the schema it expects).

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{ConnectOptions, Executor};

use crate::config::Config;

/// The migrations of `migrations/`, in order.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

fn options(config: &Config) -> Result<MySqlConnectOptions, sqlx::Error> {
    Ok(MySqlConnectOptions::from_str(config.database_url.expose())?
        // All DATETIME columns hold UTC; sqlx's default, stated here so no
        // server setting can change it.
        .timezone(Some("+00:00".to_owned()))
        .charset("utf8mb4")
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500)))
}

/// A pool that connects on first use, so a process can start (and report
/// itself unready) while MySQL is down.
pub fn connect_lazy(config: &Config) -> Result<MySqlPool, sqlx::Error> {
    Ok(MySqlPoolOptions::new()
        .max_connections(32)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options(config)?))
}

/// Creates the database named in `DATABASE_URL` if it does not exist yet.
pub async fn create_database_if_missing(config: &Config) -> Result<(), sqlx::Error> {
    let name = checked_name(config)?;
    let mut conn = options(config)?.database("").connect().await?;
    // An identifier cannot be a bind parameter; the name was checked above.
    conn.execute(
        format!("CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            .as_str(),
    )
    .await?;
    Ok(())
}

/// The configured database's name, if it is safe to splice into SQL (an
/// identifier cannot be a bind parameter).
fn checked_name(config: &Config) -> Result<&str, sqlx::Error> {
    let name = config.database_name();
    // Checked when the configuration is read too; a `Config` changed in
    // code since (tests do) is checked again here.
    if !crate::config::is_database_name(name) {
        return Err(sqlx::Error::Configuration(
            format!("DATABASE_URL: database name {name:?} must be [A-Za-z0-9_]+").into(),
        ));
    }
    Ok(name)
}

/// Drops the configured database (for tools that made a scratch one).
pub async fn drop_database(config: &Config) -> Result<(), sqlx::Error> {
    let name = checked_name(config)?;
    let mut conn = options(config)?.database("").connect().await?;
    // An identifier cannot be a bind parameter; the name was checked above.
    conn.execute(format!("DROP DATABASE IF EXISTS `{name}`").as_str())
        .await?;
    Ok(())
}

/// Applies pending migrations; a second run changes nothing.
pub async fn migrate(pool: &MySqlPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// One round trip, for readiness checks.
pub async fn ping(pool: &MySqlPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}
