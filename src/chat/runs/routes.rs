//! A tab's ways into a run: attach to it, answer its approval, stop it.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::sync::Arc;

use super::Run;
use crate::app::{App, Ctx};
use crate::auth::User;
use crate::hermes::Outgoing;
use crate::response::{self, Resp};

/// The run of a conversation of `user`, if one is going.
fn own_run(app: &App, user: &User, conversation: &str) -> Option<Arc<Run>> {
    app.runs.get(conversation).filter(|r| r.user_id == user.id)
}

/// A stream of a run for a tab (`text/event-stream`).
pub(crate) fn stream(run: &Arc<Run>) -> Resp {
    let mut r = Response::new(run.attach());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    super::super::set_header(&mut r, "x-conversation-id", &run.conversation);
    r
}

/// `GET /api/conversations/{id}/run`: the run so far and the rest live, or `204` without one.
pub(crate) async fn attach(app: &App, user: &User, conversation: &str) -> Resp {
    if let Some(run) = own_run(app, user, conversation) {
        return stream(&run);
    }
    match super::super::conversations::owned(app, user, conversation).await {
        Ok(true) => response::with_body(StatusCode::NO_CONTENT, "application/json", ""),
        Ok(false) => response::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "There is no such conversation.",
        ),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    choice: String,
}

/// `POST /api/conversations/{id}/run/approval`: the person's answer, passed on to Hermes.
pub(crate) async fn approval(
    app: &App,
    ctx: &Ctx,
    req: Request<Incoming>,
    user: &User,
    conversation: &str,
) -> Resp {
    let body = match crate::body::read_body(app.body_room(ctx), req, crate::body::SMALL_BODY_BYTES)
        .await
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let answer: Answer = match response::parse_json(&body) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if !matches!(answer.choice.as_str(), "once" | "session" | "deny") {
        return response::error(
            StatusCode::BAD_REQUEST,
            "bad_choice",
            "\"choice\" must be \"once\", \"session\" or \"deny\".",
        );
    }
    if app.config.chat.approvals_admins_only
        && !matches!(user.role, crate::auth::users::Role::Admin)
    {
        return response::error(
            StatusCode::FORBIDDEN,
            "approval_admin_only",
            "On this server only an administrator may allow the agent's commands.",
        );
    }
    let no_approval = || {
        response::error(
            StatusCode::CONFLICT,
            "no_approval",
            "Nothing is waiting for an answer (it was answered, timed out, or the answer ended).",
        )
    };
    let Some(run) = own_run(app, user, conversation) else {
        return no_approval();
    };
    let hermes_run = {
        let state = run.state();
        match (&state.approval, &state.hermes_run) {
            (Some(_), Some(id)) => id.clone(),
            _ => return no_approval(),
        }
    };
    let out = Outgoing {
        body: Some(Bytes::from(
            serde_json::json!({ "choice": answer.choice }).to_string(),
        )),
        ..Outgoing::new(Method::POST, format!("/v1/runs/{hermes_run}/approval"), ctx)
    };
    match crate::hermes::exchange(&app.hermes(), &out).await {
        Ok(r) if r.status().is_success() => {
            tracing::info!(user = %user.username, choice = %answer.choice, "approval answered");
            response::json(StatusCode::OK, &serde_json::json!({"ok": true}))
        }
        Ok(r) if r.status() == StatusCode::CONFLICT || r.status() == StatusCode::NOT_FOUND => {
            no_approval()
        }
        Ok(r) => {
            let detail = crate::hermes::error_detail(r).await;
            crate::hermes::UpstreamError::Failed(detail).response()
        }
        Err(e) => e.response(),
    }
}

/// `POST /api/conversations/{id}/run/stop`: ends the run, in Hermes too.
pub(crate) async fn stop(app: &App, user: &User, conversation: &str) -> Resp {
    match own_run(app, user, conversation) {
        Some(run) => {
            run.stop.notify_one();
            response::json(StatusCode::OK, &serde_json::json!({"ok": true}))
        }
        None => response::error(
            StatusCode::NOT_FOUND,
            "no_run",
            "This conversation has no answer being written.",
        ),
    }
}
