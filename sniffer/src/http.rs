//! Plain HTTP/1.x, as a chat server's file upload speaks it (XEP-0363 on
//! `chat-plain`): each request's and each response's body is a file that
//! crossed the wire, rebuilt with its SHA-256 like an in-band one. The
//! request line matters too: an upload URL's token is the only key to the
//! file, so whoever reads the URL can fetch it again later.
//!
//! Headers are parsed by `httparse` (the parser hyper uses). Bodies are
//! delimited as RFC 9112 section 6 says: `Content-Length`, `chunked`, or,
//! for a response, the end of the connection. Memory is bounded: a body
//! is kept up to [`MAX_FILE_BYTES`], the rest counted and dropped.

use std::collections::VecDeque;

use crate::reassembly::Dir;
use crate::xmpp::{CarriedFile, MAX_FILE_BYTES};

/// Header bytes waited for before a message is given up on.
const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed per message.
const MAX_HEADERS: usize = 64;
/// Requests waiting for their answer (pipelining, or a capture that lost
/// the answers): beyond, the oldest is forgotten.
const MAX_ASKED: usize = 1024;

/// How a body ends.
#[derive(Debug)]
enum Body {
    /// After this many more bytes.
    Length(u64),
    /// Chunk by chunk: bytes left in this chunk, or a size line to read.
    Chunked { left: u64, trailer: bool },
    /// At the end of the connection (a response without a length).
    Close,
}

/// One direction: the bytes not read yet, and the message in progress.
#[derive(Debug, Default)]
struct Side {
    buf: Vec<u8>,
    /// A body being read: how it ends, its name and bytes so far.
    body: Option<(Body, CarriedFile, u64)>,
    /// Gave up on this direction (not HTTP after all).
    lost: bool,
}

/// One HTTP connection.
#[derive(Debug, Default)]
pub struct HttpConn {
    to_server: Side,
    to_client: Side,
    /// Targets of requests not answered yet, in order (pipelining).
    asked: VecDeque<(String, String)>,
    finished: Vec<CarriedFile>,
}

/// The last path segment of a target, without its query: the file name.
fn name_of(target: &str) -> String {
    let path = target.split(['?', '#']).next().unwrap_or("");
    path.rsplit('/').next().unwrap_or("").to_string()
}

impl HttpConn {
    /// Files whose body ended since last asked.
    pub fn take_finished(&mut self) -> Vec<CarriedFile> {
        std::mem::take(&mut self.finished)
    }

    /// The connection ended: a body read to its end is whole when it had
    /// no length; any other is cut short.
    pub fn finish(&mut self) {
        for dir in [Dir::ToServer, Dir::ToClient] {
            let side = dir.pick(&mut self.to_server, &mut self.to_client);
            if let Some((how, mut f, seen)) = side.body.take() {
                f.complete = matches!(how, Body::Close) && seen as usize == f.data.len();
                self.finished.push(f);
            }
        }
    }

    /// Bytes of one direction were never captured: its body so far is a
    /// file with a hole, and nothing after can be trusted to line up (a
    /// body's length would swallow the next message's head).
    pub fn gap(&mut self, dir: Dir) {
        let side = dir.pick(&mut self.to_server, &mut self.to_client);
        side.lost = true;
        side.buf = Vec::new();
        if let Some((_, mut f, _)) = side.body.take() {
            f.complete = false;
            f.missing_blocks += 1;
            self.finished.push(f);
        }
    }

    /// Bytes of one direction.
    pub fn feed(&mut self, dir: Dir, data: &[u8]) {
        let side = dir.pick(&mut self.to_server, &mut self.to_client);
        if side.lost {
            return;
        }
        side.buf.extend_from_slice(data);
        loop {
            let side = dir.pick(&mut self.to_server, &mut self.to_client);
            if side.body.is_some() {
                if !Self::body(side, &mut self.finished) {
                    return;
                }
                continue;
            }
            if side.buf.is_empty() {
                return;
            }
            match self.head(dir) {
                Some(true) => continue,
                Some(false) => return,
                None => {
                    let side = dir.pick(&mut self.to_server, &mut self.to_client);
                    side.lost = true;
                    side.buf = Vec::new();
                    return;
                }
            }
        }
    }

    /// Reads a message head: `Some(true)` when one was read, `Some(false)`
    /// when more bytes are needed, `None` when this is not HTTP.
    fn head(&mut self, dir: Dir) -> Option<bool> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let buf = &dir.pick(&self.to_server, &self.to_client).buf;
        let (used, name, sid, how) = match dir {
            Dir::ToServer => {
                let mut req = httparse::Request::new(&mut headers);
                let n = match req.parse(buf) {
                    Ok(httparse::Status::Complete(n)) => n,
                    Ok(httparse::Status::Partial) => {
                        return (buf.len() <= MAX_HEAD).then_some(false);
                    }
                    Err(_) => return None,
                };
                let method = req.method.unwrap_or("").to_string();
                let target = req.path.unwrap_or("").to_string();
                if self.asked.len() >= MAX_ASKED {
                    self.asked.pop_front();
                }
                self.asked.push_back((method.clone(), target.clone()));
                // A request without a length has no body (RFC 9112 6.3).
                let how = length(req.headers).unwrap_or(Body::Length(0));
                (n, name_of(&target), format!("http {method} {target}"), how)
            }
            Dir::ToClient => {
                let mut res = httparse::Response::new(&mut headers);
                let n = match res.parse(buf) {
                    Ok(httparse::Status::Complete(n)) => n,
                    Ok(httparse::Status::Partial) => {
                        return (buf.len() <= MAX_HEAD).then_some(false);
                    }
                    Err(_) => return None,
                };
                let code = res.code.unwrap_or(0);
                if (100..200).contains(&code) {
                    // An interim answer (100 Continue): the real one follows.
                    let side = dir.pick(&mut self.to_server, &mut self.to_client);
                    side.buf.drain(..n);
                    return Some(true);
                }
                let (method, target) = self.asked.pop_front().unwrap_or_default();
                let how = if method == "HEAD" || code == 204 || code == 304 {
                    Body::Length(0)
                } else {
                    length(res.headers).unwrap_or(Body::Close)
                };
                (
                    n,
                    name_of(&target),
                    format!("http {code} to {method} {target}"),
                    how,
                )
            }
        };
        let side = dir.pick(&mut self.to_server, &mut self.to_client);
        side.buf.drain(..used);
        if matches!(how, Body::Length(0)) {
            return Some(true);
        }
        let file = CarriedFile {
            sid,
            name,
            offered_size: match how {
                Body::Length(n) => Some(n),
                _ => None,
            },
            offered_sha256: None,
            data: Vec::new(),
            complete: false,
            missing_blocks: 0,
            duplicate_blocks: 0,
            reordered_blocks: 0,
        };
        side.body = Some((how, file, 0));
        Some(true)
    }

    /// Reads body bytes; true when the body ended (and more may follow).
    fn body(side: &mut Side, finished: &mut Vec<CarriedFile>) -> bool {
        let Some((how, file, seen)) = side.body.as_mut() else {
            return false;
        };
        let keep = |file: &mut CarriedFile, seen: &mut u64, bytes: &[u8]| {
            *seen += bytes.len() as u64;
            let room = MAX_FILE_BYTES.saturating_sub(file.data.len());
            file.data.extend_from_slice(&bytes[..bytes.len().min(room)]);
        };
        let done = match how {
            Body::Length(left) => {
                let take = (*left).min(side.buf.len() as u64) as usize;
                keep(file, seen, &side.buf[..take]);
                side.buf.drain(..take);
                *left -= take as u64;
                *left == 0
            }
            Body::Close => {
                keep(file, seen, &side.buf);
                side.buf.clear();
                false
            }
            Body::Chunked { left, trailer } => loop {
                if *left > 0 {
                    let take = (*left).min(side.buf.len() as u64) as usize;
                    keep(file, seen, &side.buf[..take]);
                    side.buf.drain(..take);
                    *left -= take as u64;
                    if *left > 0 {
                        break false;
                    }
                    // The CRLF after the chunk is read with the next line.
                }
                let Some(eol) = side.buf.windows(2).position(|w| w == b"\r\n") else {
                    if side.buf.len() > MAX_HEAD {
                        side.lost = true;
                    }
                    break false;
                };
                let line = String::from_utf8_lossy(&side.buf[..eol]).to_string();
                side.buf.drain(..eol + 2);
                if *trailer {
                    // Trailer fields, until an empty line.
                    if line.is_empty() {
                        break true;
                    }
                    continue;
                }
                if line.is_empty() {
                    continue; // the CRLF after a chunk's data
                }
                let size = line.split(';').next().unwrap_or("").trim();
                match u64::from_str_radix(size, 16) {
                    Ok(0) => *trailer = true,
                    Ok(n) => *left = n,
                    Err(_) => {
                        side.lost = true;
                        break false;
                    }
                }
            },
        };
        if (done || side.lost)
            && let Some((_, mut f, seen)) = side.body.take()
        {
            f.complete = done && seen as usize == f.data.len();
            finished.push(f);
        }
        done
    }
}

/// How a message's headers say its body ends, if they say.
fn length(headers: &[httparse::Header<'_>]) -> Option<Body> {
    let value = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    if value("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
        return Some(Body::Chunked {
            left: 0,
            trailer: false,
        });
    }
    value("content-length")
        .and_then(|v| v.parse().ok())
        .map(Body::Length)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(to_server: &[&[u8]], to_client: &[&[u8]]) -> Vec<CarriedFile> {
        let mut h = HttpConn::default();
        for (i, b) in to_server.iter().enumerate() {
            h.feed(Dir::ToServer, b);
            if let Some(r) = to_client.get(i) {
                h.feed(Dir::ToClient, r);
            }
        }
        h.finish();
        h.take_finished()
    }

    #[test]
    fn a_put_and_the_get_that_fetches_it_are_both_files() {
        let files = run(
            &[
                b"PUT /upload/TOKEN/photo.jpg HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123",
                b"456789GET /upload/TOKEN/photo.jpg HTTP/1.1\r\nHost: x\r\n\r\n",
            ],
            &[
                b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789",
            ],
        );
        assert_eq!(files.len(), 2, "{files:?}");
        for f in &files {
            assert_eq!(f.name, "photo.jpg");
            assert_eq!(f.data, b"0123456789");
            assert!(f.complete);
        }
        assert_eq!(files[0].sid, "http PUT /upload/TOKEN/photo.jpg");
        assert_eq!(files[1].sid, "http 200 to GET /upload/TOKEN/photo.jpg");
    }

    #[test]
    fn chunked_bodies_and_cut_ones() {
        let files = run(
            &[b"POST /a/b.txt?x=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;ext\r\nefg\r\n0\r\n\r\n"],
            &[],
        );
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, "b.txt");
        assert_eq!(files[0].data, b"abcdefg");
        assert!(files[0].complete);
        // The connection ends in the middle of a body: kept, not complete.
        let files = run(
            &[b"PUT /f HTTP/1.1\r\nContent-Length: 100\r\n\r\nhalf"],
            &[],
        );
        assert_eq!(files[0].data, b"half");
        assert!(!files[0].complete);
        // A response without a length runs to the end of the connection.
        let files = run(
            &[b"GET /g.bin HTTP/1.0\r\n\r\n"],
            &[b"HTTP/1.0 200 OK\r\n\r\nall of it"],
        );
        assert_eq!(files[0].data, b"all of it");
        assert!(files[0].complete);
        // A hole in a body: kept, not complete, nothing after it read.
        let mut h = HttpConn::default();
        h.feed(
            Dir::ToServer,
            b"PUT /f HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123",
        );
        h.gap(Dir::ToServer);
        h.feed(
            Dir::ToServer,
            b"PUT /g HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
        );
        h.finish();
        let files = h.take_finished();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(!files[0].complete && files[0].data == b"0123");
        // Not HTTP: nothing, and no panic.
        assert!(run(&[b"\x16\x03\x01 garbage \r\n\r\n"], &[]).is_empty());
    }
}
