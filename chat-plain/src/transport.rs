//! The plaintext transport: bare TCP, no way to encrypt.
//!
//! Deliberately weak. Because `upgrade` cannot run TLS, the server never
//! offers `<starttls/>` and the client never asks for it, so credentials,
//! messages and contacts all cross the wire readable by anyone on the path.

use std::io;
use std::net::SocketAddr;

use chat_core::transport::{BoxStream, ClientTransport, ServerTransport, StartTls, tcp_connect};
use tokio::net::TcpStream;

/// Plain TCP for both server and client.
pub struct Plain;

fn cannot_upgrade() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "the plaintext twin cannot start TLS",
    )
}

impl ServerTransport for Plain {
    async fn accept(&self, tcp: TcpStream, _peer: SocketAddr) -> io::Result<(BoxStream, bool)> {
        Ok((Box::new(tcp), false))
    }

    fn starttls(&self) -> StartTls {
        StartTls::Unavailable
    }

    async fn upgrade(&self, _stream: BoxStream) -> io::Result<BoxStream> {
        Err(cannot_upgrade())
    }
}

impl ClientTransport for Plain {
    async fn connect(&self, addr: &str, _domain: &str) -> io::Result<(BoxStream, bool)> {
        Ok((Box::new(tcp_connect(addr).await?), false))
    }

    fn starttls(&self) -> StartTls {
        StartTls::Unavailable
    }

    async fn upgrade(&self, _stream: BoxStream, _domain: &str) -> io::Result<BoxStream> {
        Err(cannot_upgrade())
    }
}
