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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The open connections of one listener.
#[derive(Clone)]
pub struct Connections {
    max: usize,
    evict_idle: bool,
    /// [`SILENT_GRACE`] (tests set it to zero).
    grace: std::time::Duration,
    open: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    /// By id, so by age: the first silent one found is the oldest.
    slots: BTreeMap<u64, Arc<Slot>>,
}

/// One open connection's state, shared between its task and the limit.
pub struct Slot {
    spoken: AtomicBool,
    /// Answers in progress (a pipelined request's can begin before the last one's body is dropped).
    busy: AtomicUsize,
    evicted: AtomicBool,
    retiring: AtomicBool,
    notify: Notify,
    /// When it was admitted.
    since: std::time::Instant,
}

impl Slot {
    /// The connection is established (the listener's own rule): from now on it is never evicted.
    pub fn spoke(&self) {
        self.spoken.store(true, Ordering::Relaxed);
    }

    /// Whether the connection is established (see [`Slot::spoke`]).
    pub fn has_spoken(&self) -> bool {
        self.spoken.load(Ordering::Relaxed)
    }

    /// An answer begins (`true`) or ends (`false`), counted (a pipelined request's can begin before the last
    /// one's ends): only a connection with none in progress is idle and may be closed to make room.
    pub fn set_busy(&self, busy: bool) {
        if busy {
            self.busy.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self.busy.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    fn new() -> Slot {
        Slot {
            spoken: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
            evicted: AtomicBool::new(false),
            retiring: AtomicBool::new(false),
            notify: Notify::new(),
            since: std::time::Instant::now(),
        }
    }

    /// Resolves when the limit closes this connection to make room: drop it then.
    pub async fn evicted(&self) {
        while !self.evicted.load(Ordering::Acquire) {
            self.notify.notified().await;
        }
    }

    /// Resolves when the limit asks this busy connection to close once its answer is out
    /// ([`Connections::evicting_idle`]): finish the request in flight, take no other, and close.
    pub async fn retired(&self) {
        while !self.retiring.load(Ordering::Acquire) {
            self.notify.notified().await;
        }
    }

    fn tell(&self, flag: &AtomicBool) {
        flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
        self.notify.notify_one();
    }
}

/// What happened to a new connection.
pub enum Admission {
    /// In, with room to spare.
    Admitted(Admitted),
    /// In, in place of the oldest connection that had never sent a byte (now closed).
    Replaced(Admitted),
    /// In, over the limit by the one slot kept for a new connection: every open connection was busy, and the
    /// oldest was told to close once its answer is out ([`Slot::retired`]).
    Retiring(Admitted),
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
        Connections { max: max.max(1), evict_idle: false, grace: SILENT_GRACE, open: Arc::default() }
    }

    /// At the limit with every connection established, the oldest one idle between requests makes room
    /// before a new one is refused (the web server: a kept-alive scraper reconnects at its next scrape,
    /// while refusing would leave the new one unanswered); and with every connection busy, one slot is kept
    /// for a new connection: it is let in and the oldest busy one is told to close once its answer is out, so
    /// no answer in flight is lost (issue 38: four clients pipelining scrapes kept every slot busy, and 18 of
    /// 20 scrapes found no room). The tap never does this: an idle WebSocket is a live CLI session.
    pub fn evicting_idle(mut self) -> Connections {
        self.evict_idle = true;
        self
    }

    /// How many connections are open.
    pub fn open(&self) -> usize {
        lock(&self.open).slots.len()
    }

    /// Admit a new connection. At the limit, what makes room, in order: the oldest connection neither
    /// established nor busy that has had [`SILENT_GRACE`] to speak (closed); with [`Connections::evicting_idle`],
    /// the oldest established one idle between requests (closed), then the oldest busy one (told to close once
    /// its answer is out, the new one in over the limit meanwhile); then the oldest silent one however young
    /// (closed). Else the new one is refused.
    pub fn admit(&self) -> Admission {
        let mut open = lock(&self.open);
        if open.slots.len() < self.max {
            return Admission::Admitted(Self::insert(&mut open, &self.open));
        }
        let now = std::time::Instant::now();
        let is_idle = |slot: &Slot| slot.busy.load(Ordering::Relaxed) == 0;
        // A connection serving its first request has not spoken yet (the web server marks it once the response
        // passed the guards), but it is a client in mid-answer: closing it loses a scrape. Seen in CI: four
        // refused-request clients reconnecting in step evicted each other in a chain within a few
        // milliseconds, and the chain's last link closed a scrape that was still rendering.
        let silent = |slot: &Slot| !slot.has_spoken() && is_idle(slot);
        let oldest =
            |open: &Open, pick: &dyn Fn(&Slot) -> bool| open.slots.iter().find(|(_, s)| pick(s)).map(|(id, _)| *id);
        let settled_silent = oldest(&open, &|slot| silent(slot) && now.duration_since(slot.since) >= self.grace);
        let idle_established = || self.evict_idle.then(|| oldest(&open, &|s| s.has_spoken() && is_idle(s))).flatten();
        if let Some(victim) = settled_silent.or_else(idle_established) {
            return Admission::Replaced(Self::replace(&mut open, &self.open, victim));
        }
        // Every connection is busy or has just arrived (a scraper whose request is on its way: seen in issue
        // 38's pipelining test, a new scrape closed before hyper read its head). The oldest busy one not yet
        // retiring finishes its answer and closes; the new one comes in over the limit meanwhile (at most one
        // per open connection, so twice the limit at worst, and only for the time an answer takes).
        let retiring = |slot: &Slot| slot.retiring.load(Ordering::Relaxed);
        let busy =
            self.evict_idle.then(|| open.slots.values().find(|s| !is_idle(s) && !retiring(s)).cloned()).flatten();
        if let Some(victim) = busy {
            victim.tell(&victim.retiring);
            return Admission::Retiring(Self::insert(&mut open, &self.open));
        }
        match oldest(&open, &silent) {
            Some(victim) => Admission::Replaced(Self::replace(&mut open, &self.open, victim)),
            None => Admission::Refused,
        }
    }
}

/// How long a new connection that has not spoken yet is spared while an older or a busy one can make room: a
/// client sends its request at once, so a second is ample, and a slow-loris head is still the first to go.
pub const SILENT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

impl Connections {
    /// A new connection's slot, in `open` (locked: `shared`).
    fn insert(open: &mut Open, shared: &Arc<Mutex<Open>>) -> Admitted {
        let id = open.next_id;
        open.next_id += 1;
        let slot = Arc::new(Slot::new());
        open.slots.insert(id, slot.clone());
        Admitted { id, slot, open: shared.clone() }
    }
}

impl Connections {
    /// Close `victim` (it makes room) and admit a new connection in its place.
    fn replace(open: &mut Open, shared: &Arc<Mutex<Open>>, victim: u64) -> Admitted {
        if let Some(slot) = open.slots.remove(&victim) {
            slot.tell(&slot.evicted);
        }
        Self::insert(open, shared)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limit whose silent connections have no grace: the order of the rest, alone.
    fn graceless(limit: Connections) -> Connections {
        Connections { grace: std::time::Duration::ZERO, ..limit }
    }

    fn admitted(admission: Admission) -> Admitted {
        match admission {
            Admission::Admitted(a) | Admission::Replaced(a) | Admission::Retiring(a) => a,
            Admission::Refused => panic!("refused"),
        }
    }

    #[tokio::test]
    async fn at_the_limit_the_oldest_silent_connection_makes_room_and_a_spoken_one_never_does() {
        let limit = graceless(Connections::new(3));
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
        let limit = graceless(Connections::new(2).evicting_idle());
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
        // Every open connection is serving a request: the slot kept for a new connection lets one in, and the
        // oldest busy one is told to close once its answer is out (never cut mid-answer).
        let Admission::Retiring(over) = limit.admit() else { panic!("one slot is kept for a new connection") };
        tokio::time::timeout(std::time::Duration::from_secs(5), busy.slot().retired()).await.unwrap();
        assert!(!busy.slot().evicted.load(Ordering::Relaxed), "retired, not cut");
        assert!(!newcomer.slot().retiring.load(Ordering::Relaxed), "the oldest goes first");
        assert_eq!(limit.open(), 3, "over the limit for the time an answer takes");
        over.slot().set_busy(true);
        let Admission::Retiring(last) = limit.admit() else { panic!("the next oldest busy one retires") };
        assert!(newcomer.slot().retiring.load(Ordering::Relaxed));
        // A connection that is neither established nor busy still makes room first, closed at once.
        let Admission::Replaced(_fresh) = limit.admit() else { panic!("the silent one makes room") };
        tokio::time::timeout(std::time::Duration::from_secs(5), last.slot().evicted()).await.unwrap();
        // Once the retiring ones have answered and closed, the count is back within the limit.
        drop((busy, newcomer));
        assert_eq!(limit.open(), 2);
    }

    #[tokio::test]
    async fn a_connection_serving_its_first_request_is_never_closed_to_make_room() {
        let limit = graceless(Connections::new(2).evicting_idle());
        let (scrape, refuser) = (admitted(limit.admit()), admitted(limit.admit()));
        // The older one's request is being answered: it has not spoken yet, but it is not silent either.
        scrape.slot().set_busy(true);
        let Admission::Replaced(_newcomer) = limit.admit() else { panic!("the idle silent one makes room") };
        tokio::time::timeout(std::time::Duration::from_secs(5), refuser.slot().evicted()).await.unwrap();
        assert!(!scrape.slot().evicted.load(Ordering::Relaxed), "a request in flight was closed to make room");
    }

    #[tokio::test]
    async fn a_new_connection_that_has_not_spoken_yet_is_spared_while_a_busy_one_can_retire() {
        let limit = Connections::new(2).evicting_idle();
        let (busy, young) = (admitted(limit.admit()), admitted(limit.admit()));
        busy.slot().set_busy(true);
        // The young one's request is on its way: the busy one answers and closes instead.
        let Admission::Retiring(_newcomer) = limit.admit() else { panic!("the busy one retires") };
        assert!(busy.slot().retiring.load(Ordering::Relaxed));
        assert!(!young.slot().evicted.load(Ordering::Relaxed), "a connection a moment old was closed");
        // With nothing busy left to retire, the young silent one makes room all the same.
        let Admission::Replaced(_) = limit.admit() else { panic!("the oldest silent one makes room") };
        assert!(young.slot().evicted.load(Ordering::Relaxed));
    }
}
