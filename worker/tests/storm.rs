//! The claim path end to end, real loops running: a storm of distinct users
//! on one small coupon, and one user hammering the claim button.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::Stack;
use futures::stream::{self, StreamExt};

const USERS: usize = 5000;
const STOCK: u32 = 100;
const CONCURRENCY: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_thousand_users_one_hundred_coupons() {
    let stack = Stack::start(&[]).await;
    let coupon = stack.coupon(STOCK, 500).await;
    let users = stack.users(USERS).await;
    let worker = stack.spawn_worker();

    let started = Instant::now();
    let stack = &stack;
    let claims: Vec<(&String, (u16, serde_json::Value))> = stream::iter(&users)
        .map(|(_, token)| async move { (token, stack.claim(coupon, token).await) })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let claimed_in = started.elapsed();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for (_, (status, body)) in &claims {
        *statuses.entry(*status).or_default() += 1;
        assert!(
            matches!(status, 200 | 202 | 410),
            "claim answered {status}: {body}"
        );
    }

    // Every ticket reaches a final state; tickets of those turned away at
    // the door (410) are final by definition.
    let mut pending: Vec<(String, &String)> = claims
        .iter()
        .filter(|(_, (status, _))| *status != 410)
        .map(|(token, (_, body))| (body["ticket_id"].as_str().unwrap().to_owned(), *token))
        .collect();
    let mut finals: Vec<serde_json::Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} tickets still not final",
            pending.len()
        );
        let polled: Vec<(serde_json::Value, (String, &String))> = stream::iter(pending)
            .map(|(id, token)| async move { (stack.ticket(&id, token).await, (id, token)) })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        pending = Vec::new();
        let mut wait = u64::MAX;
        for (ticket, entry) in polled {
            match ticket["status"].as_str() {
                Some("issued") | Some("rejected") => finals.push(ticket),
                _ => {
                    wait = wait.min(ticket["poll_after_ms"].as_u64().unwrap());
                    pending.push(entry);
                }
            }
        }
        if !pending.is_empty() {
            // As the API asks: come back after poll_after_ms.
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
    let final_in = started.elapsed();

    let issued = finals.iter().filter(|t| t["status"] == "issued").count();
    let sold_out_tickets = finals.iter().filter(|t| t["reason"] == "SOLD_OUT").count();
    assert_eq!(issued, STOCK as usize, "exactly the stock is issued");
    assert_eq!(
        sold_out_tickets + statuses.get(&410).copied().unwrap_or(0),
        USERS - STOCK as usize,
        "everyone else is told SOLD_OUT"
    );

    let persist_started = Instant::now();
    stack
        .wait_rows(coupon, u64::from(STOCK), Duration::from_secs(60))
        .await;
    let persisted_in = started.elapsed();
    worker.stop().await;
    stack.assert_invariants(&[coupon]).await;
    assert_eq!(stack.remaining(coupon).await, 0);

    // Figures for the record (not assertions: tests do not time anything).
    println!(
        "storm: {USERS} users, stock {STOCK}: claims answered in {:.2?} ({:.0}/s), statuses {statuses:?}; \
         all tickets final after {:.2?}; {STOCK} rows persisted after {:.2?} (waited {:.2?} after the last ticket, {:.0} rows/s from the first claim)",
        claimed_in,
        USERS as f64 / claimed_in.as_secs_f64(),
        final_in,
        persisted_in,
        persist_started.elapsed(),
        f64::from(STOCK) / persisted_in.as_secs_f64(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_user_fifty_concurrent_claims_gets_one_ticket_and_one_row() {
    let stack = Stack::start(&[]).await;
    let coupon = stack.coupon(10, 500).await;
    let users = stack.users(1).await;
    let (_, token) = &users[0];
    let answers: Vec<(u16, serde_json::Value)> = stream::iter(0..50)
        .map(|_| stack.claim(coupon, token))
        .buffer_unordered(50)
        .collect()
        .await;
    // The account's claim limit turns most of them away (429 with
    // Retry-After); every one let through gets the same ticket and place.
    let through: Vec<&serde_json::Value> = answers
        .iter()
        .filter(|(s, _)| *s == 202)
        .map(|(_, b)| b)
        .collect();
    assert!(!through.is_empty());
    assert!(
        answers
            .iter()
            .all(|(s, b)| *s == 202 || (*s == 429 && b["code"] == "RATE_LIMITED")),
        "{answers:?}"
    );
    let tickets: std::collections::HashSet<&str> = through
        .iter()
        .map(|b| b["ticket_id"].as_str().unwrap())
        .collect();
    assert_eq!(tickets.len(), 1, "one ticket: {answers:?}");
    assert!(through.iter().all(|b| b["position"] == 1), "{answers:?}");

    let worker = stack.spawn_worker();
    stack.wait_rows(coupon, 1, Duration::from_secs(30)).await;
    let ticket_id = *tickets.iter().next().unwrap();
    let ticket = stack.ticket(ticket_id, token).await;
    assert_eq!(ticket["status"], "issued");
    assert!(ticket["issued_at"].as_str().unwrap().ends_with('Z'));
    // A claim after the ticket is final returns the same, final ticket.
    let (status, again) = stack.claim(coupon, token).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["ticket_id"], ticket_id);
    assert_eq!(again["status"], "issued");
    worker.stop().await;
    stack.assert_invariants(&[coupon]).await;
    assert_eq!(stack.rows(coupon).await, 1);
}
