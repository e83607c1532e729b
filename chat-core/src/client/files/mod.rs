//! File transfer, client to client: Stream Initiation (XEP-0095) with the
//! file-transfer profile (XEP-0096) offers the file and negotiates In-Band
//! Bytestreams (XEP-0047), which carry it base64-encoded in `<iq/>` stanzas
//! through the server.
//!
//! Receiving is where the danger is, so the receiver:
//! - saves only under its downloads folder, with the offered name reduced to
//!   one safe file name (a name like `../../etc/passwd` would otherwise write
//!   outside it: path traversal);
//! - never builds a path from the sender's stream id (`sid`): the partial
//!   file is named by a local counter, so a sid like `../../x` cannot steer
//!   it anywhere (path traversal again, through another field);
//! - never overwrites a file (`name (1)`, `name (2)`, ...);
//! - refuses files over its size limit before any byte arrives, and stops a
//!   sender that sends more than it announced (disk filling);
//! - checks the size and the SHA-256 the sender announced (XEP-0300) before
//!   the file appears under its final name.
//!
//! In `chat-plain`, every block crosses the network readable: the sniffer
//! reassembles whole files from the base64.
//!
//! Files also go through the server (HTTP file upload, XEP-0363), for a
//! contact who is offline or a room: `share`. The same defences guard what
//! is downloaded.
//!
//! - `names`: what a received file is called (the path-traversal defences).
//! - `progress`: progress events for large files.
//! - `disk`: reading the file to send (whole blocks, its SHA-256).
//! - `send`: offering a file and streaming it (`Client::send_file`).
//! - `receive`: offers to us, `/accept` and `/reject`, and the task that
//!   writes, checks and saves an incoming file.
//! - `http`: the PUT and GET of shared files, over the twin's transport.
//! - `share`: the upload service, sharing a file, and downloading a share.

mod disk;
mod http;
mod names;
mod progress;
mod receive;
mod send;
mod share;

pub use super::event::FileDone;
pub use super::limits::{
    DEFAULT_MAX_FILE_SIZE, IBB_BLOCK_SIZE, IBB_WINDOW, MAX_IBB_BLOCK_SIZE, MAX_PENDING_OFFERS,
    MAX_QUEUED_BLOCKS, OFFER_TIMEOUT, PROGRESS_MIN_SIZE,
};
pub use super::state::FilePolicy;
pub use names::safe_file_name;
pub(crate) use receive::handle_file_iq;
pub(crate) use share::{shared, shared_url};
