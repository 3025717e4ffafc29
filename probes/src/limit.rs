//! A connection limit for a listener the exporter serves (the auth tap here, the web server in the
//! exporter): at most `max` connections open. At the limit a new connection takes the place of the oldest one
//! not yet established and not in the middle of a request (an idle connection of whoever opened thousands), so
//! a real client still gets in; when every open connection is established, the new one is refused. An established connection (the user's CLI
//! or scraper) is never closed to make room, with one opt-in exception ([`Connections::evicting_idle`]: the
//! web server): when every open connection is established, the oldest one idle between requests makes room
//! before a new one is refused. The listener decides what established means and calls [`Slot::spoke`]: the
//! tap once the client's first head is whole and its upstream confirmed (issue 38: on the first byte, four
//! one-byte connections held every slot for good), the web server once a request passed the Host check and
//! authentication.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The open connections of one listener.
#[derive(Clone)]
pub struct Connections {
    max: usize,
    evict_idle: bool,
    open: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    /// By id, so by age: the first silent one found is the oldest.
    slots: BTreeMap<u64, Arc<Slot>>,
}

/// One open connection's state, shared between its task and the limit.
#[derive(Default)]
pub struct Slot {
    spoken: AtomicBool,
    busy: AtomicBool,
    evicted: AtomicBool,
    notify: Notify,
}

impl Slot {
    /// The connection is established (the listener's own rule): from now on it is never evicted.
    pub fn spoke(&self) {
        self.spoken.store(true, Ordering::Relaxed);
    }

    /// Whether the client has sent a byte.
    pub fn has_spoken(&self) -> bool {
        self.spoken.load(Ordering::Relaxed)
    }

    /// A request is being served (`true`) or the connection waits for the next one (`false`): only an idle
    /// established connection may make room ([`Connections::evicting_idle`]).
    pub fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Relaxed);
    }

    /// Resolves when the limit closes this connection to make room: drop it then.
    pub async fn evicted(&self) {
        while !self.evicted.load(Ordering::Acquire) {
            self.notify.notified().await;
        }
    }
}

/// What happened to a new connection.
pub enum Admission {
    /// In, with room to spare.
    Admitted(Admitted),
    /// In, in place of the oldest connection that had never sent a byte (now closed).
    Replaced(Admitted),
    /// Refused: the limit is reached and every open connection has spoken. Close it.
    Refused,
}

/// An admitted connection: its slot is freed when this is dropped.
pub struct Admitted {
    id: u64,
    slot: Arc<Slot>,
    open: Arc<Mutex<Open>>,
}

impl Admitted {
    /// The connection's state.
    pub fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        lock(&self.open).slots.remove(&self.id);
    }
}

impl Connections {
    /// A limit of `max` open connections (at least one).
    pub fn new(max: usize) -> Connections {
        Connections { max: max.max(1), evict_idle: false, open: Arc::default() }
    }

    /// At the limit with every connection established, the oldest one idle between requests makes room
    /// before a new one is refused (the web server: a kept-alive scraper reconnects at its next scrape,
    /// while refusing would leave the new one unanswered). The tap never does this: an idle WebSocket is a
    /// live CLI session.
    pub fn evicting_idle(mut self) -> Connections {
        self.evict_idle = true;
        self
    }

    /// How many connections are open.
    pub fn open(&self) -> usize {
        lock(&self.open).slots.len()
    }

    /// Admit a new connection, making room by closing the oldest silent one when at the limit.
    pub fn admit(&self) -> Admission {
        let mut open = lock(&self.open);
        let mut replaced = false;
        if open.slots.len() >= self.max {
            let is_idle = |slot: &Arc<Slot>| !slot.busy.load(Ordering::Relaxed);
            // A connection serving its first request has not spoken yet (the web server marks it once the
            // response passed the guards), but it is a client in mid-answer: closing it loses a scrape. Seen in
            // CI: four refused-request clients reconnecting in step evicted each other in a chain within a few
            // milliseconds, and the chain's last link closed a scrape that was still rendering.
            let silent = open.slots.iter().find(|(_, slot)| !slot.has_spoken() && is_idle(slot)).map(|(id, _)| *id);
            let oldest_idle = || {
                self.evict_idle.then(|| open.slots.iter().find(|(_, slot)| is_idle(slot)).map(|(id, _)| *id)).flatten()
            };
            let Some(victim) = silent.or_else(oldest_idle) else { return Admission::Refused };
            if let Some(slot) = open.slots.remove(&victim) {
                slot.evicted.store(true, Ordering::Release);
                slot.notify.notify_waiters();
                slot.notify.notify_one();
            }
            replaced = true;
        }
        let id = open.next_id;
        open.next_id += 1;
        let slot = Arc::new(Slot::default());
        open.slots.insert(id, slot.clone());
        let admitted = Admitted { id, slot, open: self.open.clone() };
        if replaced {
            Admission::Replaced(admitted)
        } else {
            Admission::Admitted(admitted)
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(admission: Admission) -> Admitted {
        match admission {
            Admission::Admitted(a) | Admission::Replaced(a) => a,
            Admission::Refused => panic!("refused"),
        }
    }

    #[tokio::test]
    async fn at_the_limit_the_oldest_silent_connection_makes_room_and_a_spoken_one_never_does() {
        let limit = Connections::new(3);
        let talker = admitted(limit.admit());
        talker.slot().spoke();
        let oldest_silent = admitted(limit.admit());
        let newer_silent = admitted(limit.admit());
        assert_eq!(limit.open(), 3);
        let Admission::Replaced(newcomer) = limit.admit() else { panic!("expected a replacement") };
        // The oldest silent one was told to go; the talker and the newer silent one were not.
        tokio::time::timeout(std::time::Duration::from_secs(5), oldest_silent.slot().evicted()).await.unwrap();
        assert!(!newer_silent.slot().evicted.load(Ordering::Relaxed));
        assert!(!talker.slot().evicted.load(Ordering::Relaxed));
        assert_eq!(limit.open(), 3);
        newer_silent.slot().spoke();
        newcomer.slot().spoke();
        assert!(matches!(limit.admit(), Admission::Refused), "every open connection has spoken");
        drop(talker);
        assert_eq!(limit.open(), 2);
        assert!(matches!(limit.admit(), Admission::Admitted(_)));
        // The evicted one's drop does not free anyone else's slot.
        drop(oldest_silent);
        assert_eq!(limit.open(), 2);
    }

    #[tokio::test]
    async fn evicting_idle_makes_room_with_the_oldest_established_connection_between_requests() {
        let limit = Connections::new(2).evicting_idle();
        let (busy, idle) = (admitted(limit.admit()), admitted(limit.admit()));
        for a in [&busy, &idle] {
            a.slot().spoke();
        }
        busy.slot().set_busy(true);
        let Admission::Replaced(newcomer) = limit.admit() else { panic!("the idle established one makes room") };
        tokio::time::timeout(std::time::Duration::from_secs(5), idle.slot().evicted()).await.unwrap();
        assert!(!busy.slot().evicted.load(Ordering::Relaxed), "a connection serving a request is never evicted");
        newcomer.slot().spoke();
        newcomer.slot().set_busy(true);
        assert!(matches!(limit.admit(), Admission::Refused), "every open connection is serving a request");
    }

    #[tokio::test]
    async fn a_connection_serving_its_first_request_is_never_closed_to_make_room() {
        let limit = Connections::new(2).evicting_idle();
        let (scrape, refuser) = (admitted(limit.admit()), admitted(limit.admit()));
        // The older one's request is being answered: it has not spoken yet, but it is not silent either.
        scrape.slot().set_busy(true);
        let Admission::Replaced(_newcomer) = limit.admit() else { panic!("the idle silent one makes room") };
        tokio::time::timeout(std::time::Duration::from_secs(5), refuser.slot().evicted()).await.unwrap();
        assert!(!scrape.slot().evicted.load(Ordering::Relaxed), "a request in flight was closed to make room");
    }
}
