//! Server-sent events: the snapshot stream every open page listens to,
//! and one agent's log (the last lines, then new ones live, across
//! rotation, through the store's follower).
//!
//! Each stream is a task feeding a small channel that the response body
//! reads; the task ends when the page goes away (the channel closes),
//! when its caller's token or session no longer holds, or when the server
//! stops serving (`[web]` removed or moved).

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, watch};

use roster_store::logs::follow::Follower;

use super::gate::Gate;
use super::hub::Hub;

/// Lines of the log sent first.
pub const TAIL: usize = 200;
/// How often a log is polled for new lines.
const LOG_POLL: Duration = Duration::from_millis(250);
/// A comment is sent this often when nothing else is, so the connection
/// never looks idle.
const KEEPALIVE: Duration = Duration::from_secs(5);
/// How often a log stream checks that its caller still may read.
const RECHECK: Duration = Duration::from_secs(1);

/// The receiving end of a stream task, as a response body.
struct Frames(mpsc::Receiver<Bytes>);

impl futures_core::Stream for Frames {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(context).map(|frame| frame.map(Ok))
    }
}

fn sse_response(frames: mpsc::Receiver<Bytes>) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(Frames(frames)),
    )
        .into_response()
}

/// One SSE event: `data` is JSON, so it has no newline.
fn frame(event: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// The headers that prove the caller again (cookie, authorization).
fn proof(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in [header::COOKIE, header::AUTHORIZATION] {
        for value in headers.get_all(&name) {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// `GET /web/api/stream`: a `snapshot` event at once, then one per tick,
/// filtered for the caller's grant as it stands at each tick.
pub fn snapshots(
    gate: Gate,
    hub: Hub,
    mut serving: watch::Receiver<()>,
    headers: &HeaderMap,
) -> Response {
    let proof = proof(headers);
    let (sender, frames) = mpsc::channel(2);
    let mut latest = hub.subscribe();
    tokio::spawn(async move {
        let first = hub.current().await;
        latest.mark_unchanged();
        let mut full = first;
        while let Some(caller) = gate.caller(&proof) {
            let data = full.for_grant(&caller.grant, |token| gate.scope_of(token));
            if sender.send(frame("snapshot", &data)).await.is_err() {
                break;
            }
            tokio::select! {
                changed = latest.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = sender.closed() => break,
                _ = serving.changed() => break,
            }
            full = latest.borrow_and_update().clone();
        }
    });
    sse_response(frames)
}

/// `GET /web/api/logs/NAME` for an agent the caller may see: the last
/// [`TAIL`] lines, then new lines as they come (`line` events).
pub fn log(
    gate: Gate,
    mut serving: watch::Receiver<()>,
    path: PathBuf,
    headers: &HeaderMap,
) -> Response {
    let proof = proof(headers);
    let (sender, frames) = mpsc::channel(16);
    tokio::spawn(async move {
        let opened = tokio::task::spawn_blocking(move || Follower::with_tail(path, TAIL)).await;
        let (mut follower, tail) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(error)) => {
                let message = serde_json::json!({ "error": error.to_string() }).to_string();
                let _ = sender.send(frame("error", &message)).await;
                return;
            }
            Err(_) => return,
        };
        if !send_lines(&sender, tail.into_iter().map(|line| line.text)).await {
            return;
        }
        let mut poll = tokio::time::interval(LOG_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut quiet_since = tokio::time::Instant::now();
        let mut checked = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = poll.tick() => {}
                () = sender.closed() => return,
                _ = serving.changed() => return,
            }
            if checked.elapsed() >= RECHECK {
                if gate.caller(&proof).is_none() {
                    return;
                }
                checked = tokio::time::Instant::now();
            }
            let polled = tokio::task::spawn_blocking(move || {
                let lines = follower.poll();
                (follower, lines)
            })
            .await;
            let Ok((returned, lines)) = polled else {
                return;
            };
            follower = returned;
            if lines.is_empty() {
                if quiet_since.elapsed() >= KEEPALIVE {
                    if sender
                        .send(Bytes::from_static(b": still here\n\n"))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    quiet_since = tokio::time::Instant::now();
                }
                continue;
            }
            quiet_since = tokio::time::Instant::now();
            if !send_lines(&sender, lines.into_iter().map(|line| line.text)).await {
                return;
            }
        }
    });
    sse_response(frames)
}

async fn send_lines(sender: &mpsc::Sender<Bytes>, lines: impl Iterator<Item = String>) -> bool {
    for line in lines {
        let data = serde_json::json!({ "line": line }).to_string();
        if sender.send(frame("line", &data)).await.is_err() {
            return false;
        }
    }
    true
}
