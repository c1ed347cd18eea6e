//! The control API: HTTP + JSON on the home's Unix socket (mode 0600).
//! Handlers only translate: every decision is the daemon loop's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::UnixListener;
use tokio::sync::oneshot;

use roster_core::api::{AgentsRequest, ApplyRequest, ErrorReply, EventKind};

use crate::inbox::{ApplyRefusal, Inbox, Input, Request, Verb};
use crate::listener::{BoundedListener, Limits};

mod status;

pub use status::{status_reply, CpuMemo, Figures, StatusFailure};

#[derive(Clone)]
struct ApiState {
    inbox: Inbox,
    /// Problems found at start that status keeps reporting (a journal moved aside).
    warnings: Arc<Vec<String>>,
    cpu: CpuMemo,
    published: Published,
}

/// What the loop and the sampler publish for readers, so that no request
/// needs the loop's attention for it.
#[derive(Clone, Default)]
pub struct Published {
    /// Alerts firing and recent.
    pub alerts: Arc<Mutex<crate::alerts::AlertBook>>,
    /// The last hour of samples of each watched agent; the newest is what
    /// `status` shows.
    pub history: Arc<Mutex<History>>,
    /// Deploys and rollbacks.
    pub deploys: Option<Arc<crate::deploy::Deploys>>,
    /// The home (its release stores are read for `/v1/releases`).
    pub home: std::path::PathBuf,
    /// The admin group allowed on the control socket besides root and the
    /// daemon's user.
    pub admin_gid: Option<u32>,
    /// Every agent's secrets: the daemon's copy, which `/v1/secrets/*`
    /// writes through to the store.
    pub secrets: Option<Arc<crate::secrets::Secrets>>,
    /// The config file last applied, which `status` shows.
    pub applied: Arc<Mutex<Option<std::path::PathBuf>>>,
    /// Why the web dashboard is not served where `[web]` says, if so
    /// (status shows it among its warnings).
    pub web_warning: Arc<Mutex<Option<String>>>,
}

/// Samples kept per agent for dashboards: (unix ms, sample), oldest first.
pub type History = std::collections::BTreeMap<
    roster_core::AgentName,
    std::collections::VecDeque<(i64, roster_core::watch::AgentSample)>,
>;

/// Serves the API until the task is aborted; `warnings` go into every status.
pub async fn serve(
    listener: UnixListener,
    inbox: Inbox,
    warnings: Vec<String>,
    published: Published,
) {
    let admin_gid = published.admin_gid;
    let guard_inbox = inbox.clone();
    let state = ApiState {
        inbox,
        warnings: Arc::new(warnings),
        cpu: Arc::new(Mutex::new(HashMap::new())),
        published,
    };
    let router = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/apply", post(apply))
        .route("/v1/start", post(start))
        .route("/v1/stop", post(stop))
        .route("/v1/restart", post(restart))
        .route("/v1/shutdown", post(shutdown))
        .route("/v1/alerts", get(alerts))
        .route("/v1/history", get(history))
        .route("/v1/deploy", post(deploy).get(deploy_progress))
        .route("/v1/rollback", post(rollback))
        .route("/v1/releases", get(releases))
        .route("/v1/describe", get(describe))
        .route("/v1/secrets", get(secrets_list))
        .route("/v1/secrets/set", post(secret_set))
        .route("/v1/secrets/rm", post(secret_remove))
        .route("/v1/recovery", post(recovery))
        .with_state(state);
    let listener = BoundedListener::new(
        crate::listener::GuardedUnix {
            inner: listener,
            admin_gid,
            inbox: guard_inbox,
            reported: HashMap::new(),
        },
        Limits {
            slots: MAX_CONNECTIONS,
            per_peer: None,
            patience: IDLE_TIMEOUT,
        },
    );
    if let Err(error) = crate::listener::serve(listener, router).await {
        tracing::error!("control API stopped: {error}");
    }
}

/// Connections served at once. More wait in the socket's backlog, so a
/// client that opens thousands cannot exhaust the daemon's descriptors (the
/// agents' restarts need them) or its memory.
pub const MAX_CONNECTIONS: usize = 128;

pub use crate::listener::IDLE_TIMEOUT;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorReply {
            error: message.into(),
        }),
    )
        .into_response()
}

fn gone() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the daemon is shutting down",
    )
}

async fn ask<T>(state: &ApiState, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Option<T> {
    let (reply, answer) = oneshot::channel();
    if !state.inbox.send(Input::Request(make(reply))) {
        return None;
    }
    answer.await.ok()
}

async fn status(State(state): State<ApiState>) -> Response {
    match status_reply(
        &state.inbox,
        &state.cpu,
        &state.published,
        &state.warnings,
        Figures::Sampled,
    )
    .await
    {
        Ok(reply) => Json(reply).into_response(),
        Err(StatusFailure::Gone) => gone(),
        Err(StatusFailure::Sampling(message)) => error(StatusCode::INTERNAL_SERVER_ERROR, message),
    }
}

async fn apply(State(state): State<ApiState>, Json(request): Json<ApplyRequest>) -> Response {
    let path = std::path::PathBuf::from(request.path);
    if !path.is_absolute() {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "the config path must be absolute (the daemon runs in /): {}",
                path.display()
            ),
        );
    }
    // Reading a file may block (a FIFO, a slow mount): never on the loop.
    let read_from = path.clone();
    let deploys = state.published.deploys.clone();
    let home = state.published.home.clone();
    let inbox = state.inbox.clone();
    let loaded = match tokio::task::spawn_blocking(move || {
        let mut loaded = crate::config_file::load_for_apply(&read_from);
        if let (Ok((config, read_along)), Some(deploys)) = (&mut loaded, &deploys) {
            let run = |argv: &[String]| crate::deploy::run_through_loop(&inbox, argv);
            crate::deploy::prepare_config(&home, &read_from, config, read_along, deploys, &run);
        }
        loaded
    })
    .await
    {
        Ok(loaded) => loaded,
        Err(join_error) => Err(format!("reading the config failed: {join_error}")),
    };
    let answer = ask(&state, |reply| Request::Apply {
        path,
        loaded,
        start_stopped: request.start_stopped,
        replace: request.replace,
        reply,
    })
    .await;
    match answer {
        Some(Ok(reply)) => Json(reply).into_response(),
        Some(Err(ApplyRefusal::Invalid(message))) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, message)
        }
        Some(Err(ApplyRefusal::Conflict(conflict))) => {
            (StatusCode::CONFLICT, Json(conflict)).into_response()
        }
        Some(Err(ApplyRefusal::ShuttingDown)) | None => gone(),
    }
}

async fn agents(state: ApiState, verb: Verb, request: AgentsRequest) -> Response {
    if request.names.is_empty() {
        return error(StatusCode::BAD_REQUEST, "name at least one agent, or `all`");
    }
    let answer = ask(&state, |reply| Request::Agents {
        verb,
        names: request.names,
        by: None,
        reply,
    })
    .await;
    match answer {
        Some(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Some(Err(message)) => error(StatusCode::NOT_FOUND, message),
        None => gone(),
    }
}

async fn start(State(state): State<ApiState>, Json(request): Json<AgentsRequest>) -> Response {
    agents(state, Verb::Start, request).await
}

async fn stop(State(state): State<ApiState>, Json(request): Json<AgentsRequest>) -> Response {
    agents(state, Verb::Stop, request).await
}

async fn restart(State(state): State<ApiState>, Json(request): Json<AgentsRequest>) -> Response {
    let verb = if request.drain {
        Verb::RestartDrained
    } else {
        Verb::Restart
    };
    agents(state, verb, request).await
}

async fn alerts(State(state): State<ApiState>) -> Response {
    let reply = state
        .published
        .alerts
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .reply();
    Json(reply).into_response()
}

/// `GET /v1/history[?agent=NAME][&points=N]`: the latest `points` samples
/// (default 60, at most an hour's) of each watched agent, or of one.
#[derive(serde::Deserialize)]
struct HistoryQuery {
    agent: Option<String>,
    points: Option<usize>,
}

async fn history(
    State(state): State<ApiState>,
    axum::extract::Query(query): axum::extract::Query<HistoryQuery>,
) -> Response {
    let wanted = query.points.unwrap_or(60).min(100_000);
    let history = state
        .published
        .history
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(agent) = &query.agent {
        if !history.keys().any(|name| name.as_str() == agent) {
            return error(
                StatusCode::NOT_FOUND,
                format!("no samples of {agent:?}: it is not running or no rule watches it"),
            );
        }
    }
    let reply: std::collections::BTreeMap<String, Vec<roster_core::api::HistoryPoint>> = history
        .iter()
        .filter(|(name, _)| {
            query
                .agent
                .as_deref()
                .is_none_or(|agent| name.as_str() == agent)
        })
        .map(|(agent, points)| {
            let skip = points.len().saturating_sub(wanted);
            let points = points
                .iter()
                .skip(skip)
                .map(|(unix_ms, sample)| roster_core::api::HistoryPoint {
                    time: crate::clock::rfc3339_millis(*unix_ms),
                    memory_bytes: sample.memory_bytes.map(|bytes| bytes as u64),
                    cpu_percent: sample.cpu_percent.map(|cpu| (cpu * 10.0).round() / 10.0),
                    open_files: sample.open_files.map(|files| files as u64),
                    connections: sample.connections.map(|tcp| tcp as u64),
                    threads: sample.threads.map(|threads| threads as u64),
                })
                .collect();
            (agent.to_string(), points)
        })
        .collect();
    drop(history);
    Json(reply).into_response()
}

async fn shutdown(State(state): State<ApiState>) -> Response {
    // Answer at once: the caller watches the daemon's lock to see it exit.
    let (reply, _answer) = oneshot::channel();
    if state.inbox.send(Input::Request(Request::Shutdown(reply))) {
        StatusCode::ACCEPTED.into_response()
    } else {
        gone()
    }
}

/// `?agent=NAME`.
#[derive(serde::Deserialize)]
struct AgentQuery {
    agent: String,
}

async fn begin(state: &ApiState, agent: &str, job: crate::deploy::Job) -> Response {
    let Some(deploys) = state.published.deploys.clone() else {
        return gone();
    };
    match deploys.begin(agent, job).await {
        Ok(progress) => Json(progress).into_response(),
        Err(refusal) => error(
            StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST),
            refusal.message,
        ),
    }
}

async fn deploy(
    State(state): State<ApiState>,
    Json(request): Json<roster_core::api::DeployRequest>,
) -> Response {
    let source = std::path::PathBuf::from(&request.source);
    if !source.is_absolute() {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "the source path must be absolute (the daemon runs in /): {}",
                request.source
            ),
        );
    }
    let job = crate::deploy::Job::Deploy {
        source,
        version: request.version,
    };
    begin(&state, &request.agent, job).await
}

async fn rollback(
    State(state): State<ApiState>,
    Json(request): Json<roster_core::api::RollbackRequest>,
) -> Response {
    let job = crate::deploy::Job::Rollback { to: request.to };
    begin(&state, &request.agent, job).await
}

async fn deploy_progress(
    State(state): State<ApiState>,
    axum::extract::Query(query): axum::extract::Query<AgentQuery>,
) -> Response {
    let Some(deploys) = state.published.deploys.clone() else {
        return gone();
    };
    match deploys.progress(&query.agent) {
        Some(progress) => Json(progress).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no deploy of {} since the daemon started", query.agent),
        ),
    }
}

/// `GET /v1/describe?agent=NAME`: what exactly runs for the agent (see
/// `crate::describe`); 404 with the known names for an unknown one.
async fn describe(
    State(state): State<ApiState>,
    axum::extract::Query(query): axum::extract::Query<AgentQuery>,
) -> Response {
    let gathered = match ask(&state, |reply| Request::Describe {
        agent: query.agent,
        reply,
    })
    .await
    {
        Some(Ok(gathered)) => gathered,
        Some(Err(unknown)) => return error(StatusCode::NOT_FOUND, unknown),
        None => return gone(),
    };
    match tokio::task::spawn_blocking(move || crate::describe::finish(gathered)).await {
        Ok(reply) => Json(reply).into_response(),
        Err(join) => error(StatusCode::INTERNAL_SERVER_ERROR, join.to_string()),
    }
}

async fn releases(
    State(state): State<ApiState>,
    axum::extract::Query(query): axum::extract::Query<AgentQuery>,
) -> Response {
    let agent = match roster_core::AgentName::new(&query.agent) {
        Ok(agent) => agent,
        Err(problem) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("bad agent name {:?}: {problem}", query.agent),
            )
        }
    };
    let home = state.published.home.clone();
    let listed =
        tokio::task::spawn_blocking(move || crate::releases::Releases::new(&home, &agent).list())
            .await;
    match listed {
        Ok(Ok(releases)) => Json(roster_core::api::ReleasesReply {
            agent: query.agent,
            releases,
        })
        .into_response(),
        Ok(Err(problem)) => error(StatusCode::INTERNAL_SERVER_ERROR, problem.to_string()),
        Err(join) => error(StatusCode::INTERNAL_SERVER_ERROR, join.to_string()),
    }
}

/// `POST /v1/recovery` {found, steps, left}: a `roster recover` report,
/// journaled through the inbox as `recovery` events, one per step and a
/// summary. The body and each list are bounded; a bad report is a 400 and
/// journals nothing.
async fn recovery(State(state): State<ApiState>, body: axum::body::Bytes) -> Response {
    use roster_core::api::{RecoveryReport, RECOVERY_BODY_MAX};
    if body.len() > RECOVERY_BODY_MAX {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "the recovery report is {} bytes, more than {RECOVERY_BODY_MAX}",
                body.len()
            ),
        );
    }
    let report: RecoveryReport = match serde_json::from_slice(&body) {
        Ok(report) => report,
        Err(problem) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                "the body is not a recovery report ({{\"found\", \"steps\", \"left\"}}): {problem}"
            ),
            )
        }
    };
    if report.is_stale(roster_store::clock::unix_millis()) {
        return error(
            StatusCode::BAD_REQUEST,
            "the recovery report is stale: the client has given up waiting and journals it itself",
        );
    }
    let events = match report.events() {
        Ok(events) => events,
        Err(problem) => return error(StatusCode::BAD_REQUEST, problem),
    };
    for event in events {
        let sent = state.inbox.send(Input::Note {
            agent: event.agent,
            kind: EventKind::Recovery,
            detail: event.detail,
        });
        if !sent {
            return gone();
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Decodes a secrets request. A body that does not decode gets a message
/// of our own: serde's would quote the value it choked on.
fn secret_request<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|_| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "the body is not a JSON secrets request ({\"agent\", \"key\"[, \"value\"]})",
        ))
    })
}

fn secret_error(problem: crate::secrets::SecretError) -> Response {
    use crate::secrets::SecretError;
    let status = match &problem {
        SecretError::Invalid(_) => StatusCode::BAD_REQUEST,
        SecretError::NotFound { .. } => StatusCode::NOT_FOUND,
        SecretError::Home(_) | SecretError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, problem.to_string())
}

/// `POST /v1/secrets/set` {agent, key, value}: writes the store (on the
/// blocking pool), then the daemon's copy; the next start of the agent
/// gets it. The value is never logged, journaled or answered.
async fn secret_set(State(state): State<ApiState>, body: axum::body::Bytes) -> Response {
    let request: roster_core::api::SecretSetRequest = match secret_request(&body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let key = request.key.clone();
    change_secret(
        &state,
        &request.agent,
        EventKind::SecretSet,
        format!("secret {key} set; the agent gets it at its next start"),
        move |secrets, agent| secrets.set(agent, &request.key, &request.value),
    )
    .await
}

/// `POST /v1/secrets/rm` {agent, key}.
async fn secret_remove(State(state): State<ApiState>, body: axum::body::Bytes) -> Response {
    let request: roster_core::api::SecretRemoveRequest = match secret_request(&body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let key = request.key.clone();
    change_secret(
        &state,
        &request.agent,
        EventKind::SecretRemoved,
        format!("secret {key} removed; the agent loses it at its next start"),
        move |secrets, agent| secrets.remove(agent, &request.key),
    )
    .await
}

/// Runs a change of an agent's secrets on the blocking pool and, when it
/// took, journals `kind` with `detail` (names only, never a value).
async fn change_secret(
    state: &ApiState,
    agent: &str,
    kind: EventKind,
    detail: String,
    change: impl FnOnce(
            &crate::secrets::Secrets,
            &roster_core::AgentName,
        ) -> Result<(), crate::secrets::SecretError>
        + Send
        + 'static,
) -> Response {
    let agent = match crate::secrets::check_agent(agent) {
        Ok(agent) => agent,
        Err(problem) => return error(StatusCode::BAD_REQUEST, problem),
    };
    let Some(secrets) = state.published.secrets.clone() else {
        return gone();
    };
    let changed_for = agent.clone();
    let changed = tokio::task::spawn_blocking(move || change(&secrets, &changed_for)).await;
    match changed {
        Ok(Ok(())) => {
            state.inbox.send(Input::Note {
                agent: Some(agent),
                kind,
                detail,
            });
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Err(problem)) => secret_error(problem),
        Err(join) => error(StatusCode::INTERNAL_SERVER_ERROR, join.to_string()),
    }
}

/// `GET /v1/secrets?agent=NAME`: the names of the agent's secrets (from
/// the daemon's copy), never their values.
async fn secrets_list(
    State(state): State<ApiState>,
    axum::extract::Query(query): axum::extract::Query<AgentQuery>,
) -> Response {
    let agent = match crate::secrets::check_agent(&query.agent) {
        Ok(agent) => agent,
        Err(problem) => return error(StatusCode::BAD_REQUEST, problem),
    };
    let Some(secrets) = state.published.secrets.clone() else {
        return gone();
    };
    let keys = secrets.keys(&agent);
    let encrypted = tokio::task::spawn_blocking(move || secrets.is_encrypted())
        .await
        .unwrap_or(false);
    Json(roster_core::api::SecretsReply {
        agent: query.agent,
        keys,
        encrypted,
    })
    .into_response()
}
