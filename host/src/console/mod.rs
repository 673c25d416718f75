//! The web console: one page, its scripts (ES modules, one per page of the
//! console) and its style sheet, embedded in the binary and served at `/`
//! (`api.console`). The page holds no data of
//! its own; it reads and acts through the node's API with the key the
//! operator types in, kept in the browser tab's session storage, so it is
//! bound by the same key and Host checks as any other client. A strict
//! Content-Security-Policy lets it load nothing but these files and talk to
//! nothing but this node.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const PAGE: &str = include_str!("assets/index.html");

/// The files under `/console/`: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    ("console.css", CSS, include_str!("assets/console.css")),
    ("main.js", JS, include_str!("assets/main.js")),
    ("api.js", JS, include_str!("assets/api.js")),
    ("dom.js", JS, include_str!("assets/dom.js")),
    ("view.js", JS, include_str!("assets/view.js")),
    ("node.js", JS, include_str!("assets/node.js")),
    ("jobs.js", JS, include_str!("assets/jobs.js")),
    ("job.js", JS, include_str!("assets/job.js")),
    ("submit.js", JS, include_str!("assets/submit.js")),
    ("charts.js", JS, include_str!("assets/charts.js")),
];
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Only the node's own script and style, requests only to the node, never
/// inside a frame, no inline code.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; form-action 'none'; base-uri 'none'; \
    frame-ancestors 'none'";

/// The console's routes: `/` and its assets under `/console/`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(
        Router::new().route(
            "/",
            get(|| async { asset(PAGE, "text/html; charset=utf-8") }),
        ),
        |router, &(name, content_type, body)| {
            router.route(
                &format!("/console/{name}"),
                get(move || async move { asset(body, content_type) }),
            )
        },
    )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn fetch(path: &str) -> Response {
        routes::<()>()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_under_a_strict_policy() {
        let mut paths = vec![("/".to_string(), "text/html")];
        for (name, content_type, _) in ASSETS {
            paths.push((
                format!("/console/{name}"),
                content_type.split(';').next().unwrap(),
            ));
        }
        for (path, kind) in paths {
            let response = fetch(&path).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let headers = response.headers();
            assert!(
                headers[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with(kind)
            );
            let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(policy.contains("script-src 'self'"), "{policy}");
            assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        assert_eq!(
            fetch("/console/other.js").await.status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn the_page_loads_only_its_own_assets_and_no_inline_script() {
        assert!(PAGE.contains(r#"<script type="module" src="/console/main.js">"#));
        assert!(PAGE.contains(r#"href="/console/console.css""#));
        assert!(
            !PAGE.contains("<script>"),
            "inline scripts break the policy"
        );
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
        for (name, _, body) in ASSETS {
            assert!(
                !body.contains("innerHTML"),
                "{name}: text goes in as text, never as markup"
            );
            for imported in body.lines().filter_map(|l| l.split(" from \"./").nth(1)) {
                let file = imported.trim_end_matches("\";");
                assert!(
                    ASSETS.iter().any(|(n, _, _)| *n == file),
                    "{name} imports {file}, which is not served"
                );
            }
        }
    }
}
