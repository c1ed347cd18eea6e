//! The dashboard's routes (the names are a contract): the page or the
//! login form at `/`, `/login`, `/logout`, the embedded assets, and the
//! JSON and event-stream API under `/web/api/`. Handlers only translate:
//! who may see and do what is `roster_core::web`'s, the verbs go to the
//! loop as the control API's do.

use axum::extract::{Extension, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use tokio::sync::oneshot;

use roster_core::web::{csrf_matches, may_act, may_see};
use roster_core::AgentName;

use super::gate::{Caller, Gate, Login, Via, COOKIE};
use super::hub::Hub;
use super::{pages, streams};
use crate::inbox::{Inbox, Input, Request as LoopRequest, Verb};
use crate::listener::ClientIp;

/// The policy every answer carries: nothing but this origin's own script,
/// style and connections; no framing, no plugins, no base rewriting.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// What the handlers share.
#[derive(Clone)]
pub struct WebState {
    /// Tokens and sessions.
    pub gate: Gate,
    /// Snapshots.
    pub hub: Hub,
    /// The loop.
    pub inbox: Inbox,
    /// The home (agents' logs).
    pub home: std::path::PathBuf,
    /// Served over TLS (cookies are `Secure`).
    pub tls: bool,
    /// A session's lifetime, for the cookie's `Max-Age`.
    pub session_ttl: std::time::Duration,
    /// Changes (its sender dropped) when this server stops serving: open
    /// streams end with it.
    pub serving: tokio::sync::watch::Receiver<()>,
}

/// The router, with the security headers on every answer.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/assets/app.js", get(script))
        .route("/assets/app.css", get(style))
        .route("/web/api/snapshot", get(snapshot))
        .route("/web/api/stream", get(stream))
        .route("/web/api/logs/{name}", get(logs))
        .route("/web/api/agents/{name}/{action}", post(action))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.gate.clone(),
            bearer_guard,
        ))
        .with_state(state)
        .layer(axum::middleware::from_fn(secure_headers))
}

/// A request with `Authorization: Bearer` whose token is wrong counts as
/// a failed login of its client: slowed down, then refused with 429 and
/// `Retry-After` like the login form, so the API is no way around the
/// limit.
async fn bearer_guard(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let Some(presented) = super::gate::bearer(request.headers()) else {
        return next.run(request).await;
    };
    let client = request
        .extensions()
        .get::<ClientIp>()
        .and_then(|ClientIp(client)| *client);
    match gate.check_bearer(presented, client) {
        Login::Opened { .. } => next.run(request).await,
        Login::Wrong { delay } => {
            tokio::time::sleep(delay).await;
            json_error(StatusCode::UNAUTHORIZED, "that token is not valid")
        }
        Login::Refused(refused) => {
            let mut response = json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many wrong tokens from this address: wait and try again",
            );
            if let Ok(value) = HeaderValue::from_str(&refused.retry_after_secs().to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    }
}

async fn secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

fn unauthorized() -> Response {
    json_error(
        StatusCode::UNAUTHORIZED,
        "log in first, or send Authorization: Bearer TOKEN",
    )
}

/// The same answer for an agent that does not exist and one the caller
/// may not see: no existence leaks.
fn no_agent() -> Response {
    json_error(StatusCode::NOT_FOUND, "no such agent")
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn index(State(state): State<WebState>, headers: HeaderMap) -> Response {
    match state.gate.caller(&headers) {
        Some(Caller {
            grant,
            via: Via::Session { csrf, .. },
        }) => pages::html(StatusCode::OK, pages::dashboard(&csrf, &grant)),
        _ => pages::html(StatusCode::OK, pages::login(None)),
    }
}

#[derive(serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

async fn login(
    State(state): State<WebState>,
    Extension(ClientIp(client)): Extension<ClientIp>,
    Form(form): Form<LoginForm>,
) -> Response {
    match state.gate.login(&form.token, client) {
        Login::Opened { id } => {
            let secure = if state.tls { "; Secure" } else { "" };
            let cookie = format!(
                "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
                state.session_ttl.as_secs()
            );
            (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, "/".to_owned()),
                    (header::SET_COOKIE, cookie),
                ],
            )
                .into_response()
        }
        Login::Wrong { delay } => {
            tokio::time::sleep(delay).await;
            pages::html(
                StatusCode::UNAUTHORIZED,
                pages::login(Some("That token is not valid.")),
            )
        }
        Login::Refused(refused) => {
            let mut response = pages::html(
                StatusCode::TOO_MANY_REQUESTS,
                pages::login(Some("Too many wrong tokens: wait a minute and try again.")),
            );
            if let Ok(value) = HeaderValue::from_str(&refused.retry_after_secs().to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    }
}

async fn logout(
    State(state): State<WebState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(Caller {
        via: Via::Session { csrf, id },
        ..
    }) = state.gate.caller(&headers)
    else {
        return unauthorized();
    };
    let from_form = form_csrf(&body);
    let given = header_text(&headers, "x-csrf-token").or(from_form.as_deref());
    if !csrf_matches(given, &csrf) {
        return json_error(StatusCode::FORBIDDEN, "the CSRF token is missing or wrong");
    }
    state.gate.logout(&id);
    let clear = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_owned()),
            (header::SET_COOKIE, clear),
        ],
    )
        .into_response()
}

/// The `csrf` field of a form body (`csrf=HEX`; hex needs no decoding).
fn form_csrf(body: &[u8]) -> Option<String> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("csrf="))
        .map(str::to_owned)
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        pages::APP_JS,
    )
        .into_response()
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        pages::APP_CSS,
    )
        .into_response()
}

async fn snapshot(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let Some(caller) = state.gate.caller(&headers) else {
        return unauthorized();
    };
    let full = state.hub.current().await;
    (
        [(header::CONTENT_TYPE, "application/json")],
        full.for_grant(&caller.grant, |token| state.gate.scope_of(token)),
    )
        .into_response()
}

async fn stream(State(state): State<WebState>, headers: HeaderMap) -> Response {
    if state.gate.caller(&headers).is_none() {
        return unauthorized();
    }
    streams::snapshots(
        state.gate.clone(),
        state.hub.clone(),
        state.serving.clone(),
        &headers,
    )
}

async fn logs(
    State(state): State<WebState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(caller) = state.gate.caller(&headers) else {
        return unauthorized();
    };
    let Ok(agent) = AgentName::new(&name) else {
        return no_agent();
    };
    let full = state.hub.current().await;
    match full.tenant_of(agent.as_str()) {
        Some(tenant) if may_see(&caller.grant.scope, tenant.as_deref()) => {}
        _ => return no_agent(),
    }
    let path = roster_store::Home::new(state.home.clone()).agent_log(agent.as_str());
    streams::log(state.gate.clone(), state.serving.clone(), path, &headers)
}

async fn action(
    State(state): State<WebState>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(caller) = state.gate.caller(&headers) else {
        return unauthorized();
    };
    if let Via::Session { csrf, .. } = &caller.via {
        if !csrf_matches(header_text(&headers, "x-csrf-token"), csrf) {
            return json_error(StatusCode::FORBIDDEN, "the CSRF token is missing or wrong");
        }
    }
    let verb = match action.as_str() {
        "restart" => Verb::Restart,
        "stop" => Verb::Stop,
        "start" => Verb::Start,
        _ => return json_error(StatusCode::NOT_FOUND, "no such action"),
    };
    let Ok(agent) = AgentName::new(&name) else {
        return no_agent();
    };
    let full = state.hub.current().await;
    let Some(tenant) = full.tenant_of(agent.as_str()) else {
        return no_agent();
    };
    if !may_see(&caller.grant.scope, tenant.as_deref()) {
        return no_agent();
    }
    if !may_act(&caller.grant, tenant.as_deref()) {
        return json_error(StatusCode::FORBIDDEN, "this token is read-only");
    }
    let (reply, answer) = oneshot::channel();
    let sent = state.inbox.send(Input::Request(LoopRequest::Agents {
        verb,
        names: vec![agent.to_string()],
        by: Some(caller.grant.token.clone()),
        reply,
    }));
    if !sent {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        );
    }
    match answer.await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(_)) => no_agent(),
        Err(_) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        ),
    }
}
