//! The two HTML pages (the login form, the dashboard's frame) and the
//! embedded script and style. No inline script or style: the policy
//! allows only `/assets/app.js` and `/assets/app.css`. Every agent's text
//! reaches the page through the script's `textContent`, never as HTML.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use roster_core::web::Grant;

/// The dashboard's script.
pub const APP_JS: &str = include_str!("assets/app.js");
/// The dashboard's style.
pub const APP_CSS: &str = include_str!("assets/app.css");

/// An HTML answer.
pub fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Escapes text for HTML (attributes and content).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The login form; `problem` says why the last attempt failed.
pub fn login(problem: Option<&str>) -> String {
    let problem = problem
        .map(|text| format!("<p class=\"problem\" role=\"alert\">{}</p>", escape(text)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>roster: log in</title>
<link rel="stylesheet" href="/assets/app.css">
</head>
<body class="login">
<main>
<h1>roster</h1>
<form method="post" action="/login">
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="off" autofocus required>
<button type="submit">Log in</button>
</form>
{problem}
<p class="hint">A token comes from <code>roster web token add</code>.</p>
</main>
</body>
</html>
"#
    )
}

/// The dashboard's frame: the script fills it from the event stream.
pub fn dashboard(csrf: &str, grant: &Grant) -> String {
    let csrf = escape(csrf);
    let who = escape(&grant.token);
    let scope = escape(&grant.scope.to_string());
    let read_only = if grant.read_only { "true" } else { "false" };
    let mode = if grant.read_only { " (read-only)" } else { "" };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{csrf}">
<meta name="roster-read-only" content="{read_only}">
<title>roster</title>
<link rel="stylesheet" href="/assets/app.css">
<script src="/assets/app.js" defer></script>
</head>
<body>
<header>
<h1>roster</h1>
<span class="who" data-me>{who}: {scope}{mode}</span>
<span class="live" data-live>connecting…</span>
<input type="search" placeholder="filter: name or state" data-filter aria-label="filter">
<button type="button" data-logout>Log out</button>
</header>
<main>
<section class="agents">
<table data-agents>
<thead><tr>
<th data-sort="name">Agent</th>
<th data-sort="state">State</th>
<th data-sort="health">Health</th>
<th data-sort="uptime">Uptime</th>
<th data-sort="restarts">Restarts</th>
<th data-sort="cpu">CPU</th>
<th data-sort="memory">Memory</th>
<th data-sort="release">Release</th>
<th>Alerts</th>
<th>Last error</th>
<th>Actions</th>
</tr></thead>
<tbody></tbody>
</table>
<div class="confirm" data-confirm-box hidden>
<span data-confirm-text></span>
<button type="button" data-confirm>Confirm</button>
<button type="button" data-cancel>Cancel</button>
</div>
<p class="problem" data-problem hidden></p>
</section>
<section class="log">
<h2>Log <span data-log-agent>(select an agent)</span></h2>
<pre data-log></pre>
</section>
<section class="side">
<h2>Alerts</h2>
<ul data-alerts></ul>
<h2>Recent events</h2>
<ul data-events></ul>
</section>
</main>
</body>
</html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_core::web::Scope;

    #[test]
    fn pages_hold_no_inline_script_or_style_and_escape_what_they_show() {
        let grant = Grant {
            token: "<b>".into(),
            scope: Scope::Admin,
            read_only: true,
        };
        for page in [dashboard("ab\"cd", &grant), login(Some("<x>"))] {
            assert!(!page.contains("<b>") && !page.contains("<x>"));
            assert!(!page.contains("<script>") && !page.contains("style="));
            assert!(!page.contains(" on") || !page.contains("onclick"));
        }
        assert!(dashboard("ab\"cd", &grant).contains("content=\"ab&quot;cd\""));
        assert!(login(None).contains("name=\"token\""));
    }
}
