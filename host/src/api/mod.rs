//! The local HTTP API: Job Protocol v1 (`/info`, `/health`, `/jobs`...) plus
//! listing, results, Server-Sent Events, job files, uploaded blobs and
//! Prometheus metrics; the key,
//! Host/Origin checks and limits that every route shares; and the
//! `FrontDoor` hook through which other protocols (Vera) add their routes.
//! The web console's pages (`crate::console`) are served beside them.

mod blobs;
mod catalog;
mod error;
mod events;
mod files;
mod guard;
mod jobs;
mod node;
mod openapi;
pub mod server;
pub mod settings;
pub mod tls;
mod usage;

pub use error::ApiError;
pub use jobs::{json_bytes, submit_error};

use crate::node::Node;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value};
use settings::ApiSection;
use std::sync::Arc;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// A protocol served on the API's port beside Job Protocol v1: its routes
/// (behind the same key, Host/Origin checks and body limit) and what it
/// adds to `/health`.
pub trait FrontDoor: Send + Sync {
    /// The protocol's routes, each documented (`#[utoipa::path]`).
    fn routes(&self) -> OpenApiRouter<AppState>;
    /// Fields it adds to `/health`.
    fn health(&self, _node: &Node) -> Map<String, Value> {
        Map::new()
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The node.
    pub node: Arc<Node>,
    /// The other protocols served here.
    doors: Arc<[Arc<dyn FrontDoor>]>,
    key_hash: Option<[u8; 32]>,
    /// `Host` values answered, when the API has no key and listens on
    /// loopback (`None`: any).
    hosts: Option<Arc<Vec<String>>>,
}

/// The API's routes, and those of `doors`, with auth, body limit and CORS
/// applied.
pub fn router(node: Arc<Node>, doors: Vec<Arc<dyn FrontDoor>>) -> Router {
    let api = node.config.api.clone();
    let mut protected = OpenApiRouter::with_openapi(openapi::Base::openapi())
        .routes(routes!(node::info))
        .routes(routes!(node::metrics))
        .routes(routes!(node::history))
        .routes(routes!(jobs::list, jobs::submit))
        .routes(routes!(jobs::get, jobs::cancel))
        .routes(routes!(jobs::result))
        .routes(routes!(jobs::request))
        .routes(routes!(jobs::receipt))
        .routes(routes!(events::stream))
        .routes(routes!(files::list))
        // Documented in `openapi::Base`: axum spells a path of any depth `{*path}`.
        .route("/jobs/{id}/files/{*path}", get(files::get))
        .routes(routes!(usage::usage))
        .routes(routes!(catalog::task_types))
        .routes(routes!(catalog::tools))
        .routes(routes!(node::drain))
        .routes(routes!(blobs::put))
        .routes(routes!(blobs::get));
    for door in &doors {
        protected = protected.merge(door.routes());
    }
    let (public, public_doc) = OpenApiRouter::new()
        .routes(routes!(node::health))
        .split_for_parts();
    let (protected, mut document) = protected.split_for_parts();
    document.merge(public_doc);
    let state = AppState {
        doors: doors.into(),
        key_hash: (!api.api_key.is_empty())
            .then(|| *blake3::hash(api.api_key.as_bytes()).as_bytes()),
        hosts: guard::allowed_hosts(&api).map(Arc::new),
        node,
    };
    let protected =
        protected.route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let mut app = public.merge(openapi::route(&document)).merge(protected);
    if api.console {
        app = app.merge(crate::console::routes());
    }
    let app = app
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(api.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::browsers,
        ))
        .with_state(state);
    match cors(&api) {
        Some(layer) => app.layer(layer),
        None => app,
    }
}

/// Requires the API key (`X-API-Key` or `Authorization: Bearer`) when one is
/// configured, compared in constant time.
async fn authenticate(
    State(app): State<AppState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(expected) = app.key_hash else {
        return Ok(next.run(request).await);
    };
    let given = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        });
    let matches = given.is_some_and(|key| {
        use subtle::ConstantTimeEq;
        bool::from(
            blake3::hash(key.trim().as_bytes())
                .as_bytes()
                .ct_eq(&expected),
        )
    });
    if matches {
        Ok(next.run(request).await)
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "a valid API key is required (X-API-Key or Authorization: Bearer)",
        ))
    }
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("no route for {method} {}", uri.path()),
    )
}

fn cors(api: &ApiSection) -> Option<CorsLayer> {
    if api.cors_origins.is_empty() {
        return None;
    }
    let origins = if api.cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::from(Any)
    } else {
        AllowOrigin::list(
            api.cors_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::HeaderName::from_static("x-api-key"),
            ]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use axum::body::Body;
    use proptest::prelude::*;
    use std::sync::OnceLock;
    use tower::ServiceExt;

    /// One node for every case, on its own runtime (a node lives as long as the process).
    fn app() -> &'static (tokio::runtime::Runtime, Router, tempfile::TempDir) {
        static APP: OnceLock<(tokio::runtime::Runtime, Router, tempfile::TempDir)> =
            OnceLock::new();
        APP.get_or_init(|| {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let mut config = Config::default();
            config.node.data_dir = dir.path().to_path_buf();
            config.scheduler.max_concurrent_jobs = 1;
            config.api.max_body_bytes = 64 * 1024;
            let node = rt.block_on(Node::start(config)).unwrap();
            let router = router(Arc::new(node), Vec::new());
            (rt, router, dir)
        })
    }

    /// Sends `request` as a local client would (its `Host` and, with a
    /// body, a JSON content type).
    fn send(mut request: Request<Body>) -> (StatusCode, serde_json::Value) {
        let (rt, router, _) = app();
        let headers = request.headers_mut();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9000"));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        rt.block_on(async {
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            )
        })
    }

    /// A body that is not declared JSON, or a foreign `Host`, is refused
    /// before any handler reads it.
    #[test]
    fn browsers_cannot_post_forms_or_rebind_names() {
        let (rt, router, _) = app();
        for (host, content_type, expected) in [
            (
                "127.0.0.1:9000",
                "application/x-www-form-urlencoded",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                "127.0.0.1:9000",
                "text/plain",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                "attacker.example:9000",
                "application/json",
                StatusCode::FORBIDDEN,
            ),
            (
                "localhost:9000",
                "application/json; charset=utf-8",
                StatusCode::BAD_REQUEST,
            ),
        ] {
            let mut request = Request::post("/jobs")
                .body(Body::from("protocol_version=1"))
                .unwrap();
            let headers = request.headers_mut();
            headers.insert(header::HOST, HeaderValue::from_static(host));
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            let status = rt
                .block_on(router.clone().oneshot(request))
                .unwrap()
                .status();
            assert_eq!(status, expected, "{host} {content_type}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Arbitrary bytes posted as a job: always a JSON answer with a 2xx/4xx
        /// status and a code, never a panic or a 5xx.
        #[test]
        fn arbitrary_submissions_get_json_answers(body in prop::collection::vec(any::<u8>(), 0..2048)) {
            let (status, json) = send(Request::post("/jobs").body(Body::from(body)).unwrap());
            prop_assert!(status.is_success() || status.is_client_error(), "{status}");
            if !status.is_success() {
                prop_assert_eq!(&json["accepted"], &serde_json::Value::Bool(false));
                prop_assert!(json["error"]["code"].is_string());
            }
        }

        /// Arbitrary paths and methods never crash the router.
        #[test]
        fn arbitrary_paths_are_answered(path in "/[a-z/%?=&._-]{0,40}", delete in any::<bool>()) {
            let method = if delete { Method::DELETE } else { Method::GET };
            if let Ok(request) = Request::builder().method(method).uri(path.as_str()).body(Body::empty()) {
                let (status, _) = send(request);
                prop_assert!(!status.is_server_error(), "{path}: {status}");
            }
        }
    }
}
