//! The Kafka event: one typed, versioned message, decoded once.
//!
//! The relay carries the issues of one coupon's outbox batch in one message
//! (key = coupon id), which keeps the local broker, at one message per
//! produce batch, far from being the bottleneck. The persister's insert is
//! idempotent on UNIQUE(user_id, coupon_id), so a message delivered twice,
//! or an issue carried in two messages, still makes one row.

use serde::{Deserialize, Serialize};

use crate::domain::{CouponId, UserId};

/// The current version of [`Event`]; decoders refuse others.
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    pub user_id: UserId,
    /// When the claim script issued it, ms since the epoch.
    pub issued_at_ms: i64,
    /// The outbox entry it came from, for tracing.
    pub outbox_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Payload {
    CouponIssued {
        coupon_id: CouponId,
        issues: Vec<Issue>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub version: u32,
    #[serde(flatten)]
    pub payload: Payload,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a JSON event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported event version {0} (this build reads {VERSION})")]
    Version(u32),
    #[error("empty message")]
    Empty,
}

impl Event {
    pub fn issued(coupon_id: CouponId, issues: Vec<Issue>) -> Self {
        Self {
            version: VERSION,
            payload: Payload::CouponIssued { coupon_id, issues },
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event always serializes")
    }

    pub fn decode(bytes: Option<&[u8]>) -> Result<Self, DecodeError> {
        let bytes = bytes.ok_or(DecodeError::Empty)?;
        let event: Event = serde_json::from_slice(bytes)?;
        if event.version != VERSION {
            return Err(DecodeError::Version(event.version));
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_it_cannot_read() {
        let event = Event::issued(
            CouponId(4),
            vec![Issue {
                user_id: UserId(7),
                issued_at_ms: 1_700_000_000_000,
                outbox_id: "1-0".into(),
            }],
        );
        let bytes = event.encode();
        assert_eq!(Event::decode(Some(&bytes)).unwrap(), event);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains(r#""type":"coupon_issued""#) && text.contains(r#""version":1"#));

        assert!(matches!(Event::decode(None), Err(DecodeError::Empty)));
        assert!(matches!(
            Event::decode(Some(b"{oops")),
            Err(DecodeError::Json(_))
        ));
        let v2 = text.replace(r#""version":1"#, r#""version":2"#);
        assert!(matches!(
            Event::decode(Some(v2.as_bytes())),
            Err(DecodeError::Version(2))
        ));
        let other = r#"{"version":1,"type":"coupon_deleted","coupon_id":1}"#;
        assert!(Event::decode(Some(other.as_bytes())).is_err());
    }
}
