//! The accept loop: hyper's HTTP/1.1 connection serving the axum router
//! with the limits `axum::serve` does not have (issue 17, item 3).
//!
//! - At most `max_connections` are open; the next one waits in the kernel's
//!   accept backlog (it is not accepted, so it holds no descriptor of ours)
//!   until one closes.
//! - A connection with no request in flight that receives no byte for
//!   `idle` is closed (a fresh connection that sends nothing, and a
//!   keep-alive connection between requests).
//! - A request head must arrive whole within `header` of its first byte
//!   (slowloris).
//! - A request body must arrive whole within `body` of its head; a handler
//!   reading it then gets [`BodyTimedOut`] and answers 408, and the
//!   connection is closed.
//!
//! A response, once started, is not limited: a long completion streams for
//! as long as it takes, and a client that goes away cancels it.
//!
//! Shutdown: the loop stops accepting, every open connection finishes its
//! request in flight and closes (hyper's graceful shutdown), and `serve`
//! returns when the last one is closed.
//!
//! Only HTTP/1.1 is served (`axum::serve` also took HTTP/2 with prior
//! knowledge; no OpenAI client uses it over plain TCP).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{Request, Response};
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower_service::Service;

/// The connection limits (`--header-timeout`, `--body-timeout`,
/// `--idle-timeout`, `--max-connections`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header: Duration,
    pub body: Duration,
    pub idle: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    /// llama-server's `--timeout` is 600 s for everything; these are tighter
    /// because each only bounds a wait for the client, never a generation.
    fn default() -> Limits {
        Limits {
            header: Duration::from_secs(30),
            body: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    // Semaphore permits are u32; more connections than that is no limit.
    let max = limits.max_connections.clamp(1, u32::MAX as usize >> 1);
    let permits = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        // A permit first: past the cap, connections stay in the backlog.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let tcp = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors (EMFILE) or a connection reset
                    // before it was accepted: wait a little, as axum::serve
                    // does, instead of spinning.
                    if !is_connection_error(&e) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            connection(tcp, app, limits, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Each connection holds a permit until it is closed.
    let _ = permits.acquire_many(max as u32).await;
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// What the watchdog of one connection needs to know, in milliseconds
/// since the connection was accepted.
struct Activity {
    t0: Instant,
    /// Requests whose response has not been sent to its end.
    in_flight: AtomicUsize,
    /// When the first byte of the current request head arrived (`NONE`:
    /// none since the last request).
    head_started: AtomicU64,
    /// When the connection last had nothing to do.
    idle_since: AtomicU64,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn now(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let now = self.now();
            let _ =
                self.head_started
                    .compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Why the connection must be closed now, if it must.
    fn expired(&self, limits: &Limits) -> Option<&'static str> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let now = self.now();
        let head = self.head_started.load(Ordering::Acquire);
        if head != NONE {
            (now.saturating_sub(head) >= limits.header.as_millis() as u64).then_some("header")
        } else {
            let idle = self.idle_since.load(Ordering::Acquire);
            (now.saturating_sub(idle) >= limits.idle.as_millis() as u64).then_some("idle")
        }
    }
}

/// Held from a request's head until its response body is dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(a: &Arc<Activity>) -> InFlight {
        a.in_flight.fetch_add(1, Ordering::AcqRel);
        a.head_started.store(NONE, Ordering::Release);
        InFlight(Arc::clone(a))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since.store(a.now(), Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn connection(tcp: TcpStream, app: Router, limits: Limits, mut stop: watch::Receiver<bool>) {
    let activity = Arc::new(Activity {
        t0: Instant::now(),
        in_flight: AtomicUsize::new(0),
        head_started: AtomicU64::new(NONE),
        idle_since: AtomicU64::new(0),
    });
    let io = TokioIo::new(Tracked {
        inner: tcp,
        activity: Arc::clone(&activity),
    });
    let svc = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let guard = InFlight::enter(&activity);
            let req = req.map(|b| Body::new(TimeoutBody::new(b, limits.body)));
            let mut app = app.clone();
            async move {
                // Router is always ready (axum's docs), so no poll_ready.
                let resp: Response<Body> = match app.call(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(resp.map(|b| {
                    Body::new(Guarded {
                        inner: b,
                        _guard: guard,
                    })
                }))
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        // The watchdog below times heads and idle waits; hyper's own header
        // timer would also run between requests and cut idle connections
        // at the header timeout.
        .header_read_timeout(None)
        .keep_alive(true)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    let tick = (limits.header.min(limits.idle) / 8)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let watchdog = async {
        loop {
            tokio::time::sleep(tick).await;
            if activity.expired(&limits).is_some() {
                return;
            }
        }
    };
    tokio::pin!(watchdog);
    tokio::select! {
        _ = conn.as_mut() => return,
        // Dropping the connection closes the socket.
        () = &mut watchdog => return,
        _ = stop.wait_for(|s| *s) => {}
    }
    // Shutting down: finish the request in flight, then close.
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = conn.as_mut() => {}
        () = &mut watchdog => {}
    }
}

/// The socket, noting when bytes arrive.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The error a request body gives when it has not arrived whole within
/// `--body-timeout`; handlers answer it with 408.
#[derive(Debug)]
pub struct BodyTimedOut(pub Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} s (--body-timeout)",
            self.0.as_secs_f64()
        )
    }
}

impl std::error::Error for BodyTimedOut {}

/// Is `e`, or what caused it, a [`BodyTimedOut`]?
pub(crate) fn body_timed_out<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a BodyTimedOut> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<BodyTimedOut>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

/// A request body with a deadline for its last byte.
struct TimeoutBody {
    inner: Incoming,
    limit: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl TimeoutBody {
    fn new(inner: Incoming, limit: Duration) -> TimeoutBody {
        TimeoutBody {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl http_body::Body for TimeoutBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(r) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(r.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request counted as in flight.
struct Guarded {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
