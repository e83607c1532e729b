//! Progress events for large files, at every 10% (100% included: a front
//! end showing a gauge knows it is done).

use crate::client::event::{ClientEvent, EventSender};
use crate::client::limits::PROGRESS_MIN_SIZE;

/// Progress events at every 10% of a large file.
pub(super) struct Progress {
    sid: String,
    name: String,
    sending: bool,
    total: u64,
    next_tenth: u64,
}

impl Progress {
    pub(super) fn new(sid: &str, name: &str, sending: bool, total: u64) -> Self {
        Progress {
            sid: sid.to_string(),
            name: name.to_string(),
            sending,
            total,
            next_tenth: 1,
        }
    }
    pub(super) fn update(&mut self, done: u64, events: &EventSender) {
        if self.total < PROGRESS_MIN_SIZE {
            return;
        }
        // One event however many tenths one step crossed (a 64 KiB chunk
        // of a small file crosses several).
        let mut crossed = false;
        while self.next_tenth <= 10 && done * 10 >= self.total * self.next_tenth {
            self.next_tenth += 1;
            crossed = true;
        }
        if crossed {
            events.send(ClientEvent::FileProgress {
                sid: self.sid.clone(),
                name: self.name.clone(),
                sending: self.sending,
                bytes: done,
                total: self.total,
            });
        }
    }
}
