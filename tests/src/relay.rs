//! A TCP relay on loopback whose connections the test can cut, as a
//! network that drops: both ends see the connection end with no closing
//! tag. For a while after a cut nothing listens (connections are refused:
//! no network yet), then it relays again on the same port.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The relay; it stops accepting when dropped.
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    open: Arc<Mutex<Vec<TcpStream>>>,
    down_until: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    /// Relays 127.0.0.1:(free port) to `upstream`.
    pub fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let down_until: Arc<Mutex<Option<Instant>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (o, d, s) = (open.clone(), down_until.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut listener = Some(listener);
            while !s.load(Ordering::Relaxed) {
                let down = *d.lock().unwrap();
                if let Some(until) = down.filter(|t| Instant::now() < *t) {
                    // The network is down: nothing listens until it is back.
                    listener = None;
                    std::thread::sleep(until - Instant::now());
                    continue;
                }
                let l = listener.get_or_insert_with(|| {
                    let l = TcpListener::bind(addr).expect("the relay's port again");
                    l.set_nonblocking(true).unwrap();
                    l
                });
                let client = match l.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                {
                    let mut open = o.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                pump(client.try_clone().unwrap(), server.try_clone().unwrap());
                pump(server, client);
            }
        });
        Relay {
            addr,
            open,
            down_until,
            stop,
        }
    }

    /// Cuts every connection now, and refuses new ones for `outage`.
    pub fn cut(&self, outage: Duration) {
        *self.down_until.lock().unwrap() = Some(Instant::now() + outage);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` until either ends.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
