//! Coupons and the admin API over HTTP against the real MySQL and Redis.

mod common;

use common::{active_coupon, rand_suffix, TestApp};
use coupon_core::domain::CouponId;
use serde_json::json;

#[tokio::test]
async fn admin_creates_a_coupon_that_everyone_can_see() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let created = app
        .coupon(
            &admin,
            json!({
                "title": "  Free coffee  ",
                "total_quantity": 1000,
                "valid_from": "2026-01-01T09:00:00+09:00",
                "valid_to": "2099-01-01T00:00:00Z",
                "admission_rate_per_sec": 250
            }),
        )
        .await;
    assert_eq!(created["title"], "Free coffee");
    assert_eq!(created["total_quantity"], 1000);
    assert_eq!(created["remaining_quantity"], 1000);
    assert_eq!(created["valid_from"], "2026-01-01T00:00:00Z");
    assert_eq!(created["status"], "active");
    assert_eq!(created["admission_rate_per_sec"], 250);
    let id = created["id"].as_u64().unwrap();

    let list = app.get("/api/coupons", None).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert_eq!(list.body[0]["id"], id);
    let one = app.get(&format!("/api/coupons/{id}"), None).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body, list.body[0]);

    // The stock is ready in Redis for the claim path.
    let stock = coupon_core::stock::stock(&app.state.redis, coupon_core::domain::CouponId(id))
        .await
        .unwrap();
    assert_eq!(stock, Some(1000));

    // Remaining is live: what Redis says, not the MySQL column.
    let key =
        coupon_core::stock::stock_key(app.state.redis.keys(), coupon_core::domain::CouponId(id));
    let mut conn = app.state.redis.conn().await.unwrap();
    redis::cmd("SET")
        .arg(&key)
        .arg(0)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let sold = app.get(&format!("/api/coupons/{id}"), None).await;
    assert_eq!(sold.body["remaining_quantity"], 0);
    assert_eq!(sold.body["status"], "sold_out");
}

#[tokio::test]
async fn status_follows_the_time_window() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let later = app
        .coupon(
            &admin,
            json!({"title": "Later", "total_quantity": 5,
                   "valid_from": "2099-01-01T00:00:00Z", "valid_to": "2099-02-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(later["status"], "scheduled");
    let past = app
        .coupon(
            &admin,
            json!({"title": "Past", "total_quantity": 5,
                   "valid_from": "2020-01-01T00:00:00Z", "valid_to": "2020-02-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(past["status"], "expired");
}

#[tokio::test]
async fn coupon_creation_rejects_bad_input() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let base = active_coupon("x", 10);
    let with = |field: &str, value: serde_json::Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    let cases = [
        (with("total_quantity", json!(0)), "total_quantity"),
        (with("total_quantity", json!(10_000_001)), "total_quantity"),
        (with("total_quantity", json!(-1)), "total_quantity"),
        (with("total_quantity", json!("ten")), "total_quantity"),
        (with("title", json!("")), "title"),
        (with("title", json!("t".repeat(101))), "title"),
        (with("valid_from", json!("tomorrow")), "valid_from"),
        (
            with("valid_from", json!("2099-01-01T00:00:00Z")),
            "valid_to",
        ),
        (with("valid_to", base["valid_from"].clone()), "valid_to"),
        (
            with("valid_from", json!("0000-01-01T00:00:00Z")),
            "valid_from",
        ),
        (
            with("valid_from", json!("1969-12-31T23:59:59Z")),
            "valid_from",
        ),
        // 9999-12-31 in its own zone, but year 10000 in UTC.
        (
            with("valid_to", json!("9999-12-31T23:00:00-02:00")),
            "valid_to",
        ),
        (
            with("admission_rate_per_sec", json!(0)),
            "admission_rate_per_sec",
        ),
    ];
    for (body, field) in cases {
        let answer = app.post("/api/admin/coupons", Some(&admin), &body).await;
        answer.assert_error(400, "VALIDATION");
        let message = answer.body["message"].as_str().unwrap();
        assert!(message.contains(field), "{body}: {message}");
    }
    for (body, expected) in [
        (
            with("total_quantity", json!(0)),
            "total_quantity: must be at least 1",
        ),
        (
            with("total_quantity", json!(10_000_001)),
            "total_quantity: must be at most 10000000",
        ),
        (
            with("total_quantity", json!(-1)),
            "total_quantity: invalid value: integer `-1`, expected a whole number from 0 to 4294967295",
        ),
        (
            with("title", json!("t".repeat(101))),
            "title: must be at most 100 characters long",
        ),
        (
            with("admission_rate_per_sec", json!(0)),
            "admission_rate_per_sec: must be at least 1",
        ),
    ] {
        let answer = app.post("/api/admin/coupons", Some(&admin), &body).await;
        answer.assert_error(400, "VALIDATION");
        assert_eq!(answer.body["message"], expected, "{body}");
    }
    app.post_raw("/api/admin/coupons", Some(&admin), "{not json")
        .await
        .assert_error(400, "VALIDATION");
    // The largest allowed quantity and the widest window are accepted.
    app.coupon(&admin, with("total_quantity", json!(10_000_000)))
        .await;
    let mut widest = with("valid_from", json!("1970-01-01T00:00:00Z"));
    widest["valid_to"] = json!("9999-12-31T23:59:59Z");
    let created = app.coupon(&admin, widest).await;
    assert_eq!(created["valid_to"], "9999-12-31T23:59:59Z");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM coupon")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(count, 2, "only the valid coupons were stored");
}

#[tokio::test]
async fn admin_routes_refuse_users_and_strangers() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let coupon = app.coupon(&admin, active_coupon("Guarded", 3)).await;
    let id = coupon["id"].as_u64().unwrap();
    let (_, user) = app.user(&format!("u.{}@example.com", rand_suffix())).await;

    app.post("/api/admin/coupons", Some(&user), &active_coupon("No", 1))
        .await
        .assert_error(403, "FORBIDDEN");
    app.get(&format!("/api/admin/coupons/{id}/stats"), Some(&user))
        .await
        .assert_error(403, "FORBIDDEN");
    app.get("/api/admin/dashboard", Some(&user))
        .await
        .assert_error(403, "FORBIDDEN");

    app.post("/api/admin/coupons", None, &active_coupon("No", 1))
        .await
        .assert_error(401, "UNAUTHORIZED");
    app.get(&format!("/api/admin/coupons/{id}/stats"), None)
        .await
        .assert_error(401, "UNAUTHORIZED");
    app.get("/api/admin/dashboard", None)
        .await
        .assert_error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn unknown_coupons_are_404_and_bad_ids_400() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    app.get("/api/coupons/424242", None)
        .await
        .assert_error(404, "COUPON_NOT_FOUND");
    app.get("/api/admin/coupons/424242/stats", Some(&admin))
        .await
        .assert_error(404, "COUPON_NOT_FOUND");
    // The message names the parameter the client sent, not poem-openapi's
    // internal `param0` or its validator's words (out of range).
    for path in [
        "/api/coupons/abc",
        "/api/coupons/-1",
        "/api/coupons/1e3",
        "/api/coupons/0",
        "/api/coupons/18446744073709551615",
    ] {
        let bad = app.get(path, None).await;
        bad.assert_error(400, "VALIDATION");
        assert_eq!(
            bad.body["message"],
            gateway::error::PATH_ID_MESSAGE,
            "{path}"
        );
    }
    let stats = app.get("/api/admin/coupons/x/stats", Some(&admin)).await;
    stats.assert_error(400, "VALIDATION");
    assert_eq!(stats.body["message"], gateway::error::PATH_ID_MESSAGE);
    // Percent-encoded bytes that are not UTF-8, in either kind of path id.
    for path in ["/api/coupons/%FF", "/api/tickets/%FF%FE"] {
        let bad = app.get(path, Some(&admin)).await;
        bad.assert_error(400, "VALIDATION");
        assert_eq!(
            bad.body["message"],
            gateway::error::UNDECODABLE_PATH_MESSAGE,
            "{path}"
        );
    }
    app.get("/api/no/such/route", None)
        .await
        .assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn stats_dashboard_and_my_coupons() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let coupon = app.coupon(&admin, active_coupon("Counted", 10)).await;
    let id = coupon["id"].as_u64().unwrap();
    let (user_id, user) = app.user(&format!("v.{}@example.com", rand_suffix())).await;

    // An issue as the persister would write it.
    app.persist_issue(user_id, id).await;

    let stats = app
        .get(&format!("/api/admin/coupons/{id}/stats"), Some(&admin))
        .await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    assert_eq!(stats.body["coupon_id"], id);
    assert_eq!(stats.body["title"], "Counted");
    assert_eq!(stats.body["issued"], 1);
    assert_eq!(stats.body["remaining"], 10);
    assert_eq!(stats.body["waiting"], 0);
    assert_eq!(stats.body["total_quantity"], 10);
    assert_eq!(
        stats.body["outcomes"],
        json!({"issued": 0, "sold_out": 0, "already_issued": 0, "daily_limit": 0})
    );

    let dashboard = app.get("/api/admin/dashboard", Some(&admin)).await;
    assert_eq!(dashboard.status, 200);
    assert_eq!(dashboard.body["coupons"][0], stats.body);
    assert_eq!(dashboard.body["total_issued"], 1);

    let mine = app.get("/api/me/coupons", Some(&user)).await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(mine.body.as_array().unwrap().len(), 1);
    assert_eq!(mine.body[0]["coupon_id"], id);
    assert_eq!(mine.body[0]["title"], "Counted");
    assert_eq!(mine.body[0]["status"], "active");
    app.get("/api/me/coupons", None)
        .await
        .assert_error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn a_claim_that_warms_up_a_lost_coupon_knows_its_holders() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let coupon = app.coupon(&admin, active_coupon("Lost", 10)).await;
    let id = coupon["id"].as_u64().unwrap();
    let (holder_id, holder) = app.user(&format!("h.{}@example.com", rand_suffix())).await;
    let (_, other) = app.user(&format!("o.{}@example.com", rand_suffix())).await;
    app.persist_issue(holder_id, id).await;
    // Redis loses the coupon; the next claim warms it up from MySQL.
    coupon_core::testing::lose_coupon(&app.state.redis, CouponId(id))
        .await
        .unwrap();

    app.post(
        &format!("/api/coupons/{id}/claim"),
        Some(&holder),
        &json!({}),
    )
    .await
    .assert_error(409, "ALREADY_ISSUED");
    let claim = app
        .post(
            &format!("/api/coupons/{id}/claim"),
            Some(&other),
            &json!({}),
        )
        .await;
    assert_eq!(claim.status, 202, "{}", claim.body);
}

#[tokio::test]
async fn a_claim_after_a_redis_loss_still_counts_the_days_issues() {
    let app = TestApp::spawn_with(&[("DAILY_LIMIT", "1")]).await;
    let admin = app.admin().await;
    let first = app.coupon(&admin, active_coupon("Morning", 10)).await;
    let second = app.coupon(&admin, active_coupon("Evening", 10)).await;
    let (holder_id, holder) = app.user(&format!("h.{}@example.com", rand_suffix())).await;
    let (_, other) = app.user(&format!("o.{}@example.com", rand_suffix())).await;
    app.persist_issue(holder_id, first["id"].as_u64().unwrap())
        .await;
    coupon_core::testing::lose_redis(&app.state.redis)
        .await
        .unwrap();

    // The claim warms the second coupon up, and with it today's counts.
    let path = format!("/api/coupons/{}/claim", second["id"]);
    app.post(&path, Some(&holder), &json!({}))
        .await
        .assert_error(429, "DAILY_LIMIT");
    let claim = app.post(&path, Some(&other), &json!({})).await;
    assert_eq!(claim.status, 202, "{}", claim.body);
}
