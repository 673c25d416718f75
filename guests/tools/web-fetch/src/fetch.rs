//! One fetch through `wasi:http/outgoing-handler`: the request, redirects
//! (each hop a new request the host checks again), and the body read up to
//! the caller's limit.

use crate::url::Url;
use crate::{Args, FetchError, Method};
use std::collections::BTreeMap;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method as HttpMethod, OutgoingBody,
    OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

/// Most redirects followed.
const MAX_REDIRECTS: usize = 5;
/// Most bytes asked of the body stream at once.
const CHUNK: u64 = 64 << 10;
/// Most bytes written to the request body at once (WASI's own limit).
const WRITE_CHUNK: usize = 4096;

/// What came back.
pub struct Response {
    /// The URL that answered (after redirects).
    pub url: String,
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Whether the body was cut at `max_bytes`.
    pub truncated: bool,
}

/// Sends the request `args` describe and follows redirects.
pub fn fetch(args: &Args) -> Result<Response, FetchError> {
    let mut url = Url::parse(&args.url)?;
    let mut method = args.method;
    let mut body = args.body.as_deref();
    for _ in 0..=MAX_REDIRECTS {
        let response = send(&url, method, &args.headers, body, args.timeout_ms)?;
        let status = response.status();
        let headers = response.headers();
        if let (301 | 302 | 303 | 307 | 308, Some(location)) =
            (status, header(&headers, "location"))
        {
            drop(headers);
            drop(response);
            url = url.join(&location)?;
            if status == 303 || (method == Method::Post && matches!(status, 301 | 302)) {
                method = Method::Get;
                body = None;
            }
            continue;
        }
        let content_type = header(&headers, "content-type").unwrap_or_default();
        drop(headers);
        let (body, truncated) = read_body(response, args.max_bytes)?;
        return Ok(Response {
            url: url.to_string(),
            status,
            content_type,
            body,
            truncated,
        });
    }
    Err(FetchError::Failed(format!(
        "more than {MAX_REDIRECTS} redirects; the last pointed to {url}"
    )))
}

fn send(
    url: &Url,
    method: Method,
    headers: &BTreeMap<String, String>,
    body: Option<&str>,
    timeout_ms: u64,
) -> Result<IncomingResponse, FetchError> {
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(&name.to_ascii_lowercase(), value.as_bytes())
            .map_err(|e| FetchError::Invalid(format!("header `{name}` cannot be sent: {e:?}")))?;
    }
    let request = OutgoingRequest::new(fields);
    let invalid = |what: &str| FetchError::Invalid(format!("url `{url}`: invalid {what}"));
    let http_method = match method {
        Method::Get => HttpMethod::Get,
        Method::Post => HttpMethod::Post,
    };
    request
        .set_method(&http_method)
        .map_err(|_| invalid("method"))?;
    let scheme = if url.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    request
        .set_scheme(Some(&scheme))
        .map_err(|_| invalid("scheme"))?;
    request
        .set_authority(Some(&url.authority))
        .map_err(|_| invalid("host"))?;
    request
        .set_path_with_query(Some(&url.path))
        .map_err(|_| invalid("path"))?;
    let outgoing = request
        .body()
        .map_err(|_| FetchError::Failed("the request body was already taken".into()))?;
    let options = RequestOptions::new();
    let wait = Some(timeout_ms.saturating_mul(1_000_000));
    // A host that does not let a guest set a wait keeps its own.
    let _ = options.set_connect_timeout(wait);
    let _ = options.set_first_byte_timeout(wait);
    let _ = options.set_between_bytes_timeout(wait);
    let future = outgoing_handler::handle(request, Some(options)).map_err(error)?;
    // The body goes out once the request is under way; a refused request
    // closes it, and the refusal (below) says why.
    let written = write_body(&outgoing, body.unwrap_or_default().as_bytes());
    let finished = OutgoingBody::finish(outgoing, None);
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(e))) => return Err(error(e)),
        Some(Err(())) | None => {
            return Err(FetchError::Failed("the response was lost".into()));
        }
    };
    written?;
    finished.map_err(error)?;
    Ok(response)
}

fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), FetchError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let stream = body
        .write()
        .map_err(|_| FetchError::Failed("the request body stream was already taken".into()))?;
    for chunk in bytes.chunks(WRITE_CHUNK) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|e| FetchError::Failed(format!("sending the request body failed: {e:?}")))?;
    }
    Ok(())
}

/// The body, cut at `max` bytes (and whether it was).
fn read_body(response: IncomingResponse, max: u64) -> Result<(Vec<u8>, bool), FetchError> {
    let failed = |what: &str| FetchError::Failed(format!("reading the response failed: {what}"));
    let body = response
        .consume()
        .map_err(|_| failed("the body was already taken"))?;
    let stream = body.stream().map_err(|_| failed("no body stream"))?;
    let mut out = Vec::new();
    loop {
        let want = (max + 1 - out.len() as u64).min(CHUNK);
        match stream.blocking_read(want) {
            Ok(bytes) => {
                out.extend_from_slice(&bytes);
                if out.len() as u64 > max {
                    out.truncate(max as usize);
                    return Ok((out, true));
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                let why = wasip2::http::types::http_error_code(&e)
                    .map(|code| describe(&code))
                    .unwrap_or_else(|| e.to_debug_string());
                return Err(failed(&why));
            }
        }
    }
    drop(stream);
    let _ = IncomingBody::finish(body);
    Ok((out, false))
}

/// The first value of header `name`, as text.
fn header(headers: &Fields, name: &str) -> Option<String> {
    headers
        .get(name)
        .into_iter()
        .next()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

fn error(e: ErrorCode) -> FetchError {
    match e {
        ErrorCode::HttpRequestDenied => FetchError::Denied(
            "the node does not grant this tool that host ([tools.web_fetch] allowed_hosts)".into(),
        ),
        ErrorCode::DestinationIpProhibited => FetchError::Denied(
            "the host resolves to an address the node does not let tools reach".into(),
        ),
        other => FetchError::Failed(describe(&other)),
    }
}

fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::HttpResponseBodySize(Some(cap)) => {
            format!("the response body is over the node's cap of {cap} bytes")
        }
        ErrorCode::ConnectionRefused => "the connection was refused".into(),
        ErrorCode::ConnectionTimeout => "the connection timed out".into(),
        ErrorCode::ConnectionReadTimeout => "the server stopped answering".into(),
        ErrorCode::DnsError(_) | ErrorCode::DestinationNotFound => {
            "the host name does not resolve".into()
        }
        other => format!("{other:?}"),
    }
}
