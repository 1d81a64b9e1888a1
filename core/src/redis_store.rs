//! The Redis connection: one multiplexed, self-reconnecting connection per
//! process (`ConnectionManager`), opened on first use so that a process can
//! start, and say it is unready, while Redis is down.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::config::Config;
use crate::keys::Keys;

#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    manager: Arc<OnceCell<ConnectionManager>>,
    keys: Keys,
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
            manager: Arc::new(OnceCell::new()),
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
        let manager = self
            .manager
            .get_or_try_init(|| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Duration::from_secs(2))
                    .set_response_timeout(Duration::from_secs(5))
                    .set_number_of_retries(2)
                    .set_max_delay(500);
                ConnectionManager::new_with_config(self.client.clone(), config)
            })
            .await?;
        Ok(manager.clone())
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
