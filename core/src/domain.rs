//! Domain types. Each is built by a parser that returns an error, so a value
//! of the type is proof that it is valid ("parse, don't validate").

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Why a value was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// `user.id`.
    UserId
);
id_type!(
    /// `coupon.id`.
    CouponId
);

/// What an account may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A well-formed email address of at most 100 characters, in lower case
/// (so uniqueness is case-insensitive whatever the collation).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let email = raw.trim().to_lowercase();
        let invalid = |why: &str| Err(Invalid::new("email", why));
        if email.is_empty() {
            return invalid("must not be empty");
        }
        if email.chars().count() > Self::MAX_LEN {
            return invalid("must be at most 100 characters");
        }
        let Some((local, domain)) = email.split_once('@') else {
            return invalid("must look like name@example.com");
        };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            && labels
                .last()
                .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
        if local_ok && domain_ok {
            Ok(Self(email))
        } else {
            invalid("must look like name@example.com")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new account's fields, checked together (the API and the sign-up page
/// share these rules).
#[derive(Clone, Debug)]
pub struct NewAccount {
    pub email: Email,
    pub name: String,
    pub password: String,
}

impl NewAccount {
    pub fn parse(email: &str, name: &str, password: &str) -> Result<Self, Invalid> {
        let email = Email::parse(email)?;
        let name = name.trim();
        let name_len = name.chars().count();
        if name_len == 0 {
            return Err(Invalid::new("name", "must not be blank"));
        }
        if name_len > 50 {
            return Err(Invalid::new("name", "must be at most 50 characters"));
        }
        let pw_len = password.chars().count();
        if !(8..=128).contains(&pw_len) {
            return Err(Invalid::new("password", "must be 8 to 128 characters"));
        }
        Ok(Self {
            email,
            name: name.to_owned(),
            password: password.to_owned(),
        })
    }
}

/// A coupon's state as people see it, derived from the stored status, the
/// time window and the live stock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CouponStatus {
    Scheduled,
    Active,
    SoldOut,
    Expired,
}

impl CouponStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CouponStatus::Scheduled => "scheduled",
            CouponStatus::Active => "active",
            CouponStatus::SoldOut => "sold_out",
            CouponStatus::Expired => "expired",
        }
    }

    /// `stored` is `coupon.status`; `remaining` the live stock.
    pub fn derive(
        stored: &str,
        valid_from: DateTime<Utc>,
        valid_to: DateTime<Utc>,
        remaining: u64,
        now: DateTime<Utc>,
    ) -> Self {
        if stored == "expired" || now >= valid_to {
            CouponStatus::Expired
        } else if stored == "sold_out" || remaining == 0 {
            CouponStatus::SoldOut
        } else if now < valid_from {
            CouponStatus::Scheduled
        } else {
            CouponStatus::Active
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in [
            "", "plain", "@x.io", "a@", "a@x", "a@@x.io", "a b@x.io", "a@x..io", "a@-x.io",
            ".a@x.io", "a@x.i0",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(90));
        assert_eq!(Email::parse(&long).unwrap_err().field, "email");
    }

    #[test]
    fn status_follows_time_and_stock() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let (from, to) = (t("2026-01-01T00:00:00Z"), t("2026-01-02T00:00:00Z"));
        let derive =
            |stored, remaining, now| CouponStatus::derive(stored, from, to, remaining, t(now));
        assert_eq!(
            derive("active", 5, "2025-12-31T00:00:00Z"),
            CouponStatus::Scheduled
        );
        assert_eq!(
            derive("active", 5, "2026-01-01T00:00:00Z"),
            CouponStatus::Active
        );
        assert_eq!(
            derive("active", 0, "2026-01-01T10:00:00Z"),
            CouponStatus::SoldOut
        );
        assert_eq!(
            derive("sold_out", 3, "2026-01-01T10:00:00Z"),
            CouponStatus::SoldOut
        );
        assert_eq!(
            derive("active", 5, "2026-01-02T00:00:00Z"),
            CouponStatus::Expired
        );
        assert_eq!(
            derive("expired", 5, "2026-01-01T10:00:00Z"),
            CouponStatus::Expired
        );
    }
}
