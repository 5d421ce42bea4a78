//! systemd's notify protocol (`Type=notify`, `WatchdogSec=`), implemented directly: one Unix
//! datagram per state change to the socket named by `NOTIFY_SOCKET` (a path, or `@name` in the
//! abstract namespace). No dependency, no C.
//!
//! Liveness comes from the loop, not from output: [`watchdog`] pings `WATCHDOG=1` only while the
//! runtime's progress counter moves (it moves after every step and every idle wake-up), so a
//! step that hangs stops the pings and systemd restarts the service after `WatchdogSec`.
//! `WatchdogSec` must therefore exceed the longest step kaizen may take (source, canary and
//! notifier timeouts).

use std::os::unix::net::UnixDatagram;
use std::time::Duration;
use tokio::sync::watch;

/// A connection to the service manager's notify socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    target: std::os::unix::net::SocketAddr,
    name: String,
}

/// The notify socket could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` names something this process cannot address.
    #[error("NOTIFY_SOCKET={name:?}: {source}")]
    Socket {
        /// The value.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A message could not be sent.
    #[error("cannot notify systemd at {name:?}: {source}")]
    Send {
        /// The socket.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Notifier {
    /// The notifier for `NOTIFY_SOCKET`, if it is set (not under systemd: `Ok(None)`).
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var_os("NOTIFY_SOCKET") {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => Notifier::new(&v.to_string_lossy()).map(Some),
        }
    }

    /// A notifier for the socket `name` (a path, or `@abstract`).
    pub fn new(name: &str) -> Result<Notifier, NotifyError> {
        let err = |source| NotifyError::Socket {
            name: name.to_string(),
            source,
        };
        let target = if let Some(abstract_name) = name.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt as _;
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
                .map_err(err)?
        } else {
            std::os::unix::net::SocketAddr::from_pathname(name).map_err(err)?
        };
        let socket = UnixDatagram::unbound().map_err(err)?;
        Ok(Notifier {
            socket,
            target,
            name: name.to_string(),
        })
    }

    /// Sends one message (newline-separated `KEY=VALUE` assignments).
    pub fn notify(&self, state: &str) -> Result<(), NotifyError> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.target)
            .map(|_| ())
            .map_err(|source| NotifyError::Send {
                name: self.name.clone(),
                source,
            })
    }

    /// Sends `state`, logging (never failing on) an error: losing the service manager is no
    /// reason to stop improving the service.
    pub fn tell(&self, state: &str) {
        if let Err(e) = self.notify(state) {
            tracing::warn!("kaizen stage=systemd {e}");
        }
    }
}

/// The watchdog interval systemd expects pings within (`WATCHDOG_USEC`, for this process when
/// `WATCHDOG_PID` is set), if any.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings `WATCHDOG=1` every half `interval` while `progress` has moved since the last ping;
/// when it stops moving the pings stop (and systemd acts). Returns when `progress` closes.
pub async fn watchdog(notifier: &Notifier, mut progress: watch::Receiver<u64>, interval: Duration) {
    let period = (interval / 2).max(Duration::from_millis(10));
    // The first tick pings: the loop got far enough to say READY.
    let mut last = None;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        ticker.tick().await;
        if progress.has_changed().is_err() {
            return;
        }
        let now = Some(*progress.borrow_and_update());
        if now != last {
            last = now;
            warned = false;
            notifier.tell("WATCHDOG=1");
        } else if !warned {
            tracing::warn!(
                "kaizen stage=systemd the loop has made no progress for {period:?}; watchdog pings withheld"
            );
            warned = true;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(&path.to_string_lossy()).unwrap();
        n.notify("READY=1\nSTATUS=running").unwrap();
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=running");
    }

    #[tokio::test]
    async fn pings_follow_progress_and_stop_when_it_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_nonblocking(true).unwrap();
        let n = Notifier::new(&path.to_string_lossy()).unwrap();
        let (tx, rx) = watch::channel(0u64);
        let dog = tokio::spawn(async move { watchdog(&n, rx, Duration::from_millis(40)).await });
        let mut buf = [0u8; 64];
        let start = std::time::Instant::now();
        // The first tick pings; then each bump earns one ping once the ticker sees it.
        for i in 0..=3u64 {
            if i > 0 {
                tx.send_replace(i);
            }
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if let Ok(len) = server.recv(&mut buf) {
                    assert_eq!(&buf[..len], b"WATCHDOG=1");
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "no ping for bump {i}"
                );
            }
        }
        // No progress: several periods pass without a ping.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(server.recv(&mut buf).is_err(), "a ping without progress");
        drop(tx);
        dog.await.unwrap();
    }
}
