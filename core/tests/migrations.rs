//! The schema: migrations apply to an empty database, and a second run
//! changes nothing.

use coupon_core::testing::TestEnv;
use sqlx::Row;

async fn schema(pool: &sqlx::MySqlPool) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["user", "coupon", "coupon_issue", "_sqlx_migrations"] {
        let row = sqlx::query(&format!("SHOW CREATE TABLE `{table}`"))
            .fetch_one(pool)
            .await
            .expect("table exists");
        let ddl: String = row.get(1);
        // AUTO_INCREMENT=n moves with data, not with the schema.
        out.push(
            ddl.split(" AUTO_INCREMENT=")
                .next()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    out
}

#[tokio::test]
async fn migrations_apply_once_and_a_second_run_changes_nothing() {
    let env = TestEnv::new().await;
    let pool = coupon_core::db::connect_lazy(&env.config).unwrap();
    let before = schema(&pool).await;
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, coupon_core::db::MIGRATOR.iter().count());

    coupon_core::db::migrate(&pool)
        .await
        .expect("second run succeeds");

    assert_eq!(schema(&pool).await, before);
    let again: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(again, applied);
}

#[tokio::test]
async fn schema_enforces_the_erd_constraints() {
    let env = TestEnv::new().await;
    let pool = coupon_core::db::connect_lazy(&env.config).unwrap();
    sqlx::query("INSERT INTO `user` (email, name, password_hash) VALUES ('a@x.io', 'A', 'h')")
        .execute(&pool)
        .await
        .unwrap();
    // Unique email, case-insensitively.
    let dup =
        sqlx::query("INSERT INTO `user` (email, name, password_hash) VALUES ('A@X.IO', 'B', 'h')")
            .execute(&pool)
            .await;
    assert!(dup.is_err(), "email must be unique in any letter case");

    sqlx::query(
        "INSERT INTO coupon (title, total_quantity, remaining_quantity, valid_from, valid_to) \
         VALUES ('c', 10, 10, '2026-01-01', '2026-12-31')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let bad_window = sqlx::query(
        "INSERT INTO coupon (title, total_quantity, remaining_quantity, valid_from, valid_to) \
         VALUES ('c', 10, 10, '2026-12-31', '2026-01-01')",
    )
    .execute(&pool)
    .await;
    assert!(bad_window.is_err(), "valid_from < valid_to is enforced");

    let issue = "INSERT INTO coupon_issue (user_id, coupon_id, issued_at) VALUES (1, 1, NOW(3))";
    sqlx::query(issue).execute(&pool).await.unwrap();
    assert!(
        sqlx::query(issue).execute(&pool).await.is_err(),
        "UNIQUE(user_id, coupon_id)"
    );
    let orphan = sqlx::query(
        "INSERT INTO coupon_issue (user_id, coupon_id, issued_at) VALUES (999, 1, NOW(3))",
    )
    .execute(&pool)
    .await;
    assert!(orphan.is_err(), "foreign key to user");

    let created: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT created_at FROM `user` WHERE id = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    let drift = (chrono::Utc::now() - created).num_seconds().abs();
    assert!(
        drift < 300,
        "created_at defaults to the current UTC time (drift {drift} s)"
    );
}
