//! Sends one outbound request of a tool: checks the host against the grant,
//! resolves it and checks every address, connects to a checked address (the
//! name is never looked up again), speaks HTTP/1.1 (over TLS for `https`,
//! trusting what every client of the node trusts: `crate::tls`), and caps
//! both bodies and every wait.

use super::Report;
use crate::outbound::HttpGrant;
use bytes::Bytes;
use http::uri::Scheme;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::future::{Future, poll_fn};
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// The response, and the future that drives the connection to its end.
pub type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// Sends `request` for `tool` under `grant`, telling `report` of refusals.
pub async fn send(
    tool: String,
    grant: Option<Arc<HttpGrant>>,
    report: Report,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<Sent, Error> {
    let uri = request.uri().clone();
    let https = uri.scheme() == Some(&Scheme::HTTPS);
    let default_port = if https { 443 } else { 80 };
    let host = uri
        .host()
        .ok_or(Error::HttpRequestUriInvalid)?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(default_port);
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let Some(grant) = grant.filter(|g| g.permits(&host, port, default_port)) else {
        report.deny(format!(
            "outbound HTTP to {target} is not granted to tool `{tool}` (the operator grants hosts in [tools.{tool}] allowed_hosts)"
        ));
        return Err(Error::HttpRequestDenied);
    };
    let limits = grant.limits;
    let cap = |asked: Option<Duration>| asked.map_or(limits.timeout(), |a| a.min(limits.timeout()));
    let options = options.unwrap_or_default();
    let connect_timeout = cap(options.connect_timeout);
    let first_byte_timeout = cap(options.first_byte_timeout);
    let between_bytes_timeout = cap(options.between_bytes_timeout).max(Duration::from_millis(1));

    let addresses = resolve(&host, port, connect_timeout).await?;
    if let Some(ip) = addresses
        .iter()
        .map(SocketAddr::ip)
        .find(|ip| !grant.may_connect(&host, *ip))
    {
        report.deny(format!(
            "outbound HTTP to {target} is refused: it resolves to {ip}, which is not a public address (grant that address itself, or set [tools.{tool}] allow_private_addresses = true)"
        ));
        return Err(Error::DestinationIpProhibited);
    }
    let stream = connect(&addresses, connect_timeout).await?;
    let stream: Box<dyn Stream> = if https {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| Error::HttpRequestUriInvalid)?;
        let tls = tokio_rustls::TlsConnector::from(crate::tls::rustls_config())
            .connect(name, stream)
            .await
            .map_err(Error::Tls)?;
        Box::new(tls)
    } else {
        Box::new(stream)
    };
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;

    // On the wire the request names only its path; the Host header carries
    // the authority.
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let over = |what: &str, setting: &str, cap: u64| {
        Some((
            report.clone(),
            format!("the {what} body for {target} passed [tools.{tool}.http] {setting} = {cap}"),
        ))
    };
    let request = request.map(|body| {
        let mut body = Capped::new(
            body,
            limits.max_request_bytes,
            None,
            Error::HttpRequestBodySize,
        );
        body.tell = over("request", "max_request_bytes", limits.max_request_bytes);
        body.boxed_unsync()
    });
    let tell = over("response", "max_response_bytes", limits.max_response_bytes);

    let send = async move {
        let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
            .await
            .map_err(|_| Error::ConnectionReadTimeout)??;
        Ok::<_, Error>(response.map(|body| {
            let mut body = Capped::new(
                body.map_err(Error::from),
                limits.max_response_bytes,
                Some(between_bytes_timeout),
                Error::HttpResponseBodySize,
            );
            body.tell = tell;
            body.boxed_unsync()
        }))
    };
    // Drive the connection while waiting for the response head.
    let mut send = pin!(send);
    let mut conn = Some(conn);
    let response = poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(result) => Poll::Ready(result),
        Poll::Pending => {
            let Some(running) = conn.as_mut() else {
                return Poll::Pending;
            };
            let done = ready!(Pin::new(running).poll(cx));
            conn = None;
            match done {
                Ok(()) => send.as_mut().poll(cx),
                Err(e) => Poll::Ready(Err(Error::from(e))),
            }
        }
    })
    .await?;
    let rest = async move {
        match conn {
            Some(conn) => conn.await.map_err(Error::from),
            None => Ok(()),
        }
    };
    Ok((response, Box::new(rest)))
}

/// A connection the client speaks HTTP over.
trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// Every address `host` has (an IP address stands for itself).
async fn resolve(host: &str, port: u16, wait: Duration) -> Result<Vec<SocketAddr>, Error> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found = tokio::time::timeout(wait, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| Error::DnsTimeout)?
        .map_err(|e| Error::DnsError {
            rcode: Some(e.to_string()),
            info_code: None,
        })?
        .collect::<Vec<_>>();
    if found.is_empty() {
        return Err(Error::DestinationNotFound);
    }
    Ok(found)
}

/// A connection to the first of `addresses` that answers within `wait`.
async fn connect(addresses: &[SocketAddr], wait: Duration) -> Result<TcpStream, Error> {
    let mut last = Error::ConnectionRefused;
    for address in addresses {
        match tokio::time::timeout(wait, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = Error::Connect(e),
            Err(_) => last = Error::ConnectionTimeout,
        }
    }
    Err(last)
}

/// A body that fails once it has carried more than `cap` bytes (telling the
/// report, when `tell` is set), and, when `idle` is set, once no part of it
/// has come for that long.
struct Capped<B> {
    inner: B,
    left: u64,
    cap: u64,
    over: fn(Option<u64>) -> Error,
    idle: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
    tell: Option<(Report, String)>,
}

impl<B> Capped<B> {
    fn new(inner: B, cap: u64, idle: Option<Duration>, over: fn(Option<u64>) -> Error) -> Self {
        Self {
            inner,
            left: cap,
            cap,
            over,
            idle: idle.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
            tell: None,
        }
    }
}

impl<B> Body for Capped<B>
where
    B: Body<Data = Bytes, Error = Error> + Unpin,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.left {
                        this.left = 0;
                        if let Some((report, what)) = this.tell.take() {
                            report.limit(&what);
                        }
                        return Poll::Ready(Some(Err((this.over)(Some(this.cap)))));
                    }
                    this.left -= len;
                }
                if let Some((wait, sleep)) = this.idle.as_mut() {
                    sleep.as_mut().reset(tokio::time::Instant::now() + *wait);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match this.idle.as_mut() {
                Some((_, sleep)) => {
                    ready!(sleep.as_mut().poll(cx));
                    Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
                }
                None => Poll::Pending,
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn full(text: &'static str) -> impl Body<Data = Bytes, Error = Error> + Unpin {
        Full::new(Bytes::from_static(text.as_bytes())).map_err(|never| match never {})
    }

    #[tokio::test]
    async fn a_body_within_its_cap_passes_whole() {
        let body = Capped::new(full("hello"), 5, None, Error::HttpResponseBodySize);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
    }

    #[tokio::test]
    async fn a_body_past_its_cap_fails_with_the_cap() {
        let body = Capped::new(full("hello!"), 5, None, Error::HttpResponseBodySize);
        let err = body.collect().await.unwrap_err();
        assert!(
            matches!(err, Error::HttpResponseBodySize(Some(5))),
            "{err:?}"
        );
    }
}
