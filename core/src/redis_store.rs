//! The Redis connection: one multiplexed, self-reconnecting connection per
//! process (`ConnectionManager`), opened on first use so that a process can
//! start, and say it is unready, while Redis is down.
//!
//! Until it first opens, one attempt runs at a time, and every caller that
//! was waiting while an attempt failed gets that attempt's error instead of
//! making an attempt of its own: with Redis down, a burst of requests is
//! answered after one attempt, not after one attempt each in turn.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError};
use tokio::sync::{Mutex, OnceCell};

use crate::config::Config;
use crate::keys::Keys;

#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    opening: Arc<Opening>,
    keys: Keys,
}

/// The connection once it has opened, and the attempts to open it.
#[derive(Default)]
struct Opening {
    manager: OnceCell<ConnectionManager>,
    /// Held while an attempt runs; the error of the last failed attempt.
    last_failure: Mutex<Option<(ErrorKind, String)>>,
    /// Attempts finished so far: a caller that sees this move while it
    /// waited for `last_failure` shares that attempt's outcome.
    finished: AtomicU64,
    started: AtomicU64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    pub fn new(config: &Config) -> redis::RedisResult<Self> {
        Ok(Self {
            client: redis::Client::open(config.redis_url.expose())?,
            opening: Arc::new(Opening::default()),
            keys: Keys::new(&config.redis_key_prefix),
        })
    }

    /// Key names for this deployment (its prefix applied).
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The shared connection. Cloning a `ConnectionManager` is cheap: all
    /// clones pipeline over one socket.
    pub async fn conn(&self) -> redis::RedisResult<ConnectionManager> {
        let opening = &*self.opening;
        if let Some(manager) = opening.manager.get() {
            return Ok(manager.clone());
        }
        let seen = opening.finished.load(Ordering::Acquire);
        let mut last_failure = opening.last_failure.lock().await;
        if let Some(manager) = opening.manager.get() {
            return Ok(manager.clone());
        }
        if opening.finished.load(Ordering::Acquire) != seen {
            if let Some((kind, detail)) = last_failure.as_ref() {
                return Err(RedisError::from((
                    *kind,
                    "Redis could not be reached",
                    detail.clone(),
                )));
            }
        }
        opening.started.fetch_add(1, Ordering::Relaxed);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(5))
            .set_number_of_retries(2)
            .set_max_delay(500);
        let outcome = ConnectionManager::new_with_config(self.client.clone(), config).await;
        match &outcome {
            Ok(manager) => {
                // Only this attempt, under the lock, can set it.
                let _ = opening.manager.set(manager.clone());
                *last_failure = None;
            }
            Err(e) => *last_failure = Some((e.kind(), e.to_string())),
        }
        opening.finished.fetch_add(1, Ordering::Release);
        outcome
    }

    /// How many times this store (and its clones) has tried to open the
    /// shared connection.
    pub fn connection_attempts(&self) -> u64 {
        self.opening.started.load(Ordering::Relaxed)
    }

    /// A dedicated connection, for blocking reads or pub/sub that must not
    /// hold up the shared one.
    pub async fn dedicated(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        self.client.get_multiplexed_async_connection().await
    }

    /// One page of `SCAN cursor MATCH pattern COUNT count`: the next cursor
    /// (0 when done) and the keys found.
    pub async fn scan_page(
        conn: &mut ConnectionManager,
        pattern: &str,
        cursor: u64,
        count: usize,
    ) -> redis::RedisResult<(u64, Vec<String>)> {
        redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count)
            .query_async(conn)
            .await
    }

    /// One round trip, for readiness checks.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
    }
}
