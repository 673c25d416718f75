//! The Model Context Protocol front door: the node's tools served to LLM
//! agents over stdio (`wasmnode mcp`) and Streamable HTTP (`/mcp` on
//! `wasmnode serve`, behind the API's key and Host/Origin checks). Every
//! call is a job in the node's own store, run in a fresh sandbox with the
//! directories the operator mounted (`[mcp]`, in `settings`); the protocol
//! itself is the `rmcp` crate's.

mod server;
pub mod settings;

pub use server::ToolServer;

use crate::api::{AppState, FrontDoor};
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;

/// `/mcp` on the API's port.
pub struct McpDoor {
    server: ToolServer,
    max_body_bytes: usize,
}

impl McpDoor {
    /// Serves `server`'s tools; request bodies up to `max_body_bytes`.
    pub fn new(server: ToolServer, max_body_bytes: usize) -> Self {
        Self {
            server,
            max_body_bytes,
        }
    }
}

impl FrontDoor for McpDoor {
    fn routes(&self) -> OpenApiRouter<AppState> {
        let mut config = StreamableHttpServerConfig::default();
        // The API's own guard checks Host and Origin for every route.
        config.allowed_hosts = Vec::new();
        config.max_request_body_bytes = self.max_body_bytes;
        let server = self.server.clone();
        let service = StreamableHttpService::new(
            move || Ok(server.clone()),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        // MCP describes itself (`tools/list`); the API's document names it.
        OpenApiRouter::new().route_service("/mcp", service)
    }
}

/// Serves MCP on stdin/stdout until the client closes them.
pub async fn serve_stdio(server: ToolServer) -> Result<(), rmcp::RmcpError> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(rmcp::RmcpError::from)?;
    running.waiting().await.map_err(rmcp::RmcpError::from)?;
    Ok(())
}
