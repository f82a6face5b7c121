//! The accept loop: HTTP/1.1 connections served by hyper with a header-read timeout, an
//! inactivity timeout and a cap on open connections, so no client (authenticated or not) can
//! hold the server's file descriptors or stop it from accepting.
//!
//! At the cap, the oldest connection that has no request in flight is closed to make room
//! (connections that never sent a complete request first, then idle keep-alive ones); if every
//! connection is busy, new ones wait in the kernel's accept backlog until one ends. A flood of
//! idle or slow connections therefore costs the attacker the slot it just took, not the service
//! its other clients.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tower::ServiceExt;

/// Connection limits of the HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client may take to send a complete request header, counted from when the
    /// server starts waiting for it: from the accept for the first request, from the end of the
    /// previous response on a keep-alive connection (hyper's `header_read_timeout`). So this is
    /// also the longest a keep-alive connection may sit idle between requests.
    pub header_read_timeout: Duration,
    /// How long a connection may go without a single byte read or written while a request is
    /// being received or answered (a stalled body upload, a client that stops reading).
    pub idle_timeout: Duration,
    /// The most connections open at once; lowered at start so that they fit in the process's
    /// file-descriptor limit with room for the data files.
    pub max_connections: usize,
}

impl HttpLimits {
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (the default soft limit, often 1024, is
/// far below what a server with many clients needs) and returns the soft limit now in force.
pub fn raise_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit only reads the struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            tracing::warn!(soft = limit.rlim_cur, hard = limit.rlim_max, "cannot raise the open-file limit");
        }
    }
    Some(limit.rlim_cur)
}

/// The connection cap that fits in `file_limit` descriptors: a quarter (at least 64) stays for
/// the journal, indexes, control store, lake files and the listener itself.
pub fn effective_max_connections(configured: usize, file_limit: Option<u64>) -> usize {
    let Some(limit) = file_limit else { return configured.max(1) };
    let reserve = (limit / 4).max(64);
    let fits = usize::try_from(limit.saturating_sub(reserve)).unwrap_or(usize::MAX);
    configured.min(fits).max(1)
}

/// One open connection, as the accept loop sees it.
struct Slot {
    opened: Instant,
    /// Requests whose response has not been fully sent.
    in_flight: AtomicUsize,
    /// Whether a complete request header has ever arrived.
    served: AtomicBool,
    evicting: AtomicBool,
    evict: Notify,
}

impl Slot {
    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

/// Decrements the connection's in-flight count when a response body is done (or dropped).
struct InFlight(Arc<Slot>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
struct Connections {
    open: Mutex<BTreeMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
}

impl Connections {
    fn insert(&self) -> (u64, Arc<Slot>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            evicting: AtomicBool::new(false),
            evict: Notify::new(),
        });
        self.open.lock().unwrap_or_else(|e| e.into_inner()).insert(id, slot.clone());
        (id, slot)
    }

    fn remove(&self, id: u64) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// Asks the oldest connection without a request in flight to close, preferring ones that
    /// never sent a request; false if every connection is busy.
    fn evict_one(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let victim = open
            .values()
            .filter(|slot| slot.idle() && !slot.evicting.load(Ordering::Acquire))
            .min_by_key(|slot| (slot.served.load(Ordering::Acquire), slot.opened));
        match victim {
            Some(slot) => {
                slot.evicting.store(true, Ordering::Release);
                slot.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// The stream with the time of its last read or write, for the inactivity timeout.
struct Watched {
    stream: TcpStream,
    epoch: Instant,
    last_activity_ms: Arc<AtomicU64>,
}

impl Watched {
    fn touch(&self) {
        let elapsed = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity_ms.store(elapsed, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.touch();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        result
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        result
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Whether an accept error means the process is out of file descriptors (or the system is):
/// retrying at once would spin, so the loop pauses instead.
fn is_resource_exhaustion(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open requests finish.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = limits.max_connections.max(1);
    tracing::info!(
        max_connections = max,
        header_read_timeout = ?limits.header_read_timeout,
        idle_timeout = ?limits.idle_timeout,
        "HTTP limits"
    );
    let permits = Arc::new(Semaphore::new(max));
    let connections = Arc::new(Connections::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut exhaustion_logged = false;
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_resource_exhaustion(&error) => {
                    if !exhaustion_logged {
                        tracing::warn!(%error, "cannot accept connections: out of file descriptors");
                        exhaustion_logged = true;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                // ECONNABORTED and the like concern one connection only.
                Err(error) => {
                    tracing::debug!(%error, "accept failed");
                    continue;
                }
            },
        };
        exhaustion_logged = false;
        let permit = loop {
            if let Ok(permit) = permits.clone().try_acquire_owned() {
                break Some(permit);
            }
            if !connections.evict_one() {
                tracing::debug!("at the connection cap with every connection busy: waiting");
            }
            // An evicted connection frees its slot within moments; if the one asked had just
            // started a request, ask again.
            tokio::select! {
                () = &mut shutdown => break None,
                permit = tokio::time::timeout(Duration::from_millis(100), permits.clone().acquire_owned()) => {
                    if let Ok(Ok(permit)) = permit {
                        break Some(permit);
                    }
                }
            }
        };
        let Some(permit) = permit else { break };
        // Small responses leave at once instead of waiting out Nagle's delay for an ACK.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let (id, slot) = connections.insert();
        let app = app.clone();
        let connections = connections.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, app, slot, limits, stop).await;
            connections.remove(id);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it ends: having them all back means all are done.
    let _ = permits.acquire_many(u32::try_from(max).unwrap_or(u32::MAX)).await;
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    slot: Arc<Slot>,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let last_activity_ms = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    let io = Watched { stream, epoch, last_activity_ms: last_activity_ms.clone() };
    let request_slot = slot.clone();
    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        request_slot.served.store(true, Ordering::Release);
        request_slot.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(request_slot.clone());
        request.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let response = app.oneshot(request.map(Body::new)).await.unwrap_or_else(|never| match never {});
            // The request counts as in flight until its response body is sent or dropped.
            Ok::<_, std::convert::Infallible>(response.map(move |body| {
                Body::new(body.map_frame(move |frame| {
                    let _ = &guard;
                    frame
                }))
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let tick = (limits.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut ticker = tokio::time::interval(tick);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    // Timeouts, resets and malformed requests: the client's business.
                    tracing::debug!(%error, "connection ended");
                }
                return;
            }
            () = slot.evict.notified() => {
                if slot.idle() {
                    tracing::debug!("closing an idle connection to make room at the connection cap");
                    return;
                }
                slot.evicting.store(false, Ordering::Release);
            }
            changed = stop.changed(), if !stopping => {
                if changed.is_err() || *stop.borrow() {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            _ = ticker.tick() => {
                // hyper's header timer covers the wait for a request; this covers a stalled
                // exchange once a request has started.
                let now = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
                let quiet = Duration::from_millis(now.saturating_sub(last_activity_ms.load(Ordering::Relaxed)));
                if !slot.idle() && quiet >= limits.idle_timeout {
                    tracing::debug!(?quiet, "closing a connection without traffic");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_for_data_files() {
        assert_eq!(effective_max_connections(4096, Some(256)), 192);
        assert_eq!(effective_max_connections(4096, Some(1024)), 768);
        assert_eq!(effective_max_connections(4096, Some(1_048_576)), 4096);
        assert_eq!(effective_max_connections(100, None), 100);
        assert_eq!(effective_max_connections(4096, Some(10)), 1);
    }

    #[test]
    fn eviction_prefers_connections_that_never_sent_a_request() {
        let connections = Connections::default();
        let (_, keep_alive) = connections.insert();
        keep_alive.served.store(true, Ordering::Release);
        let (_, busy) = connections.insert();
        busy.in_flight.store(1, Ordering::Release);
        let (_, silent) = connections.insert();
        assert!(connections.evict_one());
        assert!(silent.evicting.load(Ordering::Acquire));
        assert!(connections.evict_one());
        assert!(keep_alive.evicting.load(Ordering::Acquire));
        // Only the busy connection is left: nothing to evict.
        assert!(!connections.evict_one());
        assert!(!busy.evicting.load(Ordering::Acquire));
    }

    #[test]
    fn the_file_limit_is_raised_to_the_hard_limit() {
        let soft = raise_file_limit().expect("getrlimit works");
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct we own.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
        assert_eq!(soft, limit.rlim_cur);
        assert_eq!(limit.rlim_cur, limit.rlim_max);
    }
}
