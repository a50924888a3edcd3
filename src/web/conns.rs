//! The open connections, at most `max` of them, and what each is doing: waiting for a
//! request (idle, since when) or answering one (until its deadline).
//!
//! At the cap, a new connection takes the place of the connection that has been idle the
//! longest (waiting for a TLS handshake, a first request or the next one), which is closed;
//! when every connection is answering a request, the new one is closed at once. So idle or
//! trickling connections can never keep a scraper out: a scraper sends its request within
//! milliseconds of connecting, an idle connection is the oldest idle one long before that.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

#[derive(Debug)]
struct Phase {
    /// Answering a request: the deadline of its response.
    deadline: Option<Instant>,
    /// Waiting for a request, since when.
    idle_since: Option<Instant>,
    /// Requests received.
    requests: u64,
}

/// One connection's state, shared by its task, its requests and the table.
#[derive(Debug)]
pub(crate) struct Conn {
    phase: Mutex<Phase>,
    /// Wakes the connection's task when the deadline is set or cleared.
    changed: Notify,
    evicted: AtomicBool,
    evict: Notify,
}

impl Conn {
    fn new(now: Instant) -> Conn {
        Conn {
            phase: Mutex::new(Phase {
                deadline: None,
                idle_since: Some(now),
                requests: 0,
            }),
            changed: Notify::new(),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request arrived: its response must be handed over by `deadline`.
    pub(crate) fn request_started(&self, deadline: Instant) {
        {
            let mut p = self.phase();
            p.deadline = Some(deadline);
            p.idle_since = None;
            p.requests += 1;
        }
        self.changed.notify_one();
    }

    /// The response was handed over (or given up): waiting for the next request.
    pub(crate) fn response_done(&self) {
        {
            let mut p = self.phase();
            p.deadline = None;
            p.idle_since = Some(Instant::now());
        }
        self.changed.notify_one();
    }

    /// The deadline of the response being sent, if any.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.phase().deadline
    }

    /// Requests received so far.
    pub(crate) fn requests(&self) -> u64 {
        self.phase().requests
    }

    /// Resolves when the deadline is set or cleared.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await
    }

    /// Resolves when the table closed this connection to make room.
    pub(crate) async fn evicted(&self) {
        while !self.evicted.load(Ordering::Acquire) {
            self.evict.notified().await;
        }
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.evict.notify_one();
    }
}

/// The connection table.
#[derive(Debug)]
pub(crate) struct Table {
    max: usize,
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

/// What became of a new connection.
pub(crate) enum Admission {
    /// Room was free.
    Admitted(Slot),
    /// It took the place of the longest idle connection, idle for this long.
    Evicting(Slot, std::time::Duration),
    /// Every connection is answering a request: refused.
    Refused,
}

/// A connection's place in the table, given back when dropped.
pub(crate) struct Slot {
    table: Arc<Table>,
    id: u64,
    pub(crate) conn: Arc<Conn>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut conns = self.table.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.remove(&self.id);
    }
}

impl Table {
    pub(crate) fn new(max: usize) -> Arc<Table> {
        Arc::new(Table {
            max: max.max(1),
            next: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        })
    }

    /// Open connections.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// A place for a new connection (see the module documentation).
    pub(crate) fn admit(self: &Arc<Self>) -> Admission {
        let now = Instant::now();
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let mut evicted = None;
        if conns.len() >= self.max {
            let oldest = conns
                .iter()
                .filter_map(|(id, c)| c.phase().idle_since.map(|t| (t, *id)))
                .min();
            let Some((since, id)) = oldest else {
                return Admission::Refused;
            };
            if let Some(c) = conns.remove(&id) {
                c.evict();
            }
            evicted = Some(now.saturating_duration_since(since));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(now));
        conns.insert(id, conn.clone());
        let slot = Slot {
            table: self.clone(),
            id,
            conn,
        };
        match evicted {
            None => Admission::Admitted(slot),
            Some(idle) => Admission::Evicting(slot, idle),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(a: Admission) -> Slot {
        match a {
            Admission::Admitted(s) | Admission::Evicting(s, _) => s,
            Admission::Refused => panic!("refused"),
        }
    }

    #[tokio::test]
    async fn the_longest_idle_makes_room_busy_ones_never() {
        let t = Table::new(2);
        let a = slot(t.admit());
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = slot(t.admit());
        // Full: a (idle the longest) is closed for c.
        let c = match t.admit() {
            Admission::Evicting(s, _) => s,
            _ => panic!("no eviction"),
        };
        a.conn.evicted().await;
        assert!(!b.conn.evicted.load(Ordering::Acquire));
        // Both answering requests: the next one is refused.
        let far = Instant::now() + std::time::Duration::from_secs(60);
        b.conn.request_started(far);
        c.conn.request_started(far);
        assert!(matches!(t.admit(), Admission::Refused));
        // c done: it is idle, it makes room (then the newcomer leaves at once).
        c.conn.response_done();
        assert!(matches!(t.admit(), Admission::Evicting(..)));
        c.conn.evicted().await;
        assert_eq!(t.len(), 1);
        drop((a, c));
        assert_eq!(t.len(), 1);
        drop(b);
        assert_eq!(t.len(), 0);
    }
}
