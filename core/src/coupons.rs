//! The `coupon` and `coupon_issue` tables.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Datelike, Utc};
use sqlx::MySqlPool;

use crate::domain::{CouponId, UserId};

/// A row of `coupon`.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Coupon {
    #[sqlx(try_from = "u64")]
    pub id: CouponId,
    pub title: String,
    pub total_quantity: u32,
    pub remaining_quantity: u32,
    pub valid_from: DateTime<Utc>,
    pub valid_to: DateTime<Utc>,
    pub status: String,
    pub admission_rate_per_sec: Option<u32>,
    pub created_at: DateTime<Utc>,
}

impl From<u64> for CouponId {
    fn from(id: u64) -> Self {
        CouponId(id)
    }
}

/// A new coupon, already validated.
#[derive(Clone, Debug)]
pub struct NewCoupon {
    pub title: String,
    pub total_quantity: u32,
    pub valid_from: DateTime<Utc>,
    pub valid_to: DateTime<Utc>,
    pub admission_rate_per_sec: Option<u32>,
}

const COLUMNS: &str =
    "id, title, total_quantity, remaining_quantity, valid_from, valid_to, status, \
                       admission_rate_per_sec, created_at";

pub async fn create(db: &MySqlPool, new: &NewCoupon) -> Result<Coupon, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO coupon (title, total_quantity, remaining_quantity, valid_from, valid_to, admission_rate_per_sec) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&new.title)
    .bind(new.total_quantity)
    .bind(new.total_quantity)
    // Bound as naive UTC: sqlx sends a `DateTime<Utc>` as TIMESTAMP, whose
    // range ends in 2038, and the server would store NULL past it.
    .bind(new.valid_from.naive_utc())
    .bind(new.valid_to.naive_utc())
    .bind(new.admission_rate_per_sec)
    .execute(db)
    .await?;
    by_id(db, CouponId(done.last_insert_id()))
        .await?
        .ok_or(sqlx::Error::RowNotFound)
}

pub async fn by_id(db: &MySqlPool, id: CouponId) -> Result<Option<Coupon>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM coupon WHERE id = ?"))
        .bind(id.0)
        .fetch_optional(db)
        .await
}

/// The newest coupons first, at most `limit`.
pub async fn list(db: &MySqlPool, limit: u32) -> Result<Vec<Coupon>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM coupon ORDER BY id DESC LIMIT ?"
    ))
    .bind(limit)
    .fetch_all(db)
    .await
}

/// `coupon_issue` rows per coupon, for the given coupons.
pub async fn issued_counts(
    db: &MySqlPool,
    ids: &[CouponId],
) -> Result<Vec<(CouponId, u64)>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = sqlx::QueryBuilder::new(
        "SELECT coupon_id, COUNT(*) FROM coupon_issue WHERE coupon_id IN (",
    );
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(id.0);
    }
    query.push(") GROUP BY coupon_id");
    let rows: Vec<(u64, i64)> = query.build_query_as().fetch_all(db).await?;
    Ok(rows
        .into_iter()
        .map(|(id, n)| (CouponId(id), n.max(0) as u64))
        .collect())
}

/// One issued coupon of a user, joined with its coupon.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct IssuedCoupon {
    #[sqlx(try_from = "u64")]
    pub coupon_id: CouponId,
    pub title: String,
    pub issued_at: DateTime<Utc>,
    pub valid_from: DateTime<Utc>,
    pub valid_to: DateTime<Utc>,
    pub status: String,
    pub remaining_quantity: u32,
}

/// The user's issued coupons, newest first (index `ix_coupon_issue_user_issued`).
pub async fn issued_to(
    db: &MySqlPool,
    user: UserId,
    limit: u32,
) -> Result<Vec<IssuedCoupon>, sqlx::Error> {
    sqlx::query_as(
        "SELECT i.coupon_id, c.title, i.issued_at, c.valid_from, c.valid_to, c.status, c.remaining_quantity \
         FROM coupon_issue i JOIN coupon c ON c.id = i.coupon_id \
         WHERE i.user_id = ? ORDER BY i.issued_at DESC, i.id DESC LIMIT ?",
    )
    .bind(user.0)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// One issue to persist, from a Kafka event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewIssue {
    pub coupon: CouponId,
    pub user: UserId,
    pub issued_at: DateTime<Utc>,
}

/// Rows per multi-row INSERT.
const INSERT_CHUNK: usize = 1000;

/// Writes `issues` into `coupon_issue` and brings `remaining_quantity` (and
/// the stored `sold_out` status) of every touched coupon in line with the
/// rows, in one transaction. Idempotent: an issue already stored (a
/// redelivered event) is skipped by UNIQUE(user_id, coupon_id), so invariant
/// 2 holds whatever Kafka delivers twice. Returns the rows inserted.
pub async fn persist_issues(db: &MySqlPool, issues: &[NewIssue]) -> Result<u64, sqlx::Error> {
    if issues.is_empty() {
        return Ok(0);
    }
    let mut tx = db.begin().await?;
    let mut inserted = 0;
    for chunk in issues.chunks(INSERT_CHUNK) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT IGNORE INTO coupon_issue (user_id, coupon_id, issued_at) ",
        );
        insert.push_values(chunk, |mut row, issue| {
            row.push_bind(issue.user.0)
                .push_bind(issue.coupon.0)
                .push_bind(issue.issued_at.naive_utc());
        });
        inserted += insert.build().execute(&mut *tx).await?.rows_affected();
    }
    let mut coupons: Vec<CouponId> = issues.iter().map(|i| i.coupon).collect();
    coupons.sort_unstable();
    coupons.dedup();
    for coupon in coupons {
        refresh_remaining(&mut tx, coupon).await?;
    }
    tx.commit().await?;
    Ok(inserted)
}

/// Whether `at` is a time this system stores: from 1970 (Redis keeps
/// times as ms since the epoch) to the end of 9999, the last year a
/// `DATETIME` column holds (outside its range MySQL, under `INSERT IGNORE`,
/// would store the zero date rather than refuse).
pub fn is_storable(at: &DateTime<Utc>) -> bool {
    (1970..=9999).contains(&at.year())
}

/// `ms` since the epoch as a time this system stores ([`is_storable`]).
pub fn storable_time(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(ms).filter(is_storable)
}

/// Why an issue cannot become a row of `coupon_issue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    UnknownCoupon(CouponId),
    UnknownUser(UserId),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::UnknownCoupon(id) => write!(f, "coupon {id} does not exist"),
            Refusal::UnknownUser(id) => write!(f, "user {id} does not exist"),
        }
    }
}

/// The issues among `issues` that no row can hold because their coupon or
/// their user does not exist, as (index into `issues`, why). `INSERT IGNORE`
/// skips such an issue as silently as a duplicate, so a caller whose insert
/// made fewer rows than it carried asks here which were refused. Coupons and
/// users are never deleted, so the answer does not go stale.
pub async fn refused_issues(
    db: &MySqlPool,
    issues: &[NewIssue],
) -> Result<Vec<(usize, Refusal)>, sqlx::Error> {
    let coupons = existing_ids(db, "coupon", issues.iter().map(|i| i.coupon.0)).await?;
    let users = existing_ids(db, "`user`", issues.iter().map(|i| i.user.0)).await?;
    Ok(issues
        .iter()
        .enumerate()
        .filter_map(|(n, issue)| {
            if !coupons.contains(&issue.coupon.0) {
                Some((n, Refusal::UnknownCoupon(issue.coupon)))
            } else if !users.contains(&issue.user.0) {
                Some((n, Refusal::UnknownUser(issue.user)))
            } else {
                None
            }
        })
        .collect())
}

/// Which of `ids` are rows of `table` (`coupon` or `` `user` ``).
async fn existing_ids(
    db: &MySqlPool,
    table: &'static str,
    ids: impl Iterator<Item = u64>,
) -> Result<HashSet<u64>, sqlx::Error> {
    let mut ids: Vec<u64> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    let mut found = HashSet::with_capacity(ids.len());
    for chunk in ids.chunks(INSERT_CHUNK) {
        let mut select = sqlx::QueryBuilder::new(format!("SELECT id FROM {table} WHERE id IN ("));
        let mut list = select.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        select.push(")");
        let rows = select.build_query_scalar::<u64>().fetch_all(db).await?;
        found.extend(rows);
    }
    Ok(found)
}

/// Invariant 7: remaining = total - rows, computed from the rows rather than
/// decremented, so replays and repairs can never make it drift; the stored
/// status follows (`sold_out` once every coupon is a row).
pub async fn refresh_remaining(
    conn: &mut sqlx::MySqlConnection,
    coupon: CouponId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE coupon c \
         JOIN (SELECT COUNT(*) AS n FROM coupon_issue WHERE coupon_id = ?) i \
         SET c.remaining_quantity = GREATEST(CAST(c.total_quantity AS SIGNED) - i.n, 0), \
             c.status = IF(c.status = 'active' AND i.n >= c.total_quantity, 'sold_out', c.status) \
         WHERE c.id = ?",
    )
    .bind(coupon.0)
    .bind(coupon.0)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Coupons whose `remaining_quantity` is not `total - rows`:
/// (id, stored remaining, rows).
pub async fn remaining_drift(db: &MySqlPool) -> Result<Vec<(CouponId, u32, u64)>, sqlx::Error> {
    let rows: Vec<(u64, u32, i64)> = sqlx::query_as(
        "SELECT c.id, c.remaining_quantity, COUNT(i.id) AS n \
         FROM coupon c LEFT JOIN coupon_issue i ON i.coupon_id = c.id \
         GROUP BY c.id, c.remaining_quantity, c.total_quantity \
         HAVING c.remaining_quantity <> GREATEST(CAST(c.total_quantity AS SIGNED) - COUNT(i.id), 0)",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, remaining, n)| (CouponId(id), remaining, n.max(0) as u64))
        .collect())
}

/// The users holding `coupon` according to MySQL.
pub async fn holders(db: &MySqlPool, coupon: CouponId) -> Result<Vec<UserId>, sqlx::Error> {
    Ok(issues(db, coupon)
        .await?
        .into_iter()
        .map(|(user, _)| user)
        .collect())
}

/// Every issue of `coupon` MySQL holds: who, and when the claim script
/// issued it.
pub async fn issues(
    db: &MySqlPool,
    coupon: CouponId,
) -> Result<Vec<(UserId, DateTime<Utc>)>, sqlx::Error> {
    let rows: Vec<(u64, DateTime<Utc>)> =
        sqlx::query_as("SELECT user_id, issued_at FROM coupon_issue WHERE coupon_id = ?")
            .bind(coupon.0)
            .fetch_all(db)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(user, at)| (UserId(user), at))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storable_time_is_one_a_datetime_column_holds() {
        let at = |ms| storable_time(ms).map(|t| t.to_rfc3339());
        assert_eq!(at(0).as_deref(), Some("1970-01-01T00:00:00+00:00"));
        assert_eq!(
            at(253_402_300_799_999).as_deref(),
            Some("9999-12-31T23:59:59.999+00:00")
        );
        assert_eq!(at(253_402_300_800_000), None);
        assert_eq!(at(-1), None);
        assert_eq!(at(i64::MAX), None);
        assert_eq!(at(i64::MIN), None);
    }

    #[test]
    fn a_refusal_names_what_does_not_exist() {
        assert_eq!(
            Refusal::UnknownCoupon(CouponId(7)).to_string(),
            "coupon 7 does not exist"
        );
        assert_eq!(
            Refusal::UnknownUser(UserId(9)).to_string(),
            "user 9 does not exist"
        );
    }
}
