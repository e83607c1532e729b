//! Connections read on several cores, findings printed in the order one
//! core would print them.
//!
//! Decoding frames and reassembling TCP stay on the caller's thread: they
//! are a fifth of the work and they number the connections. What costs is
//! reading each connection's XMPP and TLS and writing its findings out, and
//! no connection's reading depends on another's. So each connection goes to
//! one worker (by its number), events go out in batches, and each worker
//! hands back, per batch, its findings already rendered, each tagged with
//! the place of the event that made it. The batch is then written in that
//! order: the output is byte for byte what one thread writes.
//!
//! A few batches are in flight at once, no more, so memory stays flat
//! however big the capture.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::dissect::{ConnSummary, Dissector, Hooks, Out};
use crate::findings::Finding;
use crate::keylog::KeyLog;
use crate::reassembly::{ConnId, Event};

/// Writes one finding as the bytes to print (nothing when quiet). Called
/// on the workers, so it must be a plain function of its arguments.
pub type Render = Arc<dyn Fn(ConnId, f64, &Finding, &mut Vec<u8>) + Send + Sync>;

/// Takes the rendered bytes, in order, on the caller's thread.
pub type Write<'a> = Box<dyn FnMut(&[u8]) + 'a>;

/// Event bytes in a batch before it is sent: big enough that the workers
/// seldom wait for the channel, small enough to keep memory flat.
/// (In the unit tests, a few events: many batches, many in flight.)
const BATCH_BYTES: usize = if cfg!(test) { 64 } else { 256 << 10 };
/// Events in a batch at most (a capture of small packets).
const BATCH_EVENTS: usize = if cfg!(test) { 3 } else { 2048 };
/// Batches sent and not yet written.
const IN_FLIGHT: usize = 3;

/// One event for a worker, with its place in the batch.
struct Job {
    seq: u32,
    last_ts: f64,
    /// A `Data` event's bytes are in [`Jobs::data`], at `data`.
    event: Event<'static>,
    data: Range<usize>,
}

/// One worker's part of a batch. The buffers go back and forth between
/// the threads and are used again: a capture of gigabytes is not a
/// million allocations, each freed on another thread than its own.
#[derive(Default)]
struct Jobs {
    list: Vec<Job>,
    /// The bytes of every `Data` event, one after the other.
    data: Vec<u8>,
    /// Where the worker writes the findings (empty, its room kept).
    out: Vec<u8>,
}

/// What one source (a worker, or the caller's own thread for UDP) made of
/// one batch: rendered findings and summaries, each with the place of the
/// event that made it.
#[derive(Default)]
pub(crate) struct Batch {
    bytes: Vec<u8>,
    /// (place, start, end) in `bytes`.
    chunks: Vec<(u32, usize, usize)>,
    summaries: Vec<(u32, ConnSummary)>,
    /// The worker's buffers, to be used again.
    spare: Option<Jobs>,
    /// Findings per category.
    pub(crate) totals: [u64; crate::findings::CATEGORIES],
    /// The place of what is being dissected now.
    seq: u32,
    render: Option<Render>,
}

impl Batch {
    fn new(render: &Render) -> Self {
        Batch {
            render: Some(render.clone()),
            ..Default::default()
        }
    }
}

impl Out for Batch {
    fn finding(&mut self, conn: ConnId, ts: f64, f: &Finding) {
        if let Some(cat) = f.category() {
            self.totals[cat.index()] += 1;
        }
        let start = self.bytes.len();
        if let Some(render) = &self.render {
            render(conn, ts, f, &mut self.bytes);
        }
        let end = self.bytes.len();
        if end == start {
            return;
        }
        match self.chunks.last_mut() {
            Some((seq, _, e)) if *seq == self.seq => *e = end,
            _ => self.chunks.push((self.seq, start, end)),
        }
    }

    fn summary(&mut self, s: ConnSummary) {
        self.summaries.push((self.seq, s));
    }
}

struct Worker {
    jobs: SyncSender<Jobs>,
    done: Receiver<Batch>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    fn start(
        render: Render,
        export: Option<PathBuf>,
        keylog: Option<KeyLog>,
    ) -> std::io::Result<Self> {
        let (jobs, rx) = sync_channel::<Jobs>(IN_FLIGHT);
        let (tx, done) = sync_channel::<Batch>(IN_FLIGHT);
        let handle = std::thread::Builder::new()
            .name("dissect".into())
            .spawn(move || {
                let mut d = Dissector::new(export, keylog);
                let mut hooks = Hooks::default();
                for mut jobs in rx {
                    let mut out = Batch::new(&render);
                    out.bytes = std::mem::take(&mut jobs.out);
                    for j in jobs.list.drain(..) {
                        let event = match j.event {
                            Event::Data {
                                conn,
                                dir,
                                offset,
                                ts,
                                ..
                            } => Event::Data {
                                conn,
                                dir,
                                offset,
                                ts,
                                data: Cow::Borrowed(&jobs.data[j.data]),
                            },
                            e => e,
                        };
                        out.seq = j.seq;
                        d.event(event, j.last_ts, &mut hooks, &mut out);
                    }
                    jobs.data.clear();
                    out.spare = Some(jobs);
                    if tx.send(out).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Worker {
            jobs,
            done,
            handle: Some(handle),
        })
    }

    /// This worker's result of the oldest batch in flight. A worker that
    /// panicked has its panic carried on here, as if one thread had run.
    fn result(&mut self) -> Batch {
        if let Ok(b) = self.done.recv() {
            return b;
        }
        match self.handle.take().map(JoinHandle::join) {
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            _ => unreachable!("a worker ends only when its jobs stop coming"),
        }
    }
}

/// The workers, the batch being filled, and the batches in flight.
pub(crate) struct Pool<'a> {
    render: Render,
    write: Write<'a>,
    workers: Vec<Worker>,
    /// Jobs per worker.
    jobs: Vec<Jobs>,
    /// Buffers back from the workers.
    spare: Vec<Jobs>,
    batch_bytes: usize,
    batch_events: usize,
    seq: u32,
    /// What the caller's thread found in this batch (UDP flows).
    pub(crate) main: Batch,
    /// The caller's part of each batch in flight, oldest first.
    in_flight: VecDeque<Batch>,
}

/// A batch written out: what the caller keeps of it.
pub(crate) struct Merged {
    pub(crate) summaries: Vec<ConnSummary>,
    pub(crate) totals: [u64; crate::findings::CATEGORIES],
}

impl<'a> Pool<'a> {
    /// `threads` workers (at least 2), started now, each with its own copy
    /// of the key log.
    pub(crate) fn new(
        threads: usize,
        render: Render,
        write: Write<'a>,
        export: Option<PathBuf>,
        keylog: Option<KeyLog>,
    ) -> std::io::Result<Self> {
        let threads = threads.max(2);
        let workers = (0..threads)
            .map(|_| Worker::start(render.clone(), export.clone(), keylog.clone()))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Pool {
            main: Batch::new(&render),
            render,
            write,
            workers,
            jobs: (0..threads).map(|_| Jobs::default()).collect(),
            spare: Vec::new(),
            batch_bytes: 0,
            batch_events: 0,
            seq: 0,
            in_flight: VecDeque::new(),
        })
    }

    /// A place for what the caller's thread is about to find (UDP).
    pub(crate) fn main_seq(&mut self) {
        self.seq += 1;
        self.batch_events += 1;
        self.main.seq = self.seq;
    }

    /// One event for the worker of its connection.
    pub(crate) fn push(&mut self, e: Event<'_>, last_ts: f64) {
        let conn = match &e {
            Event::Open { conn, .. }
            | Event::Data { conn, .. }
            | Event::Gap { conn, .. }
            | Event::Close { conn, .. } => *conn,
        };
        self.seq += 1;
        self.batch_events += 1;
        let n = self.jobs.len() as u64;
        let jobs = &mut self.jobs[(conn % n) as usize];
        let (event, data) = match e {
            Event::Data {
                conn,
                dir,
                offset,
                data,
                ts,
            } => {
                let at = jobs.data.len();
                jobs.data.extend_from_slice(&data);
                self.batch_bytes += data.len();
                let event = Event::Data {
                    conn,
                    dir,
                    offset,
                    data: Cow::Borrowed(&[]),
                    ts,
                };
                (event, at..jobs.data.len())
            }
            e => (e.into_owned(), 0..0),
        };
        jobs.list.push(Job {
            seq: self.seq,
            last_ts,
            event,
            data,
        });
    }

    /// Sends the batch being filled if it is full; what is returned is what
    /// was written of older ones.
    pub(crate) fn send_if_full(&mut self) -> Option<Merged> {
        (self.batch_bytes >= BATCH_BYTES || self.batch_events >= BATCH_EVENTS).then(|| self.send())
    }

    /// Sends the batch being filled; when too many are in flight, waits for
    /// the oldest and writes it.
    fn send(&mut self) -> Merged {
        for (w, jobs) in self.workers.iter().zip(&mut self.jobs) {
            let next = self.spare.pop().unwrap_or_default();
            // A worker gone has left its panic for `result` to carry on.
            let _ = w.jobs.send(std::mem::replace(jobs, next));
        }
        let main = std::mem::replace(&mut self.main, Batch::new(&self.render));
        self.in_flight.push_back(main);
        self.batch_bytes = 0;
        self.batch_events = 0;
        self.seq = 0;
        let mut merged = Merged {
            summaries: Vec::new(),
            totals: [0; crate::findings::CATEGORIES],
        };
        while self.in_flight.len() >= IN_FLIGHT {
            self.write_oldest(&mut merged);
        }
        merged
    }

    /// Sends what is left and writes every batch: the capture is over.
    pub(crate) fn finish(&mut self) -> Merged {
        let mut merged = self.send();
        while !self.in_flight.is_empty() {
            self.write_oldest(&mut merged);
        }
        merged
    }

    /// Writes the oldest batch in flight, every source's findings in the
    /// order of the events that made them.
    fn write_oldest(&mut self, merged: &mut Merged) {
        let Some(main) = self.in_flight.pop_front() else {
            return;
        };
        let mut parts: Vec<Batch> = self.workers.iter_mut().map(Worker::result).collect();
        parts.push(main);
        let mut chunks: Vec<(u32, usize, usize, usize)> = parts
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.chunks.iter().map(move |&(seq, s, e)| (seq, i, s, e)))
            .collect();
        // Places are unique to a source, and a source's are in order.
        chunks.sort_unstable_by_key(|&(seq, i, s, _)| (seq, i, s));
        for (_, i, s, e) in chunks {
            (self.write)(&parts[i].bytes[s..e]);
        }
        let mut summaries: Vec<(u32, usize, ConnSummary)> = Vec::new();
        for (i, p) in parts.iter_mut().enumerate() {
            for (n, t) in p.totals.iter().enumerate() {
                merged.totals[n] += t;
            }
            summaries.extend(p.summaries.drain(..).map(|(seq, s)| (seq, i, s)));
        }
        summaries.sort_by_key(|(seq, i, _)| (*seq, *i));
        merged
            .summaries
            .extend(summaries.into_iter().map(|(_, _, s)| s));
        for p in parts {
            if let Some(mut jobs) = p.spare {
                jobs.out = p.bytes;
                jobs.out.clear();
                self.spare.push(jobs);
            }
        }
    }
}

impl Drop for Pool<'_> {
    fn drop(&mut self) {
        // Closing the job channels ends the workers.
        for w in self.workers.drain(..) {
            drop(w.jobs);
            drop(w.done);
            if let Some(h) = w.handle {
                let _ = h.join();
            }
        }
    }
}
