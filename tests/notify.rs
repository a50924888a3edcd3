//! systemd notifications from the real binary, received on a real unix datagram socket
//! standing in for systemd's (`$NOTIFY_SOCKET`), with `SO_PASSCRED` set as systemd sets it so
//! that each datagram carries the sender's PID: systemd (`NotifyAccess=main`, the default of
//! `Type=notify`) accepts only messages whose credentials name the main PID.

use crate::common;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// One datagram: when it arrived, the sender's PID (from `SCM_CREDENTIALS`), its text.
#[derive(Debug, Clone)]
struct Message {
    at: Instant,
    pid: i32,
    text: String,
}

/// Receives every datagram on `socket` in a thread until dropped.
struct Receiver {
    messages: Arc<Mutex<Vec<Message>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn new(socket: UnixDatagram) -> Receiver {
        let fd = socket.as_raw_fd();
        let on: libc::c_int = 1;
        // SAFETY: a valid socket and an int option of the right size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                &on as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_PASSCRED");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, stopped) = (messages.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                if let Some((pid, text)) = recv_with_pid(&socket) {
                    sink.lock().unwrap().push(Message {
                        at: Instant::now(),
                        pid,
                        text,
                    });
                }
            }
        });
        Receiver { messages, stop }
    }

    fn all(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }

    /// Wait for a message containing `needle`; return it.
    fn wait(&self, needle: &str, timeout: Duration) -> Message {
        wait_for(timeout, &format!("a notification with {needle:?}"), || {
            self.all().into_iter().find(|m| m.text.contains(needle))
        })
    }

    fn pings(&self) -> Vec<Instant> {
        self.all()
            .iter()
            .filter(|m| m.text == "WATCHDOG=1")
            .map(|m| m.at)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One `recvmsg`: the payload and the sender's PID from its `SCM_CREDENTIALS`.
fn recv_with_pid(socket: &UnixDatagram) -> Option<(i32, String)> {
    let mut buf = [0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: plain recvmsg into buffers owned here; the control message is read within the
    // length the kernel reports, through the CMSG_* helpers.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(socket.as_raw_fd(), &mut msg, 0);
        if n < 0 {
            return None;
        }
        let mut pid = -1;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_CREDENTIALS {
                let cred = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::ucred);
                pid = cred.pid;
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Some((
            pid,
            String::from_utf8_lossy(&buf[..n as usize]).into_owned(),
        ))
    }
}

/// The largest gap between consecutive instants (and from `from` to the first).
fn largest_gap(from: Instant, at: &[Instant]) -> Duration {
    let mut last = from;
    let mut gap = Duration::ZERO;
    for t in at {
        gap = gap.max(t.saturating_duration_since(last));
        last = *t;
    }
    gap
}

/// Type=notify with WatchdogSec=2s: READY=1 once the port answers, STATUS lines with what it
/// reads, where it serves and the lines read, WATCHDOG=1 every second and never 2 s apart,
/// none for longer than WatchdogSec while ingest is stuck inside a batch (a reload of
/// reaction's configuration made to hang), pings again afterwards, and STOPPING=1 at SIGTERM
/// with no ping after it. The bounds are WatchdogSec itself, what systemd acts on, so that a
/// busy test machine delaying a ping by a few hundred ms does not fail the test.
#[test]
fn ready_status_watchdog_and_stopping_on_a_path_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let rx = Receiver::new(UnixDatagram::bind(&socket_path).unwrap());
    let reaction = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    append(&log, &ssh_match("192.0.2.1", "root"));
    let config = file_config(&log, &reaction, "").replace("timeout: 2\n", "timeout: 10\n");
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, config).unwrap();
    let started = Instant::now();
    let e = Exporter::start_with(
        &config_path,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            // WatchdogSec=2s, as systemd passes it.
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    let pid = e.child.id() as i32;

    let ready = rx.wait("READY=1", Duration::from_secs(10));
    // The port answers as soon as READY=1 arrives.
    let (status, _, _) = get(&e.addr, "/", None);
    assert_eq!(status, 200);
    assert_eq!(rx.all()[0].text, ready.text, "READY=1 comes first");
    assert_eq!(
        ready.pid, pid,
        "sent by the main process (NotifyAccess=main)"
    );
    let expected = format!(
        "READY=1\nSTATUS=reading {}, serving http://{}/metrics, ",
        log.display(),
        e.addr
    );
    assert!(ready.text.starts_with(&expected), "{:?}", ready.text);

    // STATUS follows the lines read.
    append(&log, &ssh_match("192.0.2.2", "admin"));
    append(&log, &ssh_match("192.0.2.3", "admin"));
    rx.wait(", 3 lines read", Duration::from_secs(10));

    // Pings every second, never 2 s apart (systemd would kill it).
    std::thread::sleep(Duration::from_millis(3500));
    let pings = rx.pings();
    assert!(pings.len() >= 3, "{:?}", rx.all());
    let gap = largest_gap(ready.at, &pings);
    assert!(gap < Duration::from_secs(2), "largest gap {gap:?}");

    // A reaction restart makes ingest reload reaction's configuration inside the batch;
    // `test-config` hangs 4 s: no ping while ingest is stuck (longer than
    // WatchdogSec: systemd would restart it), then pings again.
    reaction.set_state(serde_json::json!({"delay": {"test-config": 4}}));
    let stall = Instant::now();
    append(&log, "INFO start command: run [\"true\"]\n");
    let unhealthy = rx.wait("STATUS=unhealthy: ingest", Duration::from_secs(10));
    assert!(
        unhealthy.text.contains("inside one batch"),
        "{}",
        unhealthy.text
    );
    rx.wait(", 4 lines read", Duration::from_secs(10));
    let resumed = wait_for(Duration::from_secs(5), "pings after the stall", || {
        rx.pings()
            .into_iter()
            .find(|t| *t > stall + Duration::from_secs(4))
    });
    let during: Vec<_> = rx
        .pings()
        .into_iter()
        .filter(|t| *t > stall && *t <= resumed)
        .collect();
    let gap = largest_gap(stall, &during);
    assert!(
        gap > Duration::from_secs(2),
        "pings went on while ingest was stuck: largest gap {gap:?}"
    );
    // Healthy again: the status line says what it reads once more.
    wait_for(
        Duration::from_secs(5),
        "a healthy status after the stall",
        || {
            rx.all()
                .iter()
                .rev()
                .find(|m| m.text.starts_with("STATUS="))
                .filter(|m| m.at > unhealthy.at && m.text.contains("serving http://"))
                .cloned()
        },
    );

    assert!(e.terminate().success());
    let all = rx.all();
    let stopping = all
        .iter()
        .position(|m| m.text.starts_with("STOPPING=1\nSTATUS=stopping"))
        .unwrap_or_else(|| panic!("no STOPPING=1 in {all:?}"));
    assert!(
        all[stopping..].iter().all(|m| m.text != "WATCHDOG=1"),
        "a ping after STOPPING=1: {all:?}"
    );
    assert!(all.iter().all(|m| m.pid == pid), "{all:?}");
    assert_eq!(all.iter().filter(|m| m.text.contains("READY=1")).count(), 1);
    eprintln!("notify test took {:?}", started.elapsed());
}

/// An abstract socket (`@name`, the other form `sd_notify(3)` documents) gets the messages
/// too, and `WATCHDOG_PID` naming another process disables the pings: the
/// variables were meant for someone else.
#[test]
fn abstract_socket_and_watchdog_pid_of_another_process() {
    use std::os::linux::net::SocketAddrExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("rme-notify-{}-{nanos}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let rx = Receiver::new(UnixDatagram::bind_addr(&addr).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let reaction = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    append(&log, "");
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, file_config(&log, &reaction, "")).unwrap();
    let e = Exporter::start_with(
        &config_path,
        &[
            ("NOTIFY_SOCKET", &format!("@{name}")),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    let ready = rx.wait("READY=1", Duration::from_secs(10));
    assert_eq!(ready.pid, e.child.id() as i32);
    std::thread::sleep(Duration::from_millis(800));
    assert!(rx.pings().is_empty(), "{:?}", rx.all());
    assert!(e.terminate().success());
    rx.wait("STOPPING=1", Duration::from_secs(5));
}

/// A reload (SIGHUP) is told as systemd's reload protocol has it: `RELOADING=1` with
/// `MONOTONIC_USEC=` (CLOCK_MONOTONIC in µs, between two readings of that clock here), then
/// `READY=1` once done, also when the configuration is refused.
#[test]
fn reload_sends_reloading_then_ready() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let rx = Receiver::new(UnixDatagram::bind(&socket_path).unwrap());
    let reaction = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    let config = file_config(&log, &reaction, "");
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, &config).unwrap();
    let e = Exporter::start_with(
        &config_path,
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
    );
    rx.wait("READY=1", Duration::from_secs(10));
    let monotonic = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid, writable timespec.
        assert_eq!(
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) },
            0
        );
        ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
    };
    for (round, text) in [(1, config.clone()), (2, "loglevel: [".to_string())] {
        std::fs::write(&config_path, text).unwrap();
        let before = monotonic();
        signal(&e.child, 1);
        let ready = wait_for(Duration::from_secs(10), "READY=1 after the reload", || {
            let all = rx.all();
            let reloading: Vec<_> = all
                .iter()
                .enumerate()
                .filter(|(_, m)| m.text.starts_with("RELOADING=1\n"))
                .collect();
            let (i, _) = *reloading.get(round - 1)?;
            all[i + 1..]
                .iter()
                .find(|m| m.text.starts_with("READY=1"))
                .cloned()
                .map(|r| (all[i].clone(), r))
        });
        let after = monotonic();
        let (reloading, ready) = ready;
        let usec: u64 = reloading
            .text
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .unwrap_or_else(|| panic!("{:?}", reloading.text))
            .parse()
            .unwrap();
        assert!(before <= usec && usec <= after, "{before} {usec} {after}");
        let expected = if round == 1 {
            "STATUS=configuration reloaded"
        } else {
            "STATUS=configuration reload refused"
        };
        assert!(ready.text.contains(expected), "{:?}", ready.text);
        assert_eq!(ready.pid, e.child.id() as i32);
    }
    assert!(e.terminate().success());
}
