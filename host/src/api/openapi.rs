//! The API's OpenAPI document (`GET /openapi.json`). The paths come from
//! the handlers themselves (`#[utoipa::path]`, collected as the routes are
//! registered, so a route cannot be served undocumented), the schemas from
//! the request types; this module adds what no handler says: the title,
//! the key, and the one route axum spells differently (a file path of any
//! depth).

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wasmnode",
        description = "The wasmnode job API: Job Protocol v1 and its extensions, the Vera-style task API, and the node's facts. Every route but `/health`, `/openapi.json` and the console's pages needs the API key when one is set. MCP is served at `POST /mcp` (Streamable HTTP, described by MCP itself).",
    ),
    paths(super::files::get),
    modifiers(&Key),
    security(("api_key" = []), ("bearer" = [])),
    tags(
        (name = "jobs", description = "Job Protocol v1: submit, follow, cancel, results, receipts"),
        (name = "files", description = "What a job wrote to its workspace"),
        (name = "blobs", description = "Uploaded source trees and components"),
        (name = "node", description = "What the node is, has and used"),
        (name = "vera", description = "The Vera-style task API"),
    )
)]
pub struct Base;

/// The API key, as a header or a bearer token.
struct Key;

impl utoipa::Modify for Key {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /openapi.json`: `document`, rendered once.
pub fn route<S: Clone + Send + Sync + 'static>(document: &utoipa::openapi::OpenApi) -> Router<S> {
    let body = Bytes::from(
        document
            .to_pretty_json()
            .expect("the OpenAPI document renders"),
    );
    Router::new().route(
        "/openapi.json",
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    )
}
