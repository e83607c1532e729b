//! The client's HTTP, for shared files (XEP-0363): one PUT to upload a
//! file to its slot, one GET to download a file shared with us. Both run
//! over the twin's own transport ([`WebConnector`]): plain TCP in
//! `chat-plain` (deliberately: the sniffer rebuilds the file), TLS checked
//! like the chat in `chat-tls`. hyper speaks the HTTP.
//!
//! A URL comes from someone else (the server's slot, or the sender of a
//! shared file), so nothing in it is trusted: the scheme must be the
//! twin's own, redirects are not followed (a redirect could send the
//! client anywhere, or from https to http), and a download stops at the
//! size limit whatever the server announced.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use tokio::io::AsyncReadExt;

use super::progress::Progress;
use crate::client::error::ClientError;
use crate::client::event::EventSender;
use crate::transport::{IdleStream, WebConnector};

/// Connecting (TCP and TLS) may take this long.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// A connection that moves nothing for this long fails (a server that
/// stops reading an upload, or stops sending a download).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The bytes of an error page kept for the user.
const MAX_ERROR_TEXT: usize = 300;
/// Bytes read from the file per body frame.
const CHUNK: usize = 64 * 1024;

/// A request body: a file being sent, or nothing.
type Body = BoxBody<Bytes, std::io::Error>;

/// A shared file's URL, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WebUrl {
    /// The URL as given (for messages).
    pub(crate) url: String,
    /// The host, without the brackets of an IPv6 address: what TLS
    /// checks the certificate against.
    host: String,
    /// `host:port` to connect to.
    addr: String,
    /// The `Host` header.
    authority: String,
    /// Path and query.
    path: String,
    /// The last path segment, percent-decoded: the file's name as the URL
    /// gives it (made safe before it names anything on disk).
    pub(crate) name: String,
}

impl WebUrl {
    /// The host (an IPv6 address without its brackets).
    pub(crate) fn host(&self) -> &str {
        &self.host
    }
}

/// Parses `url` for a twin whose one scheme is `scheme` (`http` or
/// `https`).
pub(crate) fn parse_url(url: &str, scheme: &str) -> Result<WebUrl, ClientError> {
    let bad = |reason: String| ClientError::Http {
        url: url.to_string(),
        reason,
    };
    let uri: Uri = url
        .trim()
        .parse()
        .map_err(|e| bad(format!("not a URL ({e})")))?;
    let given = uri.scheme_str().unwrap_or("");
    if !given.eq_ignore_ascii_case(scheme) {
        return Err(bad(match (given, scheme) {
            ("http", "https") => "a plain http:// URL: the TLS twin never moves a file unencrypted, where anyone on the path could read or swap it".into(),
            ("https", "http") => "an https:// URL: the plaintext twin cannot do TLS (use chat-tls)".into(),
            _ => format!("only {scheme}:// URLs are fetched"),
        }));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| bad("no host in the URL".into()))?;
    if authority.as_str().contains('@') {
        // user:password@host: credentials in a URL someone else chose.
        return Err(bad("a URL with a user name in it".into()));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(bad("no host in the URL".into()));
    }
    let port = authority
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let path = uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    let last = uri.path().rsplit('/').next().unwrap_or("");
    let name = percent_encoding::percent_decode_str(last)
        .decode_utf8_lossy()
        .into_owned();
    Ok(WebUrl {
        url: url.trim().to_string(),
        host,
        addr,
        authority: authority.as_str().to_string(),
        path,
        name,
    })
}

/// Sends one request on a new connection and returns the response head;
/// its body streams from the connection, which lives until the body is
/// read or dropped.
async fn send(
    web: &dyn WebConnector,
    url: &WebUrl,
    request: hyper::http::request::Builder,
    body: Body,
) -> Result<Response<Incoming>, ClientError> {
    let fail = |reason: String| ClientError::Http {
        url: url.url.clone(),
        reason,
    };
    let stream = tokio::time::timeout(OPEN_TIMEOUT, web.open(&url.addr, &url.host))
        .await
        .map_err(|_| fail("connecting timed out".into()))?
        .map_err(|e| fail(e.to_string()))?;
    let io = hyper_util::rt::TokioIo::new(IdleStream::new(stream, IDLE_TIMEOUT));
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Body>(io)
        .await
        .map_err(|e| fail(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("file transfer connection: {e}");
        }
    });
    let request = request
        .uri(url.path.as_str())
        .header(HOST, url.authority.as_str())
        .body(body)
        .map_err(|e| fail(e.to_string()))?;
    sender
        .send_request(request)
        .await
        .map_err(|e| fail(describe(&e)))
}

/// A hyper error in words, with its cause (a timeout, a reset).
fn describe(e: &hyper::Error) -> String {
    use std::error::Error;
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// A refusal's status and the start of its text.
async fn refusal(url: &WebUrl, response: Response<Incoming>) -> ClientError {
    let status = response.status();
    let location = response
        .headers()
        .get(hyper::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::to_string);
    let mut text = Vec::new();
    let mut body = response.into_body();
    // The page, for at most a few seconds: a server trickling it must not
    // hold the transfer.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while text.len() < MAX_ERROR_TEXT {
            match body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        text.extend_from_slice(&d);
                    }
                }
                _ => break,
            }
        }
    })
    .await;
    text.truncate(MAX_ERROR_TEXT);
    let text = protocol::display::terminal_safe(String::from_utf8_lossy(&text).trim()).into_owned();
    let mut reason = format!("the server answered {status}");
    if let Some(to) = location.filter(|_| status.is_redirection()) {
        reason.push_str(&format!(
            ", a redirect to {}, which is not followed",
            protocol::display::terminal_safe(&to)
        ));
    }
    if !text.is_empty() {
        reason.push_str(&format!(" ({text})"));
    }
    ClientError::Http {
        url: url.url.clone(),
        reason,
    }
}

/// Uploads `path` (`size` bytes) to a slot's PUT URL, with the headers
/// the slot asked for.
pub(crate) async fn put(
    web: &dyn WebConnector,
    url: &WebUrl,
    headers: &[(String, String)],
    path: &Path,
    size: u64,
    progress: Option<(Progress, EventSender)>,
) -> Result<(), ClientError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|source| ClientError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
    let chunks = futures_util::stream::unfold(
        (file, 0u64, progress),
        |(mut file, sent, mut progress)| async move {
            let mut buf = vec![0u8; CHUNK];
            let k = match file.read(&mut buf).await {
                Ok(0) => return None,
                Ok(k) => k,
                Err(e) => return Some((Err(e), (file, sent, progress))),
            };
            buf.truncate(k);
            let sent = sent + k as u64;
            if let Some((p, events)) = &mut progress {
                p.update(sent, events);
            }
            Some((Ok(Frame::data(Bytes::from(buf))), (file, sent, progress)))
        },
    );
    let mut request = Request::builder()
        .method(Method::PUT)
        .header(CONTENT_LENGTH, size)
        .header(CONTENT_TYPE, "application/octet-stream");
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            request = request.header(n, v);
        }
    }
    let response = send(web, url, request, StreamBody::new(chunks).boxed()).await?;
    if response.status() == StatusCode::CREATED || response.status() == StatusCode::OK {
        Ok(())
    } else {
        Err(refusal(url, response).await)
    }
}

/// Starts downloading a shared file: the response once it says 200 and a
/// size within `max`. Its body is read by the caller, which counts the
/// bytes against `max` again (a length is only what the server claims).
pub(crate) async fn get(
    web: &dyn WebConnector,
    url: &WebUrl,
    max: u64,
) -> Result<(Option<u64>, Incoming), ClientError> {
    let response = send(
        web,
        url,
        Request::builder().method(Method::GET),
        Empty::new().map_err(|never| match never {}).boxed(),
    )
    .await?;
    if response.status() != StatusCode::OK {
        return Err(refusal(url, response).await);
    }
    let length = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = length.filter(|n| *n > max) {
        return Err(ClientError::Http {
            url: url.url.clone(),
            reason: format!(
                "the file is {n} bytes, larger than the {max} bytes this client accepts"
            ),
        });
    }
    Ok((length, response.into_body()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_address_host_path_and_name() {
        let u = parse_url("https://127.0.0.1:5443/upload/AbC/my%20report.pdf", "https").unwrap();
        assert_eq!(u.addr, "127.0.0.1:5443");
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.authority, "127.0.0.1:5443");
        assert_eq!(u.path, "/upload/AbC/my%20report.pdf");
        assert_eq!(u.name, "my report.pdf");
        let v6 = parse_url("http://[::1]/f/x.txt?v=1", "http").unwrap();
        assert_eq!(v6.addr, "[::1]:80");
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.path, "/f/x.txt?v=1");
        assert_eq!(v6.name, "x.txt");
    }

    #[test]
    fn each_twin_takes_only_its_own_scheme() {
        let e = parse_url("http://127.0.0.1/f", "https").unwrap_err();
        assert!(
            e.to_string().contains("never moves a file unencrypted"),
            "{e}"
        );
        let e = parse_url("https://127.0.0.1/f", "http").unwrap_err();
        assert!(e.to_string().contains("cannot do TLS"), "{e}");
        for bad in [
            "file:///etc/passwd",
            "ftp://127.0.0.1/f",
            "https://user:pw@127.0.0.1/f",
            "not a url",
            "/relative/path",
        ] {
            assert!(parse_url(bad, "https").is_err(), "{bad}");
        }
    }
}
