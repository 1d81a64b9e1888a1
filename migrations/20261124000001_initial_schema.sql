-- The three tables of the ERD (`user`, `coupon`, `coupon_issue`) plus what the
-- design needs on top: password hash and role for accounts, a stored status
-- and admission rate for coupons, and the indexes behind "my coupons" and the
-- admin stats. Runs unchanged on MySQL 8 and MariaDB 10.11.
--
-- All times are UTC: sqlx sets the session time zone to +00:00, so the
-- CURRENT_TIMESTAMP defaults below are UTC as well.

CREATE TABLE `user` (
    id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    email         VARCHAR(100)    NOT NULL,
    name          VARCHAR(50)     NOT NULL,
    password_hash VARCHAR(255)    NOT NULL,
    role          VARCHAR(16)     NOT NULL DEFAULT 'user',
    created_at    DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    -- The collation is case-insensitive and the application stores emails in
    -- lower case as well, so "A@x.io" and "a@x.io" are one account.
    UNIQUE KEY uq_user_email (email),
    CONSTRAINT ck_user_role CHECK (role IN ('user', 'admin'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE coupon (
    id                     BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    title                  VARCHAR(100)    NOT NULL,
    total_quantity         INT UNSIGNED    NOT NULL,
    remaining_quantity     INT UNSIGNED    NOT NULL,
    valid_from             DATETIME(3)     NOT NULL,
    valid_to               DATETIME(3)     NOT NULL,
    -- Stored lifecycle: 'active' until the stock is gone ('sold_out') or the
    -- scheduler expires it ('expired'). 'scheduled' is derived from valid_from
    -- at read time, so it never needs a job to flip it.
    status                 VARCHAR(16)     NOT NULL DEFAULT 'active',
    admission_rate_per_sec INT UNSIGNED    NULL,
    created_at             DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    KEY ix_coupon_status_valid_to (status, valid_to),
    CONSTRAINT ck_coupon_quantity CHECK (total_quantity BETWEEN 1 AND 10000000),
    CONSTRAINT ck_coupon_remaining CHECK (remaining_quantity <= total_quantity),
    CONSTRAINT ck_coupon_window CHECK (valid_from < valid_to),
    CONSTRAINT ck_coupon_status CHECK (status IN ('active', 'sold_out', 'expired'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE coupon_issue (
    id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    user_id    BIGINT UNSIGNED NOT NULL,
    coupon_id  BIGINT UNSIGNED NOT NULL,
    -- When the claim script issued the coupon in Redis, not when the row
    -- arrived: a row that is persisted late keeps its true issue time.
    issued_at  DATETIME(3)     NOT NULL,
    created_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    -- Invariant 2 (one issue per user and coupon) and the persister's
    -- idempotence (INSERT IGNORE on redelivery) both rest on this key.
    UNIQUE KEY uq_coupon_issue_user_coupon (user_id, coupon_id),
    -- "My coupons", newest first.
    KEY ix_coupon_issue_user_issued (user_id, issued_at),
    -- Stats: rows per coupon.
    KEY ix_coupon_issue_coupon (coupon_id),
    CONSTRAINT fk_coupon_issue_user FOREIGN KEY (user_id) REFERENCES `user` (id),
    CONSTRAINT fk_coupon_issue_coupon FOREIGN KEY (coupon_id) REFERENCES coupon (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
