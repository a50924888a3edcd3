//! systemd's service notifications (`sd_notify(3)`), without libsystemd: one datagram per
//! message to the `AF_UNIX` socket that `$NOTIFY_SOCKET` names (a path, or `@name` for a
//! Linux abstract socket), each message newline-separated `KEY=VALUE` lines. systemd's
//! socket has `SO_PASSCRED`, so the kernel attaches our credentials itself (systemd drops
//! messages without them, and with the default `NotifyAccess=main` keeps only the main
//! PID's). Nothing is sent when `$NOTIFY_SOCKET` is unset.
//!
//! With `Type=notify` the exporter sends `READY=1` once it serves and reads, `STATUS=` lines
//! for `systemctl status`, `STOPPING=1` at shutdown, and, when `WatchdogSec=` is set
//! (`$WATCHDOG_USEC`, `$WATCHDOG_PID`), `WATCHDOG=1` every half period while its core is
//! healthy (`Core::check`): a dead or stuck core stops the pings and systemd restarts it.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often `STATUS=` is refreshed when no watchdog asks for more often.
const STATUS_EVERY: Duration = Duration::from_secs(10);
/// systemd reads at most this many bytes of a notification (`NOTIFY_BUFFER_MAX`, PIPE_BUF):
/// a status line is cut well below it.
const STATUS_MAX_BYTES: usize = 1024;

/// Why `$NOTIFY_SOCKET` cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotifyError {
    /// `vsock:` and relative paths (newer systemd) are not supported.
    #[error("NOTIFY_SOCKET={0:?}: only an absolute path or an @abstract name is supported")]
    Unsupported(String),
    /// The address is too long or has a NUL byte.
    #[error("NOTIFY_SOCKET={0:?}: {1}")]
    Address(String, io::Error),
    /// No datagram socket could be created.
    #[error("cannot create a datagram socket for NOTIFY_SOCKET: {0}")]
    Socket(io::Error),
}

/// The socket address `$NOTIFY_SOCKET` names: `/path`, or `@name` for the abstract socket
/// `\0name` (the `@` stands for the leading NUL byte).
pub(crate) fn socket_address(value: &OsStr) -> Result<SocketAddr, NotifyError> {
    let bytes = value.as_bytes();
    let shown = || value.to_string_lossy().into_owned();
    match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(Path::new(value)),
        Some(b'@') if bytes.len() > 1 => SocketAddr::from_abstract_name(&bytes[1..]),
        _ => return Err(NotifyError::Unsupported(shown())),
    }
    .map_err(|e| NotifyError::Address(shown(), e))
}

/// The watchdog ping interval: half of `$WATCHDOG_USEC` (as `sd_watchdog_enabled(3)`
/// recommends), if it is a positive number and `$WATCHDOG_PID` is unset or our PID (it is
/// meant for the main process, not for children that inherit the variables).
pub(crate) fn watchdog_interval(
    usec: Option<&OsStr>,
    pid: Option<&OsStr>,
    own_pid: u32,
) -> Option<Duration> {
    let usec: u64 = usec?.to_str()?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(pid) = pid {
        if pid.to_str()?.trim().parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

/// A `STATUS=` value: one line (control characters become spaces), at most
/// [`STATUS_MAX_BYTES`], cut at a character boundary.
pub(crate) fn status_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(STATUS_MAX_BYTES));
    for c in text.chars() {
        if out.len() + c.len_utf8() > STATUS_MAX_BYTES {
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// `CLOCK_MONOTONIC` in µs, as `MONOTONIC_USEC=` wants it (`Instant` reads the same clock
/// on Linux but does not show its value).
pub(crate) fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000)
        .saturating_add(ts.tv_nsec as u64 / 1_000)
}

/// The message that starts a reload.
fn reloading_message(usec: u64, status: &str) -> String {
    format!(
        "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS={}",
        status_line(status)
    )
}

struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// A failed send is logged once, until one succeeds again.
    failing: AtomicBool,
}

/// Sends notifications to the service manager; does nothing when not started by one.
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// No service manager: every message is dropped.
    pub(crate) fn disabled() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
        }
    }

    /// From `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`, which are then removed
    /// from the environment (as `sd_notify(unset_environment=1)` does), so that journalctl
    /// and `reaction` children do not inherit them. Call it before any thread starts:
    /// changing the environment is only sound while the process has one thread.
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let usec = std::env::var_os("WATCHDOG_USEC");
        let pid = std::env::var_os("WATCHDOG_PID");
        for k in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(k);
        }
        let Some(socket) = socket else {
            return Notifier::disabled();
        };
        match Notifier::new(&socket, usec.as_deref(), pid.as_deref(), std::process::id()) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("not notifying systemd: {e}");
                Notifier::disabled()
            }
        }
    }

    pub(crate) fn new(
        socket: &OsStr,
        watchdog_usec: Option<&OsStr>,
        watchdog_pid: Option<&OsStr>,
        own_pid: u32,
    ) -> Result<Notifier, NotifyError> {
        let addr = socket_address(socket)?;
        let sock = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        // A full queue on the manager's side drops a message instead of stalling a task.
        sock.set_nonblocking(true).map_err(NotifyError::Socket)?;
        Ok(Notifier {
            target: Some(Target {
                socket: sock,
                addr,
                failing: AtomicBool::new(false),
            }),
            watchdog: watchdog_interval(watchdog_usec, watchdog_pid, own_pid),
        })
    }

    /// Whether a service manager listens.
    pub(crate) fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog ping interval, when `WatchdogSec=` is set for us.
    pub(crate) fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Send one message (`KEY=VALUE` lines). Failures are logged once per streak.
    pub(crate) fn send(&self, message: &str) {
        let Some(t) = &self.target else { return };
        match t.socket.send_to_addr(message.as_bytes(), &t.addr) {
            Ok(_) => {
                if t.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("notifying systemd works again");
                }
            }
            Err(e) => {
                if !t.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!("cannot notify systemd (NOTIFY_SOCKET): {e}");
                }
            }
        }
    }

    pub(crate) fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", status_line(status)));
    }

    pub(crate) fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", status_line(status)));
    }

    /// A configuration reload starts: `RELOADING=1` with `MONOTONIC_USEC=` (the time
    /// systemd 253's `Type=notify-reload` matches to its reload job; older ones ignore
    /// it). [`Notifier::ready`] says when it is done, whatever its result.
    pub(crate) fn reloading(&self, status: &str) {
        self.send(&reloading_message(monotonic_usec(), status));
    }

    pub(crate) fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}", status_line(status)));
    }
}

/// What must be alive for the watchdog to be pinged: the core tasks (source, ingest, HTTP
/// server) still running, and ingest between batches or done with one within the ping
/// interval. Ingest holds `batches` (the lock over its position) while it records a batch;
/// taking it proves that ingest finishes batches, unless it released the lock in the middle
/// of one (to wait for reaction's configuration without holding up scrapes), which
/// [`InsideBatch`] tells.
pub(crate) struct Core<T> {
    pub(crate) tasks: Vec<(&'static str, tokio::task::AbortHandle)>,
    pub(crate) batches: Arc<tokio::sync::Mutex<T>>,
}

/// What the lock over ingest's batches guards tells the watchdog.
pub(crate) trait InsideBatch {
    /// Since when ingest has been in the middle of a batch without holding the lock, if it is.
    fn inside_since(&self) -> Option<std::time::Instant>;
}

impl InsideBatch for () {
    fn inside_since(&self) -> Option<std::time::Instant> {
        None
    }
}

impl<T: InsideBatch> Core<T> {
    /// Ok, or what is wrong, in words for `systemctl status`.
    pub(crate) async fn check(&self, within: Duration) -> Result<(), String> {
        if let Some((name, _)) = self.tasks.iter().find(|(_, t)| t.is_finished()) {
            return Err(format!("the {name} task has stopped"));
        }
        match tokio::time::timeout(within, self.batches.lock()).await {
            Ok(b) if b.inside_since().is_none_or(|t| t.elapsed() <= within) => Ok(()),
            _ => Err(format!(
                "ingest has been inside one batch of lines for more than {} ms",
                within.as_millis()
            )),
        }
    }
}

/// Send `READY=1`, then keep `STATUS=` current and ping the watchdog while `core` is
/// healthy, until aborted. Returns `None` (and sends nothing) without a service manager.
pub(crate) fn start<T: InsideBatch + Send + 'static>(
    notifier: Arc<Notifier>,
    core: Core<T>,
    status: impl Fn() -> String + Send + 'static,
) -> Option<tokio::task::JoinHandle<()>> {
    if !notifier.enabled() {
        return None;
    }
    let mut shown = status();
    notifier.ready(&shown);
    if let Some(every) = notifier.watchdog() {
        tracing::info!(
            interval_ms = every.as_millis() as u64,
            "systemd watchdog enabled: pinging while the source, ingest and HTTP server work"
        );
    }
    let every = notifier
        .watchdog()
        .map_or(STATUS_EVERY, |w| w.min(STATUS_EVERY));
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut healthy = true;
        loop {
            tick.tick().await;
            let now = match core.check(every).await {
                Ok(()) => {
                    if notifier.watchdog().is_some() {
                        notifier.send("WATCHDOG=1");
                    }
                    if !healthy {
                        tracing::info!("the exporter's core works again");
                        healthy = true;
                    }
                    status()
                }
                Err(why) => {
                    if healthy {
                        tracing::error!(
                            "{why}{}",
                            if notifier.watchdog().is_some() {
                                ": not pinging systemd's watchdog"
                            } else {
                                ""
                            }
                        );
                        healthy = false;
                    }
                    format!("unhealthy: {why}")
                }
            };
            if now != shown {
                notifier.status(&now);
                shown = now;
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    #[test]
    fn socket_addresses() {
        let a = socket_address(&os("/run/systemd/notify")).unwrap();
        assert_eq!(a.as_pathname(), Some(Path::new("/run/systemd/notify")));
        let a = socket_address(&os("@/org/freedesktop/systemd1/notify/123")).unwrap();
        assert_eq!(
            a.as_abstract_name(),
            Some(&b"/org/freedesktop/systemd1/notify/123"[..])
        );
        assert!(a.as_pathname().is_none());
        for bad in ["", "@", "relative/path", "vsock:2:1234"] {
            assert!(
                matches!(socket_address(&os(bad)), Err(NotifyError::Unsupported(_))),
                "{bad:?}"
            );
        }
        // Longer than sun_path (108 bytes): a clear error, not a truncated address.
        let long = format!("/{}", "x".repeat(200));
        assert!(matches!(
            socket_address(&os(&long)),
            Err(NotifyError::Address(..))
        ));
    }

    #[test]
    fn watchdog_interval_follows_sd_watchdog_enabled() {
        let w = |u: Option<&str>, p: Option<&str>| {
            watchdog_interval(u.map(OsStr::new), p.map(OsStr::new), 42)
        };
        assert_eq!(w(Some("30000000"), None), Some(Duration::from_secs(15)));
        assert_eq!(
            w(Some("30000000"), Some("42")),
            Some(Duration::from_secs(15))
        );
        // For another process (a parent's or a child's variables): not ours to ping.
        assert_eq!(w(Some("30000000"), Some("41")), None);
        assert_eq!(w(Some("30000000"), Some("x")), None);
        assert_eq!(w(Some("0"), None), None);
        assert_eq!(w(Some("-5"), None), None);
        assert_eq!(w(Some("soon"), None), None);
        assert_eq!(w(None, Some("42")), None);
    }

    #[test]
    fn status_is_one_bounded_line() {
        assert_eq!(status_line("a\nb\r\tc"), "a b  c");
        let long = "é".repeat(STATUS_MAX_BYTES);
        let cut = status_line(&long);
        assert!(cut.len() <= STATUS_MAX_BYTES && cut.len() > STATUS_MAX_BYTES - 2);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    /// A path and an abstract receiver get the exact datagrams.
    #[test]
    fn sends_datagrams_to_paths_and_abstract_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.as_os_str(), None, None, 1).unwrap();
        n.ready("serving\nhere");
        n.stopping("bye");
        let mut buf = [0u8; 4096];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving here");
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1\nSTATUS=bye");

        let name = format!("rme-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::new(&os(&format!("@{name}")), Some(&os("2000000")), None, 1).unwrap();
        assert_eq!(n.watchdog(), Some(Duration::from_secs(1)));
        n.send("WATCHDOG=1");
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    /// A reload's messages: RELOADING=1 with the monotonic clock (in µs, as systemd reads
    /// it: a value between two readings of the same clock), then READY=1.
    #[test]
    fn reloading_carries_the_monotonic_clock() {
        let before = monotonic_usec();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.as_os_str(), None, None, 1).unwrap();
        n.reloading("reloading");
        let after = monotonic_usec();
        let mut buf = [0u8; 4096];
        let len = rx.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..len]).unwrap();
        let lines: Vec<&str> = msg.lines().collect();
        assert_eq!(lines[0], "RELOADING=1");
        let usec: u64 = lines[1]
            .strip_prefix("MONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(before > 0 && before <= usec && usec <= after, "{msg}");
        assert_eq!(lines[2], "STATUS=reloading");
        assert_eq!(
            reloading_message(5, "a\nb"),
            "RELOADING=1\nMONOTONIC_USEC=5\nSTATUS=a b"
        );
    }

    /// A receiver that went away is logged, never fatal; disabled sends nothing.
    #[test]
    fn missing_receiver_is_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let n = Notifier::new(dir.path().join("gone").as_os_str(), None, None, 1).unwrap();
        n.send("READY=1");
        n.send("READY=1");
        assert!(!Notifier::disabled().enabled());
        Notifier::disabled().send("READY=1");
    }

    struct Inside(Option<std::time::Instant>);

    impl InsideBatch for Inside {
        fn inside_since(&self) -> Option<std::time::Instant> {
            self.0
        }
    }

    /// The watchdog's health check: a finished core task, or ingest keeping its batch lock
    /// (or inside a batch without it) past the interval, is unhealthy.
    #[tokio::test]
    async fn core_check_sees_dead_tasks_and_stuck_batches() {
        let alive = tokio::spawn(std::future::pending::<()>());
        let batches = Arc::new(tokio::sync::Mutex::new(()));
        let core = Core {
            tasks: vec![("source", alive.abort_handle())],
            batches: batches.clone(),
        };
        let short = Duration::from_millis(50);
        assert_eq!(core.check(short).await, Ok(()));
        let held = batches.clone().lock_owned().await;
        let err = core.check(short).await.unwrap_err();
        assert!(err.contains("inside one batch"), "{err}");
        drop(held);
        assert_eq!(core.check(short).await, Ok(()));
        // Inside a batch without the lock (waiting for reaction's configuration).
        let inside = Arc::new(tokio::sync::Mutex::new(Inside(Some(
            std::time::Instant::now() - Duration::from_secs(1),
        ))));
        let stuck = Core {
            tasks: vec![],
            batches: inside.clone(),
        };
        let err = stuck.check(short).await.unwrap_err();
        assert!(err.contains("inside one batch"), "{err}");
        inside.lock().await.0 = Some(std::time::Instant::now());
        assert_eq!(stuck.check(short).await, Ok(()));
        inside.lock().await.0 = None;
        assert_eq!(stuck.check(short).await, Ok(()));
        alive.abort();
        let _ = alive.await;
        assert_eq!(
            core.check(short).await,
            Err("the source task has stopped".to_string())
        );
    }
}
