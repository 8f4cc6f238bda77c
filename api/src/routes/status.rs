//! The status page: `GET /` and `GET /status`, plain server-rendered HTML
//! with inline CSS, no script and nothing fetched from elsewhere, so it
//! works in any browser and through any proxy. `GET /status/admin` adds
//! failed jobs with their reasons and the recent errors, behind an admin
//! login: HTTP Basic (what a browser asks for by itself) or a bearer token.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;

use super::extract::St;
use super::state::Ctx;
use crate::service::{Accounts, Ops, Service};
use crate::wire::{CheckState, Health, Job, LoginRequest, StatusReport};

pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route("/", get(page::<S>))
        .route("/status", get(page::<S>))
        .route("/status/admin", get(admin_page::<S>))
}

async fn page<S: Service>(State(ctx): St<S>) -> Response {
    html(StatusCode::OK, &render(&ctx.svc.ops().status(false).await))
}

async fn admin_page<S: Service>(State(ctx): St<S>, headers: HeaderMap) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let principal = if let Some(token) = auth.strip_prefix("Bearer ") {
        ctx.svc.accounts().authenticate(token.trim()).await.ok()
    } else if let Some((username, password)) = basic(auth) {
        ctx.svc
            .accounts()
            .verify_password(LoginRequest { username, password })
            .await
            .ok()
    } else {
        None
    };
    match principal {
        Some(p) if p.is_admin() => html(StatusCode::OK, &render(&ctx.svc.ops().status(true).await)),
        Some(_) => html(
            StatusCode::FORBIDDEN,
            &message_page("Admins only", "This account is not an admin."),
        ),
        None => {
            let mut r = html(
                StatusCode::UNAUTHORIZED,
                &message_page(
                    "Login required",
                    "The admin status needs an admin's username and password.",
                ),
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static(
                    "Basic realm=\"appliance admin\", charset=\"UTF-8\"",
                ),
            );
            r
        }
    }
}

/// `Basic base64(user:password)` → the pair.
fn basic(auth: &str) -> Option<(String, String)> {
    let encoded = auth.strip_prefix("Basic ")?.trim();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn html(status: StatusCode, body: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Live numbers: never from a cache, never framed elsewhere.
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body.to_owned(),
    )
        .into_response()
}

/// Text for HTML, escaped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d1f21;background:#fafafa}\
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:22px 0 6px;border-bottom:1px solid #ddd;padding-bottom:3px}\
.meta{color:#555}table{border-collapse:collapse;min-width:420px}td,th{padding:3px 10px 3px 0;text-align:left;vertical-align:top}\
th{color:#555;font-weight:600}.ok{color:#11772d}.degraded{color:#9a6700}.down{color:#b3261e}\
.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-weight:600;color:#fff}\
.badge.ok{background:#11772d}.badge.degraded{background:#9a6700}.badge.down{background:#b3261e}\
code{font:12px ui-monospace,monospace}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:0 28px}";

fn state_name(s: CheckState) -> &'static str {
    match s {
        CheckState::Ok => "ok",
        CheckState::Degraded => "degraded",
        CheckState::Down => "down",
    }
}

fn message_page(title: &str, text: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head>\
         <body><h1>{t}</h1><p>{x}</p><p><a href=\"/\">Status</a></p></body></html>",
        t = esc(title),
        x = esc(text)
    )
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{:.1} h", s as f64 / 3600.0),
        s => format!("{:.1} days", s as f64 / 86400.0),
    }
}

/// The whole page.
pub(crate) fn render(r: &StatusReport) -> String {
    let mut o = String::new();
    let overall = r.health.as_ref().map_or(CheckState::Ok, |h| h.status);
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <meta http-equiv=\"refresh\" content=\"15\"><title>appliance on {host}: {state}</title>\
         <style>{STYLE}</style></head><body>\
         <h1>appliance on {host} <span class=\"badge {state}\">{state}</span></h1>\
         <div class=\"meta\">version {v} ({c}) · up {up} since {since} · refreshes every 15 s · \
         <a href=\"/readyz\">/readyz</a> · <a href=\"/metrics\">/metrics</a> · <a href=\"/openapi.json\">/openapi.json</a>{admin}</div>",
        host = esc(&r.host),
        state = state_name(overall),
        v = esc(&r.version),
        c = esc(&r.commit),
        up = duration(r.uptime_secs),
        since = esc(&r.started_at),
        admin = if r.admin.is_some() {
            " · admin view"
        } else {
            " · <a href=\"/status/admin\">admin details</a>"
        },
    );
    o.push_str("<div class=\"grid\"><div>");
    health(&mut o, r.health.as_ref());
    o.push_str("</div><div>");
    work(&mut o, r);
    o.push_str("</div></div>");
    if let Some(a) = &r.admin {
        jobs_table(&mut o, "Running jobs", &a.running);
        jobs_table(&mut o, "Failed jobs", &a.failed);
        o.push_str("<h2>Recent warnings and errors</h2>");
        if a.recent_errors.is_empty() {
            o.push_str("<p class=\"ok\">None since the start.</p>");
        } else {
            o.push_str("<table><tr><th>at</th><th>level</th><th>where</th><th>message</th></tr>");
            for l in &a.recent_errors {
                let class = if l.level == "ERROR" {
                    "down"
                } else {
                    "degraded"
                };
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td class=\"{class}\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
                    esc(&l.at),
                    esc(&l.level),
                    esc(&l.target),
                    esc(&l.message)
                );
            }
            o.push_str("</table>");
        }
    }
    o.push_str("</body></html>");
    o
}

fn health(o: &mut String, h: Option<&Health>) {
    o.push_str("<h2>Health</h2>");
    let Some(h) = h else {
        o.push_str("<p>not checked</p>");
        return;
    };
    o.push_str("<table><tr><th>dependency</th><th>state</th><th>detail</th></tr>");
    for c in &h.checks {
        let s = state_name(c.state);
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"{s}\">{s}</td><td>{}</td></tr>",
            esc(&c.name),
            esc(&c.detail)
        );
    }
    o.push_str("</table>");
}

fn work(o: &mut String, r: &StatusReport) {
    o.push_str("<h2>Jobs</h2><table>");
    for (state, n) in &r.jobs {
        let class = if state == "failed" && *n > 0 {
            " class=\"down\""
        } else {
            ""
        };
        let _ = write!(o, "<tr><td>{}</td><td{class}>{n}</td></tr>", esc(state));
    }
    let t = &r.transcode;
    let _ = write!(
        o,
        "<tr><td>encode speed</td><td>{}</td></tr>\
         <tr><td>this process</td><td>{} succeeded, {} failed, {} GPU fallbacks</td></tr></table>",
        t.fps.map_or_else(
            || "no transcode yet".into(),
            |f| format!(
                "{f:.0} source frames/s ({} frames in {:.0} s)",
                t.frames, t.seconds
            )
        ),
        t.succeeded,
        t.failed,
        t.gpu_fallbacks
    );
    o.push_str("<h2>Hardware and placement</h2><table>");
    for s in &r.stages {
        let _ = write!(o, "<tr><td><code>{}</code></td></tr>", esc(s));
    }
    for g in &r.gpus {
        let util = g.utilisation.map_or_else(
            || "utilisation unknown".into(),
            |u| {
                format!(
                    "SM {}%, memory {}%, NVENC {}%, NVDEC {}%",
                    u[0], u[1], u[2], u[3]
                )
            },
        );
        let _ = write!(
            o,
            "<tr><td>GPU {} {}: {util}, {} encode sessions</td></tr>",
            g.index,
            esc(&g.name),
            g.encode_sessions
        );
    }
    let _ = write!(
        o,
        "<tr><td>CPU load {:.2} / {:.2} / {:.2} on {} CPUs</td></tr></table>",
        r.load[0], r.load[1], r.load[2], r.cpus
    );
    let f = &r.feed;
    let ms = |v: Option<f64>| v.map_or_else(|| "–".into(), |v| format!("≤ {v} ms"));
    let sources = if f.sources.is_empty() {
        "none yet".to_owned()
    } else {
        f.sources
            .iter()
            .map(|(s, n)| format!("{} {n}", esc(s)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = write!(
        o,
        "<h2>Feed</h2><table><tr><td>pages</td><td>{} ({} fallbacks)</td></tr>\
         <tr><td>latency</td><td>p50 {}, p99 {}</td></tr><tr><td>sources</td><td>{sources}</td></tr>\
         <tr><td>ranker</td><td>{}</td></tr><tr><td>indexed videos</td><td>{}</td></tr></table>",
        f.requests,
        f.fallbacks,
        ms(f.p50_ms),
        ms(f.p99_ms),
        esc(&f.ranker),
        f.index_videos
    );
    let _ = write!(
        o,
        "<h2>Events and HTTP</h2><table><tr><td>event spool</td><td>{} waiting, oldest {:.1} s</td></tr>\
         <tr><td>connections</td><td>{} open, {} refused</td></tr>\
         <tr><td>requests</td><td>{} answered, {} with 5xx</td></tr></table>",
        r.spool_depth,
        r.shipping_lag_secs,
        r.http.open_connections,
        r.http.refused,
        r.http.requests,
        r.http.server_errors
    );
    o.push_str("<h2>Live channels</h2>");
    if r.live.is_empty() {
        o.push_str("<p>none</p>");
    } else {
        o.push_str("<table><tr><th>channel</th><th>name</th><th>state</th></tr>");
        for l in &r.live {
            let _ = write!(
                o,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&l.id),
                esc(&l.name),
                esc(&l.state)
            );
        }
        o.push_str("</table>");
    }
}

fn jobs_table(o: &mut String, title: &str, jobs: &[Job]) {
    let _ = write!(o, "<h2>{}</h2>", esc(title));
    if jobs.is_empty() {
        o.push_str("<p>none</p>");
        return;
    }
    o.push_str("<table><tr><th>job</th><th>video</th><th>attempts</th><th>updated</th><th>reason</th></tr>");
    for j in jobs {
        let _ = write!(
            o,
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}/{}</td><td>{}</td><td>{}</td></tr>",
            j.id,
            esc(&j.video_id),
            j.attempts,
            j.max_attempts,
            esc(&j.updated_at),
            esc(j.last_error.as_deref().unwrap_or(""))
        );
    }
    o.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{AdminDetails, HealthCheck, LogLine};

    #[test]
    fn basic_credentials_decode() {
        // "admin:pa:ss" — the password may hold colons.
        assert_eq!(
            basic("Basic YWRtaW46cGE6c3M="),
            Some(("admin".into(), "pa:ss".into()))
        );
        assert_eq!(basic("Basic !!"), None);
        assert_eq!(basic("Bearer x"), None);
    }

    #[test]
    fn the_page_escapes_what_it_shows_and_marks_states() {
        let r = StatusReport {
            host: "box<1>".into(),
            health: Some(Health::of(vec![HealthCheck {
                name: "embedding model".into(),
                state: CheckState::Degraded,
                detail: "models/<x>: config.json is missing".into(),
            }])),
            admin: Some(AdminDetails {
                recent_errors: vec![LogLine {
                    level: "ERROR".into(),
                    message: "<script>alert(1)</script>".into(),
                    ..LogLine::default()
                }],
                ..AdminDetails::default()
            }),
            ..StatusReport::default()
        };
        let page = render(&r);
        assert!(page
            .contains("appliance on box&lt;1&gt; <span class=\"badge degraded\">degraded</span>"));
        assert!(page.contains("models/&lt;x&gt;: config.json is missing"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!page.contains("<script"));
        assert!(page.contains("admin view"));
        let public = render(&StatusReport::default());
        assert!(public.contains("href=\"/status/admin\""));
        assert!(!public.contains("Recent warnings"));
    }
}
