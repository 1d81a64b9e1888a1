//! The server-rendered pages (askama templates in `templates/`): the coupon
//! list, login and sign-up, and the waiting page with live updates.
//!
//! Pages use the same token as the API, kept in the `access_token` cookie
//! (HttpOnly, SameSite=Lax, so other sites cannot post forms with it).
//! Every page works with JavaScript off; with it on, the waiting page
//! follows its ticket over SSE ([`crate::live`]) and falls back to polling
//! the ticket API.

pub mod csrf;
pub mod i18n;

use std::time::Duration;

use askama::Template;
use coupon_core::domain::{CouponId, NewAccount};
use futures::stream::{self, Stream, StreamExt};
use poem::http::StatusCode;
use poem::web::sse::{Event, SSE};
use poem::web::{Data, Form, Html, Path, Query, Redirect};
use poem::{get, handler, post, FromRequest, IntoResponse, Request, RequestBody, Response, Route};
use serde::Deserialize;

use crate::accounts::{self, LoginRequest};
use crate::auth::{AuthUser, COOKIE};
use crate::claim::{self, ClaimResponse};
use crate::coupons::{self, Coupon};
use crate::error::{ApiError, RETRY_AFTER_SECS};
use crate::live::Snapshot;
use crate::state::AppState;
use crate::tickets::{self, Lookup, Ticket, View};
use csrf::Csrf;
use i18n::{Lang, Text};

/// The page routes, merged into the gateway's router.
pub fn routes() -> Route {
    Route::new()
        .at("/", get(index))
        .at("/login", get(login_page).post(login_submit))
        .at("/signup", get(signup_page).post(signup_submit))
        .at("/logout", post(logout))
        .at("/coupons/:id/claim", post(claim_submit))
        .at("/me/coupons", get(my_coupons))
        .at("/tickets/:ticket_id", get(ticket_page))
        .at("/tickets/:ticket_id/events", get(ticket_events))
        // Not "/*path": poem's router would take "/" there too.
        .at("/:first", page_not_found)
        .at("/:first/*rest", page_not_found)
}

/// Any other address: the not-found page for a browser, the API's JSON
/// error for anyone else. The API's own prefixes (`/api`, `/docs`...) are
/// nested beside these routes and never reach here.
#[handler]
fn page_not_found(req: &Request) -> poem::Result<Response> {
    let wants_html = req
        .header(poem::http::header::ACCEPT)
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html {
        let t = Lang::from_request(req).text();
        Ok(render(&NotFoundPage { t }, StatusCode::NOT_FOUND))
    } else {
        // Shaped as `{code, message}` by `crate::error::catch_all`.
        Err(poem::Error::from_status(StatusCode::NOT_FOUND))
    }
}

/// The signed-in user of a page request, if any (from the cookie).
pub struct PageUser(pub Option<AuthUser>);

impl<'a> FromRequest<'a> for PageUser {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let token = req.cookie().get(COOKIE).map(|c| c.value_str().to_owned());
        Ok(PageUser(
            token.and_then(|token| crate::auth::verify(req, &token).ok()),
        ))
    }
}

/// The pages load nothing from elsewhere and may not be framed.
const CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn render(template: &impl Template, status: StatusCode) -> Response {
    match template.render() {
        Ok(html) => {
            let page = Html(html)
                .with_status(status)
                .with_header("content-security-policy", CSP)
                .with_header("x-frame-options", "DENY");
            if status == StatusCode::SERVICE_UNAVAILABLE {
                page.with_header("retry-after", RETRY_AFTER_SECS)
                    .into_response()
            } else {
                page.into_response()
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn cookie(state: &AppState, token: &str, max_age: u64) -> String {
    let secure = if state.config.app_env == coupon_core::config::AppEnv::Production {
        "; Secure"
    } else {
        ""
    };
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

fn see_other(to: &str) -> Response {
    Redirect::see_other(to).into_response()
}

/// The status of a page that could not do its work: 503 while MySQL or
/// Redis is not answering, else 500. The error is logged here, once.
fn failure(e: &ApiError) -> StatusCode {
    e.body();
    StatusCode::from_u16(e.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

// --- the coupon list ---------------------------------------------------------

struct Card {
    coupon: Coupon,
    /// Why the last claim on this coupon was refused, shown on its card.
    flash: Option<&'static str>,
    status_text: &'static str,
    claimable: bool,
    window: String,
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    t: &'static Text,
    signed_in: bool,
    cards: Vec<Card>,
    /// A refusal that belongs to no card shown.
    flash: Option<&'static str>,
    /// The list could not be read: say so, rather than "no coupons".
    unavailable: bool,
    csrf_token: String,
}

#[derive(Deserialize)]
struct IndexQuery {
    error: Option<String>,
    coupon: Option<u64>,
}

fn day(t: &crate::time::UtcTime) -> String {
    t.0.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[handler]
async fn index(
    req: &Request,
    state: Data<&AppState>,
    user: PageUser,
    csrf: Csrf,
    query: Query<IndexQuery>,
) -> Response {
    let t = Lang::from_request(req).text();
    let flash = query.error.as_deref().map(|code| t.reason(code));
    let (page, status) = list_page(&state, t, user.0, &csrf, flash, query.coupon).await;
    csrf.keep(render(&page, status))
}

/// The coupon list, with `flash` on the card of `flash_coupon` (or on top),
/// and the status it should go out with: 200, or the failure's when the
/// list could not be read.
async fn list_page(
    state: &AppState,
    t: &'static Text,
    user: Option<AuthUser>,
    csrf: &Csrf,
    flash: Option<&'static str>,
    flash_coupon: Option<u64>,
) -> (IndexPage, StatusCode) {
    let (list, status) = match coupons::list(state).await {
        Ok(list) => (list, StatusCode::OK),
        Err(e) => (Vec::new(), failure(&e)),
    };
    let cards: Vec<Card> = list
        .into_iter()
        .map(|coupon| Card {
            flash: flash.filter(|_| flash_coupon == Some(coupon.id)),
            status_text: t.status(&coupon.status),
            claimable: coupon.status == "active",
            window: format!("{} – {}", day(&coupon.valid_from), day(&coupon.valid_to)),
            coupon,
        })
        .collect();
    let shown = cards.iter().any(|c| c.flash.is_some());
    let page = IndexPage {
        t,
        signed_in: user.is_some(),
        cards,
        flash: flash.filter(|_| !shown),
        unavailable: status != StatusCode::OK,
        csrf_token: csrf.token(user.map(|u| u.id)),
    };
    (page, status)
}

/// The answer to a page post without a good CSRF token: nothing was done,
/// and the list comes back with fresh tokens and a note to try again.
async fn refused(
    state: &AppState,
    t: &'static Text,
    user: Option<AuthUser>,
    csrf: &Csrf,
    coupon: Option<u64>,
) -> Response {
    tracing::info!("a page form came without a valid CSRF token; refused");
    let (page, _) = list_page(state, t, user, csrf, Some(t.err_form_expired), coupon).await;
    csrf.keep(render(&page, StatusCode::FORBIDDEN))
}

/// A form whose only field is the CSRF token.
#[derive(Deserialize)]
struct TokenForm {
    csrf_token: Option<String>,
}

fn submitted(form: &poem::Result<Form<TokenForm>>) -> Option<&str> {
    form.as_ref().ok().and_then(|f| f.csrf_token.as_deref())
}

// --- login and sign-up -------------------------------------------------------

#[derive(Template)]
#[template(path = "auth.html")]
struct AuthPage {
    t: &'static Text,
    signup: bool,
    email: String,
    name: String,
    form_error: Option<&'static str>,
    email_error: Option<&'static str>,
    name_error: Option<&'static str>,
    password_error: Option<&'static str>,
    csrf_token: String,
}

impl AuthPage {
    fn new(t: &'static Text, signup: bool, csrf: &Csrf) -> Self {
        Self {
            t,
            signup,
            csrf_token: csrf.token(None),
            email: String::new(),
            name: String::new(),
            form_error: None,
            email_error: None,
            name_error: None,
            password_error: None,
        }
    }
}

#[derive(Deserialize)]
struct AuthForm {
    email: String,
    password: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    csrf_token: String,
}

#[handler]
fn login_page(req: &Request, csrf: Csrf) -> Response {
    let page = AuthPage::new(Lang::from_request(req).text(), false, &csrf);
    csrf.keep(render(&page, StatusCode::OK))
}

#[handler]
fn signup_page(req: &Request, csrf: Csrf) -> Response {
    let page = AuthPage::new(Lang::from_request(req).text(), true, &csrf);
    csrf.keep(render(&page, StatusCode::OK))
}

/// The form again, saying it expired, if it came without a good token.
fn expired_form(t: &'static Text, signup: bool, csrf: &Csrf, form: &AuthForm) -> Option<Response> {
    if csrf.accepts(None, Some(&form.csrf_token)) {
        return None;
    }
    tracing::info!("a login or sign-up form came without a valid CSRF token; refused");
    let mut page = AuthPage::new(t, signup, csrf);
    page.email = form.email.clone();
    page.name = form.name.clone();
    page.form_error = Some(t.err_form_expired);
    Some(csrf.keep(render(&page, StatusCode::FORBIDDEN)))
}

async fn log_in(state: &AppState, email: String, password: String) -> Result<Response, ApiError> {
    let token = accounts::login(state, LoginRequest { email, password }).await?;
    Ok(Redirect::see_other("/")
        .with_header(
            "set-cookie",
            cookie(state, &token.access_token, token.expires_in),
        )
        .into_response())
}

#[handler]
async fn login_submit(
    req: &Request,
    state: Data<&AppState>,
    csrf: Csrf,
    form: Form<AuthForm>,
) -> Response {
    let t = Lang::from_request(req).text();
    let Form(form) = form;
    if let Some(refused) = expired_form(t, false, &csrf, &form) {
        return refused;
    }
    let email = form.email.clone();
    match log_in(&state, form.email, form.password).await {
        Ok(response) => response,
        Err(e) => {
            let mut page = AuthPage::new(t, false, &csrf);
            page.email = email;
            let status = if matches!(e, ApiError::InvalidCredentials) {
                page.form_error = Some(t.err_invalid_credentials);
                StatusCode::UNAUTHORIZED
            } else {
                page.form_error = Some(t.err_generic);
                failure(&e)
            };
            render(&page, status)
        }
    }
}

#[handler]
async fn signup_submit(
    req: &Request,
    state: Data<&AppState>,
    csrf: Csrf,
    form: Form<AuthForm>,
) -> Response {
    let t = Lang::from_request(req).text();
    let Form(form) = form;
    if let Some(refused) = expired_form(t, true, &csrf, &form) {
        return refused;
    }
    let mut page = AuthPage::new(t, true, &csrf);
    page.email = form.email.clone();
    page.name = form.name.clone();
    let account = match NewAccount::parse(&form.email, &form.name, &form.password) {
        Ok(account) => account,
        Err(invalid) => {
            match invalid.field {
                "email" => page.email_error = Some(t.err_email),
                "name" => page.name_error = Some(t.err_name),
                _ => page.password_error = Some(t.err_password),
            }
            return render(&page, StatusCode::BAD_REQUEST);
        }
    };
    match accounts::create_account(&state, account).await {
        Ok(_) => match log_in(&state, form.email, form.password).await {
            Ok(response) => response,
            Err(e) => {
                e.body();
                see_other("/login")
            }
        },
        Err(ApiError::EmailTaken) => {
            page.email_error = Some(t.err_email_taken);
            render(&page, StatusCode::CONFLICT)
        }
        Err(e) => {
            page.form_error = Some(t.err_generic);
            render(&page, failure(&e))
        }
    }
}

#[handler]
async fn logout(
    req: &Request,
    state: Data<&AppState>,
    user: PageUser,
    csrf: Csrf,
    form: poem::Result<Form<TokenForm>>,
) -> Response {
    let user = user.0;
    if !csrf.accepts(user.map(|u| u.id), submitted(&form)) {
        let t = Lang::from_request(req).text();
        return refused(&state, t, user, &csrf, None).await;
    }
    Redirect::see_other("/")
        .with_header("set-cookie", cookie(&state, "", 0))
        .into_response()
}

// --- my coupons ----------------------------------------------------------------

struct MyItem {
    title: String,
    status: String,
    status_text: &'static str,
    issued_at: String,
    window: String,
}

#[derive(Template)]
#[template(path = "my_coupons.html")]
struct MyCouponsPage {
    t: &'static Text,
    items: Vec<MyItem>,
    /// The list could not be read: say so, rather than "no coupons".
    unavailable: bool,
}

#[handler]
async fn my_coupons(req: &Request, state: Data<&AppState>, user: PageUser) -> Response {
    let t = Lang::from_request(req).text();
    let Some(user) = user.0 else {
        return see_other("/login");
    };
    let (items, status) = match coupons::mine(&state, user).await {
        Ok(items) => (items, StatusCode::OK),
        Err(e) => (Vec::new(), failure(&e)),
    };
    let items = items
        .into_iter()
        .map(|c| MyItem {
            status_text: t.status(&c.status),
            issued_at: day(&c.issued_at),
            window: format!("{} – {}", day(&c.valid_from), day(&c.valid_to)),
            title: c.title,
            status: c.status,
        })
        .collect();
    let unavailable = status != StatusCode::OK;
    render(
        &MyCouponsPage {
            t,
            items,
            unavailable,
        },
        status,
    )
}

// --- claiming and waiting ------------------------------------------------------

#[handler]
async fn claim_submit(
    req: &Request,
    state: Data<&AppState>,
    user: PageUser,
    csrf: Csrf,
    Path(id): Path<String>,
    form: poem::Result<Form<TokenForm>>,
) -> Response {
    // Only a hand-made address gets here with anything but a coupon's id.
    let Some(id) = id
        .parse::<u64>()
        .ok()
        .filter(|id| (1..=i64::MAX as u64).contains(id))
    else {
        let t = Lang::from_request(req).text();
        return render(&NotFoundPage { t }, StatusCode::NOT_FOUND);
    };
    let Some(user) = user.0 else {
        return see_other("/login");
    };
    if !csrf.accepts(Some(user.id), submitted(&form)) {
        let t = Lang::from_request(req).text();
        return refused(&state, t, Some(user), &csrf, Some(id)).await;
    }
    match claim::claim(&state, user, CouponId(id)).await {
        Ok(ClaimResponse::Final(t) | ClaimResponse::Accepted(t)) => {
            see_other(&format!("/tickets/{}", t.ticket_id))
        }
        Err(e) => {
            let code = e.code().as_str();
            e.body();
            see_other(&format!("/?error={code}&coupon={id}#coupon-{id}"))
        }
    }
}

#[derive(Template)]
#[template(path = "ticket.html")]
struct TicketPage {
    t: &'static Text,
    ticket: Ticket,
    title: String,
    total: u32,
    is_final: bool,
    /// Seconds for the no-JavaScript meta refresh.
    refresh_secs: u64,
    /// Estimated chance (percent) when more people are ahead than coupons left.
    chance: Option<u64>,
    reason_text: &'static str,
    issued_at: String,
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFoundPage {
    t: &'static Text,
}

/// A ticket that could not be looked up just now: not "not found", since
/// it may well exist. The page asks again by itself, script or not.
#[derive(Template)]
#[template(path = "unavailable.html")]
struct UnavailablePage {
    t: &'static Text,
    refresh_secs: u64,
}

fn chance(ticket: &Ticket) -> Option<u64> {
    match (ticket.position, ticket.remaining_quantity) {
        (Some(position), Some(remaining)) if position > remaining => {
            Some(remaining * 100 / position)
        }
        _ => None,
    }
}

#[handler]
async fn ticket_page(
    req: &Request,
    state: Data<&AppState>,
    user: PageUser,
    Path(id): Path<String>,
) -> Response {
    let t = Lang::from_request(req).text();
    let Some(user) = user.0 else {
        return see_other("/login");
    };
    let lookup = match tickets::lookup(&state, user, &id).await {
        Ok(lookup) => lookup,
        Err(ApiError::TicketNotFound) => return render(&NotFoundPage { t }, StatusCode::NOT_FOUND),
        Err(e) => {
            let page = UnavailablePage {
                t,
                refresh_secs: RETRY_AFTER_SECS,
            };
            return render(&page, failure(&e));
        }
    };
    let coupon = coupons::get(&state, lookup.coupon).await.ok();
    let ticket = lookup.ticket;
    let page = TicketPage {
        t,
        title: coupon.as_ref().map(|c| c.title.clone()).unwrap_or_default(),
        total: coupon.as_ref().map_or(0, |c| c.total_quantity),
        is_final: ticket.status == "issued" || ticket.status == "rejected",
        refresh_secs: ticket.poll_after_ms.div_ceil(1000).clamp(1, 10),
        chance: chance(&ticket),
        reason_text: ticket.reason.as_deref().map_or("", |r| t.reason(r)),
        issued_at: ticket
            .issued_at
            .as_ref()
            .map(|at| at.0.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default(),
        ticket,
    };
    render(&page, StatusCode::OK)
}

/// What the waiting page's script receives: the ticket, plus the chance.
fn event(ticket: &Ticket) -> Event {
    let mut json = poem_openapi::types::ToJSON::to_json(ticket).unwrap_or_default();
    json["chance_percent"] =
        chance(ticket).map_or(serde_json::Value::Null, serde_json::Value::from);
    Event::message(json.to_string())
}

#[handler]
async fn ticket_events(state: Data<&AppState>, user: PageUser, Path(id): Path<String>) -> Response {
    let Some(user) = user.0 else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let lookup = match tickets::lookup(&state, user, &id).await {
        Ok(lookup) => lookup,
        Err(ApiError::TicketNotFound) => return StatusCode::NOT_FOUND.into_response(),
        // As the ticket API answers (503 with Retry-After while MySQL or
        // Redis is not answering); the page's script then polls that API.
        Err(e) => return poem::error::ResponseError::as_response(&e),
    };
    SSE::new(follow(state.clone(), user, id, lookup))
        .keep_alive(Duration::from_secs(15))
        .into_response()
}

/// The ticket now, then a new view whenever the coupon's snapshot changes,
/// until the ticket is final.
fn follow(
    state: AppState,
    user: AuthUser,
    id: String,
    first: Lookup,
) -> impl Stream<Item = Event> + Send {
    let done = first.ticket.status == "issued" || first.ticket.status == "rejected";
    let head = stream::once(std::future::ready(event(&first.ticket)));
    if done {
        return head.boxed();
    }
    let receiver = state.live.subscribe(&state.redis, first.coupon);
    let rest = stream::unfold(
        (state, user, id, first, receiver, false),
        |(state, user, id, mut current, mut receiver, finished)| async move {
            if finished {
                return None;
            }
            loop {
                receiver.changed().await.ok()?;
                let snapshot: Snapshot = receiver.borrow_and_update().clone();
                if !snapshot.known {
                    continue;
                }
                let next = match (current.own_seq, snapshot.head_seq) {
                    (Some(own), Some(head))
                        if head <= own
                            && !snapshot.sold_out
                            && !snapshot.expired
                            && current.ticket.status == "waiting" =>
                    {
                        let rank = own - head;
                        let view = View::Waiting {
                            rank,
                            rate: snapshot.rate,
                            progress: Some(tickets::progress(own, rank)),
                        };
                        view.into_ticket(id.clone(), current.coupon, Some(snapshot.stock))
                    }
                    // The head passed us, or the coupon sold out or ended:
                    // ask Redis about this one ticket.
                    _ => match tickets::lookup(&state, user, &id).await {
                        Ok(lookup) => {
                            let ticket = lookup.ticket.clone();
                            current = lookup;
                            ticket
                        }
                        Err(_) => continue,
                    },
                };
                let finished = next.status == "issued" || next.status == "rejected";
                current.ticket = next.clone();
                return Some((event(&next), (state, user, id, current, receiver, finished)));
            }
        },
    );
    head.chain(rest).boxed()
}

#[cfg(test)]
mod tests {
    use super::i18n::{EN, KO};
    use super::*;
    use crate::time::UtcTime;

    fn ticket(view: View) -> Ticket {
        view.into_ticket("t1.abc.def".into(), CouponId(3), Some(7))
    }

    fn page(t: &'static Text, ticket: Ticket) -> String {
        let is_final = ticket.status == "issued" || ticket.status == "rejected";
        TicketPage {
            t,
            title: "Free coffee".into(),
            total: 10,
            is_final,
            refresh_secs: 2,
            chance: chance(&ticket),
            reason_text: ticket.reason.as_deref().map_or("", |r| t.reason(r)),
            issued_at: String::new(),
            ticket,
        }
        .render()
        .unwrap()
    }

    /// How askama writes text into HTML.
    fn esc(text: &str) -> String {
        text.replace('&', "&#38;")
            .replace('\'', "&#39;")
            .replace('<', "&#60;")
            .replace('>', "&#62;")
    }

    #[test]
    fn every_ticket_state_renders_in_both_languages() {
        let issued_at = "2026-11-24T01:00:00Z".parse().ok();
        for t in [&KO, &EN] {
            let waiting = page(
                t,
                ticket(View::Waiting {
                    rank: 11,
                    rate: 4.0,
                    progress: Some(40),
                }),
            );
            assert!(
                waiting.contains(&esc(t.waiting_title)) && waiting.contains(">12<"),
                "{waiting}"
            );
            assert!(
                waiting.contains(r#"http-equiv="refresh""#),
                "works without JavaScript"
            );
            assert!(waiting.contains(r#"aria-live="polite""#));
            assert!(waiting.contains("width:40%"));
            assert!(waiting.contains("58%"), "chance: 7 left for 12 in line");
            assert!(waiting.contains(&format!(r#"<html lang="{}">"#, t.lang)));

            let admitted = page(t, ticket(View::Admitted));
            assert!(admitted.contains(&esc(t.admitted)), "{admitted}");

            let issued = page(t, ticket(View::Issued { at: issued_at }));
            assert!(issued.contains(&esc(t.issued_title)) && issued.contains("/me/coupons"));
            assert!(
                !issued.contains("http-equiv"),
                "a final page stops refreshing"
            );
            assert!(!issued.contains("<script"), "and needs no script");

            for (reason, text) in [
                ("SOLD_OUT", t.reason_sold_out),
                ("ALREADY_ISSUED", t.reason_already_issued),
                ("DAILY_LIMIT", t.reason_daily_limit),
                ("EXPIRED", t.reason_expired),
            ] {
                let rejected = page(t, ticket(View::from_result(&format!("R:{reason}"))));
                assert!(
                    rejected.contains(&esc(t.rejected_title)) && rejected.contains(&esc(text)),
                    "{reason}"
                );
            }
        }
        assert_ne!(KO.waiting_title, EN.waiting_title);
    }

    #[test]
    fn the_waiting_page_is_small() {
        let html = page(
            &KO,
            ticket(View::Waiting {
                rank: 99_999,
                rate: 500.0,
                progress: Some(1),
            }),
        );
        println!("waiting page: {} bytes with its CSS and script", html.len());
        assert!(
            html.len() < 30 * 1024,
            "{} bytes: page, script and styles together",
            html.len()
        );
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external fonts, scripts or CDNs"
        );
    }

    #[test]
    fn the_list_shows_each_card_and_its_refusal() {
        let coupon = Coupon {
            id: 3,
            title: "Free <coffee>".into(),
            total_quantity: 10,
            remaining_quantity: 0,
            valid_from: UtcTime("2026-01-01T00:00:00Z".parse().unwrap()),
            valid_to: UtcTime("2026-12-31T00:00:00Z".parse().unwrap()),
            status: "sold_out".into(),
            admission_rate_per_sec: 10,
            created_at: UtcTime("2026-01-01T00:00:00Z".parse().unwrap()),
        };
        let html = IndexPage {
            t: &EN,
            signed_in: true,
            cards: vec![Card {
                status_text: EN.status_sold_out,
                claimable: false,
                window: "w".into(),
                flash: Some(EN.err_sold_out),
                coupon,
            }],
            flash: None,
            unavailable: false,
            csrf_token: "token-value".into(),
        }
        .render()
        .unwrap();
        assert!(
            html.contains("Free &#60;coffee&#62;") || html.contains("Free &lt;coffee&gt;"),
            "escaped"
        );
        assert!(html.contains(&esc(EN.status_sold_out)) && html.contains(&esc(EN.err_sold_out)));
        assert!(html.contains("disabled"));
        assert!(
            html.contains(r#"name="csrf_token" value="token-value""#),
            "every form carries its token: {html}"
        );
    }
}
