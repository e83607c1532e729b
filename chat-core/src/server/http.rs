//! HTTP file upload (XEP-0363), the HTTP half: the server's own listener,
//! which takes a slot's file (PUT) and gives it back (GET). It runs on the
//! same transport as the chat's direct TLS: plain HTTP on `chat-plain`
//! (deliberately: the sniffer rebuilds the file), HTTPS with the chat's
//! certificate on `chat-tls`. Its slots come from [`super::upload`].
//!
//! Whoever holds a slot's URL may use it: the token in it is the only key
//! (XEP-0363 section 7), 32 random bytes. So every refusal is the same
//! for a token that never existed and for one that expired or belongs to
//! someone else's file, and nothing lists the files.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::Shared;
use super::upload::{file_path, remove_files};
use crate::storage::{
    Upload, upload_claim, upload_done, upload_expire, upload_get, upload_release,
};
use crate::transport::{IdleStream, ServerTransport};
use crate::util::unix_now;

/// TLS handshakes (or plain accepts) waited on at once; more connections
/// wait in the kernel's backlog. A client that never finishes its
/// handshake is dropped after [`HANDSHAKE_TIMEOUT`].
const PENDING: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP connections open at once; more wait in the backlog. With
/// [`IDLE_TIMEOUT`] this bounds what a slow-loris client (a request line
/// a byte a minute, or a PUT that stalls) can hold: descriptors the chat
/// listener shares.
const MAX_CONNECTIONS: usize = 256;
/// A connection that moves no byte either way for this long is closed
/// (and its permit returned).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The listener as axum sees it: connections that went through the
/// transport (TLS or not), handshakes run side by side so that one slow
/// client does not hold up the others.
struct Accepted<T: ServerTransport> {
    tcp: TcpListener,
    transport: Arc<T>,
    pending: JoinSet<Option<(IdleStream, SocketAddr)>>,
    open: Arc<tokio::sync::Semaphore>,
}

impl<T: ServerTransport> axum::serve::Listener for Accepted<T> {
    type Io = IdleStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (IdleStream, SocketAddr) {
        loop {
            // A connection's permit is taken before it is accepted: at the
            // cap, new ones wait in the kernel's backlog.
            let permit = match self.open.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => std::future::pending().await,
            };
            tokio::select! {
                accepted = self.tcp.accept(), if self.pending.len() < PENDING => {
                    let Ok((tcp, peer)) = accepted else {
                        // EMFILE and friends: back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    let transport = self.transport.clone();
                    self.pending.spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, transport.accept(tcp, peer)).await {
                            // The permit lives as long as the stream.
                            Ok(Ok((io, _))) => {
                                Some((IdleStream::new(io, IDLE_TIMEOUT).holding(permit), peer))
                            }
                            Ok(Err(e)) => {
                                tracing::info!(%peer, "upload: connection setup failed: {e}");
                                None
                            }
                            Err(_) => None,
                        }
                    });
                }
                Some(done) = self.pending.join_next() => {
                    if let Ok(Some(ready)) = done {
                        return ready;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Serves uploads on `listener` through `transport` until `shutdown`, and
/// drops unused slots as they expire.
pub async fn serve<T: ServerTransport>(
    shared: Arc<Shared>,
    listener: TcpListener,
    transport: Arc<T>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let sweeper = tokio::spawn(sweep(shared.clone()));
    let app = Router::new()
        .route("/upload/{token}/{name}", get(fetch).put(store))
        .with_state(shared);
    let listener = Accepted {
        tcp: listener,
        transport,
        pending: JoinSet::new(),
        open: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!("upload: the HTTP listener failed: {e}");
    }
    sweeper.abort();
}

/// Every minute, slots never used are dropped with what they left.
async fn sweep(shared: Arc<Shared>) {
    let Some(up) = shared.config.upload.clone() else {
        return;
    };
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let before = unix_now() - up.expiry.as_secs() as i64;
        match shared.storage.run(move |c| upload_expire(c, before)).await {
            Ok(gone) => remove_files(&shared.config.data_dir, &gone),
            Err(e) => tracing::error!("upload: {e}"),
        }
    }
}

/// A refusal: a status and one line saying why.
fn refuse(status: StatusCode, why: &str) -> Response {
    (status, format!("{why}\n")).into_response()
}

/// The slot named by a URL, if it is one: the token known and the name
/// the one it was given with.
async fn slot(shared: &Shared, token: &str, name: &str) -> Result<Upload, Response> {
    let t = token.to_string();
    let found = shared
        .storage
        .run(move |c| upload_get(c, &t))
        .await
        .map_err(|e| {
            tracing::error!("upload: {e}");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "storage failed")
        })?;
    match found {
        Some(u) if u.name == name => Ok(u),
        _ => Err(refuse(StatusCode::NOT_FOUND, "no such file")),
    }
}

/// PUT: the slot's file, exactly as long as announced, written to a
/// temporary file and moved into place only when whole, so a reader never
/// sees half a file and a dropped upload leaves nothing behind.
async fn store(
    State(shared): State<Arc<Shared>>,
    Path((token, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let up = match slot(&shared, &token, &name).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let expiry = shared
        .config
        .upload
        .as_ref()
        .map_or(0, |c| c.expiry.as_secs() as i64);
    if up.done {
        return refuse(StatusCode::CONFLICT, "this slot was used already");
    }
    if up.created < unix_now() - expiry {
        return refuse(StatusCode::GONE, "this slot expired; ask for another");
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match length {
        Some(n) if n > up.size => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the slot is for {} bytes, not {n}", up.size),
            );
        }
        Some(n) if n != up.size => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("the slot is for {} bytes, not {n}", up.size),
            );
        }
        Some(_) => {}
        None => return refuse(StatusCode::LENGTH_REQUIRED, "Content-Length is required"),
    }
    if let Some(t) = headers.get(header::CONTENT_TYPE)
        && t.as_bytes() != up.content_type.as_bytes()
        && up.content_type != "application/octet-stream"
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            &format!("the slot is for a file of type {}", up.content_type),
        );
    }
    // One upload per slot at a time: two PUTs racing on it, one wins, and
    // the loser never touches the winner's file.
    let t = up.token.clone();
    match shared.storage.run(move |c| upload_claim(c, &t)).await {
        Ok(true) => {}
        Ok(false) => return refuse(StatusCode::CONFLICT, "this slot is being uploaded to"),
        Err(e) => {
            tracing::error!("upload: {e}");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "storage failed");
        }
    }
    let path = file_path(&shared.config.data_dir, &up.token);
    let part = path.with_extension("part");
    let kept = match write_part(&part, body, up.size).await {
        Ok(()) => tokio::fs::rename(&part, &path).await.map_err(|e| {
            tracing::error!("upload: cannot keep a stored file: {e}");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "cannot keep the file")
        }),
        Err(r) => Err(r),
    };
    let t = up.token.clone();
    if let Err(r) = kept {
        // Nothing kept, and the slot open again: the client may retry.
        let _ = tokio::fs::remove_file(&part).await;
        if let Err(e) = shared.storage.run(move |c| upload_release(c, &t)).await {
            tracing::error!("upload: {e}");
        }
        return r;
    }
    match shared.storage.run(move |c| upload_done(c, &t)).await {
        Ok(true) => {
            tracing::info!(owner = %up.owner, bytes = up.size, "upload: file stored");
            StatusCode::CREATED.into_response()
        }
        Ok(false) => {
            // Swept meanwhile (the server was killed mid-upload an hour ago).
            let _ = tokio::fs::remove_file(&path).await;
            refuse(StatusCode::GONE, "this slot expired; ask for another")
        }
        Err(e) => {
            tracing::error!("upload: {e}");
            let _ = tokio::fs::remove_file(&path).await;
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "storage failed")
        }
    }
}

/// The body into `part`, refused as soon as it is longer than `size` (a
/// lying Content-Length cannot fill the disk) or when it ends short.
async fn write_part(part: &std::path::Path, mut body: Body, size: u64) -> Result<(), Response> {
    let failed = |e: std::io::Error| {
        tracing::error!("upload: cannot write {}: {e}", part.display());
        refuse(StatusCode::INTERNAL_SERVER_ERROR, "cannot write the file")
    };
    if let Some(dir) = part.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(failed)?;
    }
    // The slot is claimed: no other PUT writes here. A leftover of a
    // server killed mid-upload is written over.
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(part)
        .await
        .map_err(failed)?;
    let mut got = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| refuse(StatusCode::BAD_REQUEST, "the upload broke off"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        got += data.len() as u64;
        if got > size {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the slot is for {size} bytes"),
            ));
        }
        file.write_all(&data).await.map_err(failed)?;
    }
    if got != size {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            &format!("the upload ended after {got} of {size} bytes"),
        ));
    }
    // On disk before the slot says "done": a crash cannot leave a slot
    // pointing at a file that was never written.
    file.sync_all().await.map_err(failed)?;
    Ok(())
}

/// GET (and HEAD): the file, with its type, never run by a browser as a
/// page of this origin (an uploaded HTML file would otherwise be a stored
/// cross-site scripting attack).
async fn fetch(
    State(shared): State<Arc<Shared>>,
    Path((token, name)): Path<(String, String)>,
) -> Response {
    let up = match slot(&shared, &token, &name).await {
        Ok(u) if u.done => u,
        Ok(_) => return refuse(StatusCode::NOT_FOUND, "no such file"),
        Err(r) => return r,
    };
    // Streamed, a chunk at a time: many readers of a big file do not each
    // hold all of it in memory.
    let file = match tokio::fs::File::open(file_path(&shared.config.data_dir, &up.token)).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("upload: cannot read a stored file of {}: {e}", up.owner);
            return refuse(StatusCode::NOT_FOUND, "no such file");
        }
    };
    let chunks = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let ctype = HeaderValue::from_str(&up.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    (
        [
            (header::CONTENT_TYPE, ctype),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; sandbox"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(up.size)),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}
