//! Redis key names. Every key of one coupon carries the coupon id as a hash
//! tag (`coupon:{42}:stock`), so a claim script that touches only one
//! coupon's keys runs in one slot and works on Redis Cluster.

use std::sync::Arc;

/// Key names under one deployment prefix (`REDIS_KEY_PREFIX`).
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: Arc<str>,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: Arc::from(prefix),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A key of one coupon, e.g. `coupon:{42}:stock`.
    pub fn coupon(&self, coupon_id: u64, what: &str) -> String {
        format!("{}coupon:{{{coupon_id}}}:{what}", self.prefix)
    }

    /// A key that is not about one coupon, e.g. `lock:reconcile`.
    pub fn global(&self, what: &str) -> String {
        format!("{}{what}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coupon_keys_share_a_hash_tag() {
        let keys = Keys::new("t1:");
        assert_eq!(keys.coupon(42, "stock"), "t1:coupon:{42}:stock");
        assert_eq!(keys.coupon(42, "queue"), "t1:coupon:{42}:queue");
        assert_eq!(keys.global("lock:expiry"), "t1:lock:expiry");
    }
}
