//! The plaintext transport: bare TCP, no way to encrypt.
//!
//! Deliberately weak. Because `upgrade` cannot run TLS, the server never
//! offers `<starttls/>` and the client never asks for it, so credentials,
//! messages and contacts all cross the wire readable by anyone on the path.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use chat_core::cli::{NoCommands, NoFlags, ServerArgs, Twin, UploadTransport, run_server};
use chat_core::transport::{
    BoxStream, ClientTransport, Security, ServerTransport, StartTls, TransportError, WebConnector,
    WebFuture, tcp_connect,
};
use tokio::net::TcpStream;

/// The plaintext twin's transport: no flags, no subcommands, bare TCP.
pub struct Transport;

impl Twin for Transport {
    const ABOUT: &'static str = "The chat over plain TCP (no encryption at all: for the labs).";
    type ServerFlags = NoFlags;
    type ClientFlags = NoFlags;
    type Commands = NoCommands;

    async fn server(name: &str, args: ServerArgs, _flags: NoFlags) -> anyhow::Result<u8> {
        run_server(
            name,
            &args,
            Plain,
            None::<(SocketAddr, Plain)>,
            // Deliberately plain HTTP: a shared file crosses the wire as
            // readable as the chat does.
            UploadTransport {
                transport: Plain,
                https: false,
            },
            "plaintext: no TLS",
        )
        .await
    }

    type Client = Plain;

    fn client_transport(_name: &str, _flags: NoFlags) -> anyhow::Result<Plain> {
        Ok(Plain)
    }

    fn command(_name: &str, command: NoCommands) -> anyhow::Result<u8> {
        match command {}
    }
}

/// Plain TCP for both server and client.
#[derive(Clone)]
pub struct Plain;

fn cannot_upgrade() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "the plaintext twin cannot start TLS",
    )
}

impl ServerTransport for Plain {
    async fn accept(&self, tcp: TcpStream, _peer: SocketAddr) -> io::Result<(BoxStream, Security)> {
        Ok((Box::new(tcp), Security::Plaintext))
    }

    fn starttls(&self) -> StartTls {
        StartTls::Unavailable
    }

    async fn upgrade(&self, _stream: BoxStream) -> io::Result<(BoxStream, Security)> {
        Err(cannot_upgrade())
    }
}

impl ClientTransport for Plain {
    async fn connect(
        &self,
        addr: &str,
        _domain: &str,
    ) -> Result<(BoxStream, Security), TransportError> {
        Ok((Box::new(tcp_connect(addr).await?), Security::Plaintext))
    }

    fn starttls(&self) -> StartTls {
        StartTls::Unavailable
    }

    async fn upgrade(
        &self,
        _stream: BoxStream,
        _domain: &str,
    ) -> Result<(BoxStream, Security), TransportError> {
        Err(TransportError::CannotEncrypt)
    }

    fn web(&self) -> Arc<dyn WebConnector> {
        Arc::new(Plain)
    }
}

/// Shared files over plain HTTP. Deliberately weak, like the chat: the
/// file crosses the wire readable (the sniffer rebuilds it), and anyone on
/// the path can swap it for another.
impl WebConnector for Plain {
    fn scheme(&self) -> &'static str {
        "http"
    }

    fn open<'a>(&'a self, addr: &'a str, _host: &'a str) -> WebFuture<'a> {
        Box::pin(async move { Ok(Box::new(tcp_connect(addr).await?) as BoxStream) })
    }
}
