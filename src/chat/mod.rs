//! The chat features on top of the Hermes client (`crate::hermes`): `routes` (the web chat,
//! `POST /api/chat`), `conversations` (the stored history), `search` (full-text search of it),
//! `export` (a conversation as Markdown or JSON), `attachments` (files the agent reads) and `openai` (`/v1/*` for API clients
//! with personal tokens, which live in `crate::auth::tokens`).

pub(crate) mod attachments;
pub(crate) mod conversations;
pub(crate) mod export;
pub(crate) mod openai;
pub(crate) mod routes;
pub(crate) mod runs;
pub(crate) mod search;

use http::{HeaderValue, Method, Request};
use hyper::body::Incoming;

use crate::app::{App, Ctx};
use crate::auth::{tokens, User};
use crate::response::{self, Resp};

/// Routes of the chat API for a signed-in user: `/api/chat`, `/api/conversations*` (export
/// included), `/api/search`, `/api/tokens*`.
pub(crate) async fn route(
    app: &App,
    ctx: &Ctx,
    req: Request<Incoming>,
    user: &User,
    method: &Method,
    path: &str,
) -> Resp {
    match (method, path) {
        (&Method::POST, "/api/chat") => return routes::post(app, ctx, req, user).await,
        (_, "/api/chat") => return response::method_not_allowed(),
        (&Method::GET, "/api/conversations") => return conversations::list(app, user).await,
        (_, "/api/conversations") => return response::method_not_allowed(),
        (&Method::POST, "/api/attachments") => {
            return attachments::upload(app, ctx, req, user).await
        }
        (_, "/api/attachments") => return response::method_not_allowed(),
        (&Method::GET, "/api/search") => return search::get(app, &req, user).await,
        (_, "/api/search") => return response::method_not_allowed(),
        (&Method::GET, "/api/tokens") => return tokens::list(app, user).await,
        (&Method::POST, "/api/tokens") => return tokens::post(app, ctx, req, user).await,
        (_, "/api/tokens") => return response::method_not_allowed(),
        _ => {}
    }
    if let Some(id) = path.strip_prefix("/api/conversations/") {
        if let Some(id) = id.strip_suffix("/export") {
            return match *method {
                Method::GET => export::get(app, &req, user, id).await,
                _ => response::method_not_allowed(),
            };
        }
        if let Some(id) = id.strip_suffix("/run") {
            return match *method {
                Method::GET => runs::routes::attach(app, user, id).await,
                _ => response::method_not_allowed(),
            };
        }
        if let Some(id) = id.strip_suffix("/run/approval") {
            return match *method {
                Method::POST => runs::routes::approval(app, ctx, req, user, id).await,
                _ => response::method_not_allowed(),
            };
        }
        if let Some(id) = id.strip_suffix("/run/stop") {
            return match *method {
                Method::POST => runs::routes::stop(app, user, id).await,
                _ => response::method_not_allowed(),
            };
        }
        return match *method {
            Method::GET => conversations::get(app, user, id).await,
            Method::PATCH => conversations::patch(app, ctx, req, user, id).await,
            Method::DELETE => conversations::delete(app, ctx, user, id).await,
            _ => response::method_not_allowed(),
        };
    }
    if let Some(id) = path.strip_prefix("/api/tokens/") {
        return match *method {
            Method::DELETE => tokens::delete(app, user, id).await,
            _ => response::method_not_allowed(),
        };
    }
    response::not_found()
}

/// True for the paths `route` answers.
pub(crate) fn is_chat_path(path: &str) -> bool {
    path == "/api/chat"
        || path == "/api/conversations"
        || path.starts_with("/api/conversations/")
        || path == "/api/search"
        || path == "/api/attachments"
        || path == "/api/tokens"
        || path.starts_with("/api/tokens/")
}

/// Adds a header whose value is known to be valid text (ids we generated).
pub(crate) fn set_header(resp: &mut Resp, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}
