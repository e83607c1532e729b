//! One proxied connection: reach the server, run the attacks' set-up, pump
//! both directions, and say at the end what the attacker obtained.
//!
//! Each direction is a pump: read, cut into units ([`crate::xmpp::Half`]),
//! look at each unit (and change it, for an attack), write it on. The
//! pumps record what they saw in [`Facts`]; the verdict is computed from
//! them once both directions have closed.
//!
//! `strip-starttls` needs more than a pump: when the server offers
//! STARTTLS, the proxy answers for the client. It sends `<starttls/>`
//! itself, encrypts the server leg, restarts the stream, and shows the
//! client the features of the encrypted stream, which offer no STARTTLS and
//! every SASL mechanism. That set-up runs first, in order, then the pumps.
//!
//! - [`mod@self`]: reaching the server, the two pumps, the end.
//! - [`context`]: the connection's context.
//! - [`inspect`]: each unit reported, its secrets taken, the features changed.
//! - [`setup`]: the attacks that run in order first (strip, intercept).

mod context;
mod inspect;
mod setup;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::attack::Attack;
use crate::event::{Dir, Event};
use crate::records::Records;
use crate::shared::Shared;
use crate::verdict::{Facts, verdict};
use crate::xmpp::{Half, RawReason, Unit};
use context::{Conn, READ_CHUNK, Stream};

/// How long reaching the server, and the strip set-up, may take.
const SETUP_LIMIT: Duration = Duration::from_secs(10);

/// `replay`: plays the exchange the connection ended with, if the server
/// accepted it, on a connection of the proxy's own.
async fn replay(c: &Conn) {
    let (exchange, domain) = {
        let f = c.facts();
        if !f.sasl_success || f.sasl.is_empty() {
            return;
        }
        (
            f.sasl.clone(),
            f.domain.clone().unwrap_or_else(|| "localhost".into()),
        )
    };
    let result = crate::replay::replay(
        c.shared.upstream,
        &domain,
        c.shared.keylog.clone(),
        &exchange,
    )
    .await;
    let did = match &result {
        Ok(crate::replay::Replayed::Accepted(roster)) => format!(
            "played the recorded sign-in again on a new connection: <success/>; {}",
            crate::replay::what_it_read(roster)
        ),
        Ok(crate::replay::Replayed::Refused(why)) => {
            format!("played the recorded sign-in again on a new connection: <failure> ({why})")
        }
        Err(e) => format!("could not replay: {e}"),
    };
    c.report_attack(Attack::Replay, did);
    c.facts().replayed = Some(result.map_err(|e| e.to_string()));
}

/// Relays one client connection until both sides have closed.
pub async fn handle(conn: u64, client: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let upstream =
        match tokio::time::timeout(SETUP_LIMIT, TcpStream::connect(shared.upstream)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                shared.report.emit(Event::UpstreamDown {
                    conn,
                    upstream: shared.upstream.to_string(),
                    error: e.to_string(),
                });
                return;
            }
            Err(_) => {
                shared.report.emit(Event::UpstreamDown {
                    conn,
                    upstream: shared.upstream.to_string(),
                    error: format!("no answer within {} s", SETUP_LIMIT.as_secs()),
                });
                return;
            }
        };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    shared.report.emit(Event::Connection {
        conn,
        client: peer.to_string(),
        upstream: shared.upstream.to_string(),
    });
    let facts = Arc::new(Mutex::new(Facts::default()));
    let legs = match (&shared.pcap, client.local_addr(), upstream.local_addr()) {
        (Some(rec), Ok(listen), Ok(local)) => Some(Mutex::new(crate::pcap::Legs::open(
            rec,
            conn,
            peer,
            listen,
            local,
            shared.upstream,
        ))),
        _ => None,
    };
    let c = Conn {
        id: conn,
        shared: shared.clone(),
        facts: facts.clone(),
        legs,
    };
    let mut up_half = Half::new();
    let mut down_half = Half::new();
    let mut client = client;
    if shared.attacks.contains(&Attack::InterceptTls) {
        let setup = setup::intercept(&c, client, upstream, &mut up_half, &mut down_half);
        match tokio::time::timeout(SETUP_LIMIT, setup).await {
            Ok(Ok(Some((client, server)))) => {
                relay(&c, client, server, &mut up_half, &mut down_half).await;
            }
            // The client refused the certificate: nothing more to relay.
            Ok(Ok(None)) => {}
            Ok(Err(e)) => c.report_attack(Attack::InterceptTls, format!("set-up failed: {e}")),
            Err(_) => c.report_attack(Attack::InterceptTls, "set-up timed out".into()),
        }
        finish(&c, &up_half, &down_half).await;
        return;
    }
    let server: Box<dyn Stream> = if shared.attacks.contains(&Attack::StripStarttls) {
        let setup = setup::strip(&c, &mut client, upstream, &mut up_half, &mut down_half);
        match tokio::time::timeout(SETUP_LIMIT, setup).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                c.report_attack(Attack::StripStarttls, format!("set-up failed: {e}"));
                finish(&c, &up_half, &down_half).await;
                return;
            }
            Err(_) => {
                c.report_attack(Attack::StripStarttls, "set-up timed out".into());
                finish(&c, &up_half, &down_half).await;
                return;
            }
        }
    } else {
        Box::new(upstream)
    };
    relay(&c, Box::new(client), server, &mut up_half, &mut down_half).await;
    finish(&c, &up_half, &down_half).await;
}

/// Pumps both directions until both have closed.
async fn relay(
    c: &Conn,
    client: Box<dyn Stream>,
    server: Box<dyn Stream>,
    up: &mut Half,
    down: &mut Half,
) {
    let (client_rd, client_wr) = tokio::io::split(client);
    let (server_rd, server_wr) = tokio::io::split(server);
    tokio::join!(
        pump(c, Dir::ClientToServer, client_rd, server_wr, up),
        pump(c, Dir::ServerToClient, server_rd, client_wr, down)
    );
}

/// Reads, inspects and forwards one direction until it closes.
async fn pump<R, W>(c: &Conn, dir: Dir, mut rd: R, mut wr: W, half: &mut Half)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; READ_CHUNK];
    // corrupt-tls changes the client's records only.
    let target = (dir == Dir::ClientToServer && c.shared.attacks.contains(&Attack::CorruptTls))
        .then_some(c.shared.corrupt_record);
    let mut records = Records::new(target);
    let mut stop = c.shared.stop.clone();
    // Attacks that only watch forward each read as it came, before it is
    // parsed: the parse is off the path the bytes take, so a passive
    // attacker adds no delay of its own (and holds no partial stanza).
    let passive = c.shared.attacks.iter().all(|a| a.is_passive());
    // What goes on after each read, kept between reads (a fresh buffer per
    // read was page faults under load).
    let mut out = Vec::with_capacity(READ_CHUNK);
    loop {
        let n = tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            // Ctrl-C: stop here; the verdict covers what was seen.
            _ = stop.wait_for(|s| *s) => break,
        };
        if passive && !forward(&mut wr, &buf[..n], &mut stop).await {
            break;
        }
        let was_raw = half.raw_since().is_some();
        let pieces = half.push(&buf[..n]);
        out.clear();
        let tls = matches!(
            half.raw_since(),
            Some((_, RawReason::Tls | RawReason::DirectTls))
        );
        for mut piece in pieces {
            if tls && piece.unit == Unit::Raw {
                // The capture has the record as it came, before
                // corrupt-tls flips a bit in it on the way out.
                c.record(dir, true, &piece.bytes);
                inspect::follow_records(c, dir, &mut records, &mut piece.bytes);
                inspect::inspect_arrived(c, dir, piece, &mut out);
            } else {
                inspect::inspect(c, dir, piece, &mut out);
            }
        }
        if !was_raw && let Some((at, reason)) = half.raw_since() {
            inspect::opaque(c, dir, *at, reason);
        }
        if passive {
            continue;
        }
        // A tamper rule's delay holds this write (and what follows).
        let delay = c.facts().delay.take();
        if let Some(d) = delay {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        }
        if !forward(&mut wr, &out, &mut stop).await {
            break;
        }
    }
    // Pass the close on: the far side sees the end of the stream. A peer
    // that stopped reading does not get to hold the connection open (a TLS
    // close_notify is a write).
    let _ = tokio::time::timeout(CLOSE_LIMIT, wr.shutdown()).await;
}

/// How long passing a close on may take.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// Writes bytes on and pushes them out (through TLS, where there is one).
/// False when the far side is gone, or at Ctrl-C: a peer that stopped
/// reading must not keep a pump (and the verdict) waiting past the end.
async fn forward<W: AsyncWrite + Unpin>(
    wr: &mut W,
    bytes: &[u8],
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    let write = async {
        wr.write_all(bytes).await?;
        wr.flush().await
    };
    tokio::select! {
        r = write => r.is_ok(),
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// Reports the end of the connection and the verdict of each attack.
async fn finish(c: &Conn, up: &Half, down: &Half) {
    if let (Some(legs), Some(rec)) = (&c.legs, &c.shared.pcap) {
        legs.lock().unwrap_or_else(|p| p.into_inner()).close(rec);
    }
    c.shared.report.emit(Event::Closed {
        conn: c.id,
        bytes_up: up.total(),
        bytes_down: down.total(),
    });
    if c.shared.attacks.contains(&Attack::Replay) {
        replay(c).await;
    }
    let facts = c.facts();
    for attack in &c.shared.attacks {
        let (outcome, defeated) = verdict(*attack, &facts, c.shared.corrupt_record);
        c.shared.record_verdict(c.id, *attack, &outcome, defeated);
        c.shared.report.emit(Event::Verdict {
            conn: c.id,
            attack: *attack,
            outcome,
            defeated,
        });
    }
}
