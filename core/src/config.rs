//! Typed configuration, read once from the environment at start.
//!
//! Every variable has a default that fits a developer machine (the local
//! services of DESIGN.md), so `cargo run` needs no setup. A value that is
//! present but wrong stops start-up with a [`ConfigError`] naming the
//! variable; nothing falls back silently to a default.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use chrono_tz::Tz;
use ipnet::IpNet;

/// A secret that never prints: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Which environment the process runs in. Development relaxes the checks
/// that only make sense with real secrets (a default `JWT_SECRET`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A start-up configuration error. The message always names the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration error: {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl ConfigError {
    fn new(var: &'static str, message: impl Into<String>) -> Self {
        Self {
            var,
            message: message.into(),
        }
    }
}

/// The administrator account that start-up creates or promotes.
#[derive(Clone, Debug)]
pub struct AdminBootstrap {
    pub email: String,
    pub password: Secret,
}

/// Everything the three processes read from the environment.
#[derive(Clone, Debug)]
pub struct Config {
    pub app_env: AppEnv,
    pub log_format: LogFormat,

    pub database_url: Secret,
    pub redis_url: Secret,
    /// Prepended to every Redis key, so that several deployments (or tests)
    /// can share one Redis without seeing each other's keys.
    pub redis_key_prefix: String,

    pub kafka_brokers: String,
    pub kafka_topic: String,
    pub kafka_dlq_topic: String,
    pub kafka_partitions: i32,
    pub kafka_replication_factor: i32,
    pub kafka_consumer_group: String,
    /// This worker's name in the persister's consumer group (Kafka static
    /// membership, `group.instance.id`): a worker restarted under the same
    /// name takes its partitions back at once instead of waiting for its
    /// dead predecessor to be evicted. Unique per running worker; defaults
    /// to the host name.
    pub worker_id: String,
    /// Send every Kafka message in a batch of its own. The local broker
    /// (tansu, memory engine) keeps exact offsets only this way; real Kafka
    /// (docker-compose) sets it to false and batches normally.
    pub kafka_one_message_per_batch: bool,
    /// How long the producer tries to deliver one message before it reports
    /// failure (the relay then retries the batch).
    pub kafka_message_timeout: Duration,

    pub jwt_secret: Secret,
    pub jwt_ttl: Duration,

    pub gateway_addr: SocketAddr,
    pub worker_metrics_addr: SocketAddr,
    pub scheduler_metrics_addr: SocketAddr,

    pub admin: Option<AdminBootstrap>,

    pub daily_limit: u32,
    pub daily_limit_tz: Tz,

    /// Admissions per second for a coupon that does not set its own.
    pub admission_rate_per_sec: u32,
    /// How long a ticket of a finished coupon stays readable.
    pub ticket_ttl: Duration,
    /// How long an issue may take to reach MySQL before reconciliation
    /// repairs it.
    pub reconcile_delay: Duration,
    /// Per-address and per-account request limits (`RATE_LIMITS=off` turns
    /// them off, e.g. for a load test from one address).
    pub rate_limits: bool,
    /// The reverse proxies and load balancers in front of the gateway. A
    /// request whose peer is one of them is counted against the client
    /// address it names in `X-Forwarded-For`; from anyone else that header
    /// is ignored, so a client cannot pick its own address.
    pub trusted_proxies: Vec<IpNet>,
}

/// The development default for `JWT_SECRET`; refused in production.
const DEV_JWT_SECRET: &str = "development-only-secret-do-not-use-in-production";

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests can pass a map instead
    /// of mutating the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let app_env = env.parse_with("APP_ENV", AppEnv::Development, |v| match v {
            "development" | "dev" => Ok(AppEnv::Development),
            "production" | "prod" => Ok(AppEnv::Production),
            _ => Err("expected `development` or `production`".into()),
        })?;
        let log_format = env.parse_with("LOG_FORMAT", LogFormat::Text, |v| match v {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected `text` or `json`".into()),
        })?;

        let database_url = env.string("DATABASE_URL", "mysql://root@127.0.0.1:3306/coupons");
        if !database_url.starts_with("mysql://") && !database_url.starts_with("mariadb://") {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "expected a mysql:// URL, e.g. mysql://root@127.0.0.1:3306/coupons",
            ));
        }
        if let Err(e) = sqlx::mysql::MySqlConnectOptions::from_str(&database_url) {
            return Err(ConfigError::new(
                "DATABASE_URL",
                format!("not a valid URL ({e}), e.g. mysql://root@127.0.0.1:3306/coupons"),
            ));
        }
        // Spliced into CREATE DATABASE (an identifier cannot be a bind
        // parameter), and without it the migrations fail obscurely.
        let name = database_name_in(&database_url);
        if name.is_empty() {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "must name its database, e.g. mysql://root@127.0.0.1:3306/coupons",
            ));
        }
        if !is_database_name(name) {
            return Err(ConfigError::new(
                "DATABASE_URL",
                format!("the database name {name:?} must be letters, digits and _ only"),
            ));
        }
        let redis_url = env.string("REDIS_URL", "redis://127.0.0.1:6379");
        if redis::Client::open(redis_url.as_str()).is_err() {
            // The client's own error ("did not parse- InvalidClientConfig")
            // says nothing more.
            return Err(ConfigError::new(
                "REDIS_URL",
                "expected a Redis URL such as redis://127.0.0.1:6379",
            ));
        }

        let jwt_secret = match (lookup("JWT_SECRET"), app_env) {
            (Some(s), _) if s.len() >= 32 => s,
            (Some(_), _) => {
                return Err(ConfigError::new(
                    "JWT_SECRET",
                    "must be at least 32 bytes long",
                ))
            }
            (None, AppEnv::Development) => DEV_JWT_SECRET.to_owned(),
            (None, AppEnv::Production) => {
                return Err(ConfigError::new(
                    "JWT_SECRET",
                    "is required when APP_ENV=production",
                ))
            }
        };

        let admin = match (lookup("ADMIN_EMAIL"), lookup("ADMIN_PASSWORD")) {
            (Some(email), Some(password)) => Some(AdminBootstrap {
                email,
                password: Secret::new(password),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "ADMIN_PASSWORD",
                    "is required when ADMIN_EMAIL is set",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "ADMIN_EMAIL",
                    "is required when ADMIN_PASSWORD is set",
                ))
            }
        };

        let kafka_brokers = env.string("KAFKA_BROKERS", "127.0.0.1:9092");
        if kafka_brokers.trim().is_empty() {
            return Err(ConfigError::new("KAFKA_BROKERS", "must not be empty"));
        }

        Ok(Self {
            app_env,
            log_format,
            database_url: Secret::new(database_url),
            redis_url: Secret::new(redis_url),
            redis_key_prefix: env.string("REDIS_KEY_PREFIX", ""),
            kafka_brokers,
            kafka_topic: env.topic("KAFKA_TOPIC", "coupon-issued")?,
            kafka_dlq_topic: env.topic("KAFKA_DLQ_TOPIC", "coupon-issued-dlq")?,
            kafka_partitions: env.number("KAFKA_PARTITIONS", 6, 1..=1024)?,
            kafka_replication_factor: env.number("KAFKA_REPLICATION_FACTOR", 1, 1..=16)?,
            kafka_consumer_group: env.string("KAFKA_CONSUMER_GROUP", "coupon-persister"),
            worker_id: env.name("WORKER_ID", &host_name())?,
            kafka_one_message_per_batch: env.boolean("KAFKA_ONE_MESSAGE_PER_BATCH", true)?,
            kafka_message_timeout: Duration::from_millis(env.number(
                "KAFKA_MESSAGE_TIMEOUT_MS",
                10_000,
                1_000..=300_000,
            )?),
            jwt_secret: Secret::new(jwt_secret),
            jwt_ttl: Duration::from_secs(env.number("JWT_TTL_SECS", 3600, 60..=30 * 86_400)?),
            gateway_addr: env.parse("GATEWAY_ADDR", "127.0.0.1:8080")?,
            worker_metrics_addr: env.parse("WORKER_METRICS_ADDR", "127.0.0.1:9101")?,
            scheduler_metrics_addr: env.parse("SCHEDULER_METRICS_ADDR", "127.0.0.1:9102")?,
            admin,
            daily_limit: env.number("DAILY_LIMIT", 1, 1..=1_000_000)?,
            daily_limit_tz: env.parse_with("DAILY_LIMIT_TZ", chrono_tz::Asia::Seoul, |v| {
                v.parse::<Tz>()
                    .map_err(|_| "expected an IANA time zone such as Asia/Seoul".into())
            })?,
            admission_rate_per_sec: env.number("ADMISSION_RATE_PER_SEC", 500, 1..=100_000)?,
            ticket_ttl: Duration::from_secs(env.number(
                "TICKET_TTL_SECS",
                3600,
                60..=30 * 86_400,
            )?),
            reconcile_delay: Duration::from_secs(env.number(
                "RECONCILE_DELAY_SECS",
                60,
                0..=86_400,
            )?),
            rate_limits: env.boolean("RATE_LIMITS", true)?,
            trusted_proxies: env.parse_with("TRUSTED_PROXIES", Vec::new(), parse_networks)?,
        })
    }

    /// The database name inside `DATABASE_URL` (`coupons` by default).
    pub fn database_name(&self) -> &str {
        database_name_in(self.database_url.expose())
    }
}

/// Whether `name` is a database name this project uses: letters, digits
/// and `_`, so that it can be spliced into `CREATE DATABASE` (an
/// identifier cannot be a bind parameter).
pub fn is_database_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The database name inside a MySQL URL: the path, without its query.
fn database_name_in(url: &str) -> &str {
    let path = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = path.split('?').next().unwrap_or(path);
    path.split_once('/').map_or("", |(_, db)| db)
}

/// Small helpers that read one variable each and name it in their errors.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn string(&self, var: &'static str, default: &str) -> String {
        (self.0)(var).unwrap_or_else(|| default.to_owned())
    }

    fn parse_with<T>(
        &self,
        var: &'static str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match (self.0)(var) {
            None => Ok(default),
            Some(raw) => parse(raw.trim())
                .map_err(|why| ConfigError::new(var, format!("invalid value {raw:?}: {why}"))),
        }
    }

    fn parse<T: FromStr>(&self, var: &'static str, default: &str) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        let raw = self.string(var, default);
        raw.trim()
            .parse()
            .map_err(|e| ConfigError::new(var, format!("invalid value {raw:?}: {e}")))
    }

    fn number<T>(
        &self,
        var: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        self.parse_with(var, default, |v| {
            let n: T = v
                .parse()
                .map_err(|_| "expected a whole number".to_owned())?;
            if range.contains(&n) {
                Ok(n)
            } else {
                Err(format!(
                    "expected a number from {} to {}",
                    range.start(),
                    range.end()
                ))
            }
        })
    }

    fn boolean(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        self.parse_with(var, default, |v| match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err("expected true or false".into()),
        })
    }

    fn topic(&self, var: &'static str, default: &str) -> Result<String, ConfigError> {
        self.kafka_name(
            var,
            default,
            "a Kafka topic name is 1 to 249 of [a-zA-Z0-9._-]",
        )
    }

    fn name(&self, var: &'static str, default: &str) -> Result<String, ConfigError> {
        self.kafka_name(var, default, "a worker id is 1 to 249 of [a-zA-Z0-9._-]")
    }

    fn kafka_name(
        &self,
        var: &'static str,
        default: &str,
        rule: &'static str,
    ) -> Result<String, ConfigError> {
        self.parse_with(var, default.to_owned(), |v| {
            let valid = !v.is_empty()
                && v.len() <= 249
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if valid {
                Ok(v.to_owned())
            } else {
                Err(rule.into())
            }
        })
    }
}

/// A comma-separated list of addresses and networks in CIDR notation
/// (`10.0.0.0/8, 192.0.2.7, fd00::/8`); empty for none.
fn parse_networks(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| {
                    format!("{item:?} is neither an IP address nor a network such as 10.0.0.0/8")
                })
        })
        .collect()
}

/// This machine's name, as a valid worker id ("worker" if it has none).
fn host_name() -> String {
    let name: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    if name.is_empty() {
        "worker".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_fit_a_developer_machine() {
        let c = config(&[]).unwrap();
        assert_eq!(c.gateway_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.kafka_brokers, "127.0.0.1:9092");
        assert_eq!(c.daily_limit, 1);
        assert_eq!(c.daily_limit_tz, chrono_tz::Asia::Seoul);
        assert_eq!(c.database_name(), "coupons");
        assert!(c.kafka_one_message_per_batch);
        assert!(c.admin.is_none());
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        let cases = [
            ("DAILY_LIMIT", "zero"),
            ("DAILY_LIMIT", "0"),
            ("DAILY_LIMIT_TZ", "Mars/Olympus"),
            ("GATEWAY_ADDR", "localhost"),
            ("WORKER_METRICS_ADDR", "1.2.3.4:99999"),
            ("DATABASE_URL", "postgres://x"),
            ("DATABASE_URL", "mysql://root@127.0.0.1:3306/"),
            ("DATABASE_URL", "mysql://root@127.0.0.1:3306"),
            ("DATABASE_URL", "mysql://root@127.0.0.1:3306/a`b"),
            ("DATABASE_URL", "mysql://root@127.0.0.1:99999/coupons"),
            ("REDIS_URL", "http://x"),
            ("REDIS_URL", "redis://:99999"),
            ("KAFKA_BROKERS", " "),
            ("KAFKA_TOPIC", "bad topic"),
            ("KAFKA_PARTITIONS", "-1"),
            ("KAFKA_ONE_MESSAGE_PER_BATCH", "maybe"),
            ("WORKER_ID", "worker 1"),
            ("JWT_SECRET", "short"),
            ("JWT_TTL_SECS", "1"),
            ("APP_ENV", "staging"),
            ("LOG_FORMAT", "xml"),
            ("ADMISSION_RATE_PER_SEC", "0"),
            ("ADMISSION_RATE_PER_SEC", "100001"),
            ("ADMIN_EMAIL", "admin@example.com"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal"),
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
        ];
        for (var, value) in cases {
            let err = config(&[(var, value)]).unwrap_err();
            let expected = if var == "ADMIN_EMAIL" {
                "ADMIN_PASSWORD"
            } else {
                var
            };
            assert_eq!(err.var, expected, "{var}={value}");
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn the_worker_id_defaults_to_a_valid_host_name() {
        let c = config(&[]).unwrap();
        assert!(!c.worker_id.is_empty());
        assert!(c
            .worker_id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch)));
        assert_eq!(
            config(&[("WORKER_ID", "worker-2")]).unwrap().worker_id,
            "worker-2"
        );
    }

    #[test]
    fn trusted_proxies_are_addresses_and_networks() {
        assert!(config(&[]).unwrap().trusted_proxies.is_empty());
        assert!(config(&[("TRUSTED_PROXIES", " ")])
            .unwrap()
            .trusted_proxies
            .is_empty());
        let c = config(&[("TRUSTED_PROXIES", "10.1.2.3/8, 192.0.2.7 ,fd00::/8,")]).unwrap();
        let shown: Vec<String> = c.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]);
    }

    #[test]
    fn production_requires_a_real_jwt_secret() {
        let err = config(&[("APP_ENV", "production")]).unwrap_err();
        assert_eq!(err.var, "JWT_SECRET");
        let long = "x".repeat(32);
        assert!(config(&[("APP_ENV", "production"), ("JWT_SECRET", &long)]).is_ok());
    }

    #[test]
    fn secrets_do_not_print() {
        let c = config(&[("JWT_SECRET", &"s".repeat(40))]).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains(&"s".repeat(40)));
        assert!(shown.contains("[redacted]"));
    }
}
