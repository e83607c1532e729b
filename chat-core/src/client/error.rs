//! Why connecting or a request failed: [`ClientError`], one variant per
//! failure, each carrying what the user needs to see what to do.
//!
//! The front ends show these messages as they are, so their wording is part
//! of the interface (the end-to-end tests read some of them).

use std::path::PathBuf;

use protocol::{Jid, JidError, sasl};

use super::limits::MAX_QUEUED_STANZAS;
use crate::transport::TransportError;
use crate::xmpp_io::ReadError;

/// Why connecting or a request failed. Each variant says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {source} (is the server running?)")]
    Connect {
        /// Address tried.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The connection broke.
    #[error("connection lost: {0}")]
    ConnectionLost(#[from] Lost),
    /// The server closed the stream with an error.
    #[error("the server closed the stream: {condition}{}", text.as_ref().map(|t| format!(" ({t})")).unwrap_or_default())]
    StreamError {
        /// The condition, or `undefined-condition` when unknown.
        condition: String,
        /// The server's explanation.
        text: Option<String>,
    },
    /// The server sent XML we could not parse.
    #[error("the server sent invalid XML: {0}")]
    BadXml(#[from] protocol::ParseError),
    /// Wrong password or unknown user (SASL `not-authorized`).
    #[error("sign-in refused: wrong user name or password")]
    NotAuthorized,
    /// SASL failed for another reason.
    #[error("sign-in failed: {}", format!("{condition} {text}").trim())]
    SaslFailure {
        /// The SASL failure condition (RFC 6120 6.5), possibly empty.
        condition: String,
        /// The server's explanation, possibly empty.
        text: String,
    },
    /// The server could not prove it knows our SCRAM keys (not the real
    /// server), or sent a bad SCRAM message.
    #[error("sign-in failed: {0}")]
    Scram(#[from] sasl::SaslError),
    /// None of the server's mechanisms is one we accept.
    #[error("the server offers no SASL mechanism we accept (offered: {})", offered.join(", "))]
    NoMechanism {
        /// What the server offered.
        offered: Vec<String>,
    },
    /// The best mechanism offered is weaker than this client accepts: the
    /// defence against `downgrade-sasl`.
    #[error(
        "the server offers nothing stronger than {best} (offered: {}), and this client accepts {minimum} or stronger: a man in the middle may have removed the rest (a SASL downgrade); --sasl {best} accepts it",
        offered.join(", ")
    )]
    WeakMechanism {
        /// The best mechanism offered.
        best: String,
        /// The weakest this client accepts.
        minimum: String,
        /// What the server offered.
        offered: Vec<String>,
    },
    /// Registration refused because the name is taken.
    #[error("registration refused: the user name '{0}' is taken")]
    UsernameTaken(String),
    /// A request was answered with an error.
    #[error("{what} failed: {condition}{}", text.as_ref().map(|t| format!(" ({t})")).unwrap_or_default())]
    Refused {
        /// What was asked.
        what: String,
        /// The stanza error condition.
        condition: String,
        /// The server's explanation.
        text: Option<String>,
    },
    /// The server answered the stream header with TLS: the port expects
    /// direct TLS.
    #[error(
        "the server answered with TLS, not XMPP: is this the direct-TLS port? try --direct-tls (with chat-tls), or use the STARTTLS port"
    )]
    TlsPort,
    /// No answer in time; names what was asked.
    #[error("{0}: no answer from the server in time")]
    Timeout(String),
    /// A file offer that the peer neither accepted nor refused in time
    /// (the server passed it on: the silence is the peer's).
    #[error("{peer} neither accepted nor refused the file within {} s", waited.as_secs())]
    OfferUnanswered {
        /// Who was offered the file.
        peer: Jid,
        /// How long the offer stood.
        waited: std::time::Duration,
    },
    /// The server did not offer STARTTLS and the client requires it: the
    /// defence against STARTTLS stripping.
    #[error(
        "the server did not offer STARTTLS, and this client requires TLS (possible STARTTLS stripping attack)"
    )]
    NoStartTls,
    /// The server answered `<starttls/>` with `<failure/>`.
    #[error("TLS handshake failed: the server refused STARTTLS")]
    StartTlsRefused,
    /// The TLS handshake failed (the transport says why: certificate, name,
    /// pin, versions).
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] TransportError),
    /// The server insists on STARTTLS and this client has no TLS.
    #[error("the server requires STARTTLS, and this client cannot encrypt (use chat-tls)")]
    TlsRequired,
    /// The server broke the protocol; says what it sent instead.
    #[error("protocol error: the server sent {0}")]
    Unexpected(String),
    /// What the user typed is not a JID. Nothing was sent.
    #[error("invalid JID '{jid}': {source}")]
    BadJid {
        /// As typed.
        jid: String,
        /// What is wrong with it.
        source: JidError,
    },
    /// What the user typed is not a room. Nothing was sent.
    #[error("invalid room '{room}': {source}")]
    BadRoom {
        /// As typed.
        room: String,
        /// What is wrong with it.
        source: JidError,
    },
    /// The nickname cannot be the resource of a room JID. Nothing was sent.
    #[error("invalid nickname '{nick}': {source}")]
    BadNickname {
        /// As given.
        nick: String,
        /// What is wrong with it.
        source: JidError,
    },
    /// Joining a room we are in already, under that nickname.
    #[error("you are already in {room} as {nick}")]
    AlreadyInRoom {
        /// The room.
        room: Jid,
        /// Our nickname there.
        nick: String,
    },
    /// Joining a room we are in (or joining) under another nickname.
    #[error("you are in {room} as {nick} (or joining it): /leave it first")]
    InRoomAs {
        /// The room.
        room: Jid,
        /// Our nickname there.
        nick: String,
    },
    /// Leaving a room we are not in.
    #[error("you are not in {0}")]
    NotInRoom(Jid),
    /// Speaking in (or setting the subject of) a room we have not joined.
    #[error("you are not in {0}: /join it first")]
    JoinFirst(Jid),
    /// A file for a bare JID, and none of the contact's resources is online.
    #[error(
        "{0} is not online, and the server has no upload service to leave a file with (direct transfers go to an online contact)"
    )]
    NotOnline(Jid),
    /// Sharing by upload, and the server has no upload service (XEP-0363).
    #[error("the server offers no file upload service (HTTP file upload, XEP-0363)")]
    NoUploadService,
    /// A file over the upload service's limit: refused before any byte is
    /// sent.
    #[error("{} is {size} bytes; the server's upload service takes files up to {max} bytes", path.display())]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The service's limit.
        max: u64,
    },
    /// Uploading or downloading a shared file failed.
    #[error("{url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// What went wrong, in words for the user.
        reason: String,
    },
    /// The file to send cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The path to send is a folder or a device, not a file.
    #[error("{} is not a file", .0.display())]
    NotAFile(PathBuf),
    /// `/accept` or `/reject` of an offer that is not waiting (or none is).
    #[error("no such file offer")]
    NoSuchOffer,
    /// The queue to the server is full: the server is not reading what we
    /// send. Nothing was sent.
    #[error(
        "not sent: {MAX_QUEUED_STANZAS} stanzas are already waiting because the server is not reading; try again later"
    )]
    Congested,
    /// Longer than the stanza limit the server announced (XEP-0478):
    /// sending it would only get us disconnected. Nothing was sent.
    #[error("not sent: {size} bytes, over the server's {limit}-byte stanza limit")]
    TooLarge {
        /// The stanza's size.
        size: usize,
        /// The server's limit.
        limit: usize,
    },
    /// End-to-end encryption (OMEMO) could not be done.
    #[error("not sent end to end: {0}")]
    E2e(Box<crate::client::omemo::engine::E2eError>),
    /// `/verify` with a fingerprint none of the contact's devices has.
    #[error(
        "none of {jid}'s OMEMO devices has the fingerprint {fingerprint} (see /fingerprints {jid}); nothing was verified"
    )]
    NoSuchFingerprint {
        /// The contact.
        jid: Jid,
        /// As typed.
        fingerprint: String,
    },
    /// Too many messages are waiting to be encrypted (a script pasting
    /// hundreds at once): this one was not taken.
    #[error(
        "not sent: {} messages are still waiting to be encrypted end to end; send it again in a moment",
        crate::client::omemo::jobs::MAX_QUEUED_JOBS
    )]
    E2eBusy,
    /// An OMEMO command in a client started without `--e2e`.
    #[error(
        "end-to-end encryption is off: start the client with --e2e on (its keys are kept in --data)"
    )]
    E2eOff,
}

impl From<crate::client::omemo::engine::E2eError> for ClientError {
    fn from(e: crate::client::omemo::engine::E2eError) -> Self {
        ClientError::E2e(Box::new(e))
    }
}

/// How the connection was lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Lost {
    /// The server closed the TCP connection.
    #[error("the server closed the connection")]
    ServerClosedConnection,
    /// The server ended the XML stream.
    #[error("the server closed the stream")]
    ServerClosedStream,
    /// The connection had already ended when the request was made.
    #[error("the connection is closed")]
    AlreadyClosed,
    /// The connection ended while the request waited for its answer.
    #[error("the connection closed")]
    ClosedWhileWaiting,
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// Whether connecting failed for want of a network (worth another
    /// try). The server saying no (a session expired, a wrong password
    /// now, a certificate that does not verify) would say no again.
    pub fn is_network_trouble(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. } | ClientError::ConnectionLost(_) | ClientError::Timeout(_)
        )
    }
}

impl From<ReadError> for ClientError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Eof => Lost::ServerClosedConnection.into(),
            ReadError::Io(e) => Lost::Io(e).into(),
            ReadError::Parse(p) => ClientError::BadXml(p),
        }
    }
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        Lost::Io(e).into()
    }
}
