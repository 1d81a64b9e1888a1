//! The one state value handed to every handler.

use std::sync::Arc;

use coupon_core::health::Dependencies;
use coupon_core::{Config, RedisStore};
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use sqlx::MySqlPool;

use crate::auth::Tokens;
use crate::claim::batch::Enqueuer;
use crate::live::Hub;
use crate::pages::csrf::CsrfKey;
use crate::rate_limit::RateLimits;
use crate::tickets::TicketKey;

/// Cheap to clone: every field is a handle.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: MySqlPool,
    pub redis: RedisStore,
    /// Used for readiness only: the gateway never produces to Kafka (the
    /// worker relays the outbox).
    pub kafka: Arc<AdminClient<DefaultClientContext>>,
    pub metrics: PrometheusHandle,
    pub tokens: Arc<Tokens>,
    pub tickets: TicketKey,
    /// Signs the page forms' CSRF tokens.
    pub csrf: CsrfKey,
    /// Live updates for waiting pages: one Redis poll per watched coupon.
    pub live: Hub,
    pub limits: Arc<RateLimits>,
    /// Claims arriving together share one `enqueue.lua` call.
    pub enqueuer: Enqueuer,
}

impl AppState {
    /// Builds every handle without touching the network: connections open
    /// on first use, so the gateway starts (unready) while a service is down.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        Ok(Self {
            db: coupon_core::db::connect_lazy(&config)?,
            redis: RedisStore::new(&config)?,
            kafka: Arc::new(coupon_core::kafka::admin_client(&config)?),
            metrics: coupon_core::metrics::install(),
            tokens: Arc::new(Tokens::new(config.jwt_secret.expose(), config.jwt_ttl)),
            tickets: TicketKey::derive(config.jwt_secret.expose()),
            csrf: CsrfKey::derive(config.jwt_secret.expose()),
            live: Hub::default(),
            limits: Arc::new(RateLimits::default()),
            enqueuer: Enqueuer::default(),
            config: Arc::new(config),
        })
    }

    pub fn dependencies(&self) -> Dependencies {
        Dependencies {
            db: self.db.clone(),
            redis: self.redis.clone(),
            kafka: self.kafka.clone(),
        }
    }
}
