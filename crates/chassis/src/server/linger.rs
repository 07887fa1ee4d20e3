//! Lingering reads: a request answered before its body was read still gets its answer.
//!
//! A handler may answer without reading the body: a caller it refuses (401, 403), a body too
//! large (413), a route that takes none. Over HTTP/1.1 the server must then close the connection
//! (the unread bytes stand between it and the next request), and closing a socket with unread
//! data makes the kernel send a reset. A client still sending its body, or one that has not yet
//! read the response, then loses the response to the reset: it sees "connection reset" or "EOF
//! in violation of protocol" where the server had sent a clear 403 or 413.
//!
//! So a request body dropped before its end reads the rest in the background and throws it away,
//! within [`LINGER_BYTES`] and [`LINGER_TIME`], as nginx's `lingering_close` does. The
//! connection then stays open, the client reads its answer, and the next request follows on the
//! same connection. A client that sends more, or for longer, is cut off as before.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

/// The most a dropped body is read on for.
pub(super) const LINGER_TIME: Duration = Duration::from_secs(5);

/// The most bytes of a dropped body read and thrown away.
pub(super) const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// Wraps an HTTP/1 request's body so that, dropped unread, it drains ([module docs](self)).
/// Other versions close one stream, not the connection, and keep their bodies as they are.
pub(super) fn wrap(request: axum::extract::Request) -> axum::extract::Request {
    let lingers = request.version() <= http::Version::HTTP_11 && !request.body().is_end_stream();
    if lingers {
        request.map(|body| Body::new(Lingering { body: Some(body) }))
    } else {
        request
    }
}

/// A request body that drains when dropped before its end.
struct Lingering {
    /// `None` once the body has ended.
    body: Option<Body>,
}

impl HttpBody for Lingering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = std::task::ready!(Pin::new(body).poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            // Ended, or failed: either way there is nothing left to drain.
            self.body = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(body) = self.body.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        // Dropped outside a runtime (a test dropping a request): nothing is serving it anyway.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body, LINGER_BYTES, LINGER_TIME));
        }
    }
}

/// Reads `body` to its end and throws it away, giving up after `bytes` or `time`.
/// Returns how many bytes it read.
async fn drain(mut body: Body, bytes: usize, time: Duration) -> usize {
    let mut read = 0;
    let reading = async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                read += data.len();
                if read >= bytes {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(time, reading).await;
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    use futures_util::stream;

    fn request(version: http::Version, body: Body) -> axum::extract::Request {
        let mut request = axum::extract::Request::new(body);
        *request.version_mut() = version;
        request
    }

    fn chunks(n: usize) -> Body {
        Body::from_stream(stream::iter(
            (0..n).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(b"0123456789"))),
        ))
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_reads_the_same() {
        let request = wrap(request(http::Version::HTTP_11, chunks(3)));
        let body = request.into_body().collect().await.map(|c| c.to_bytes());
        assert_eq!(
            body.ok().as_deref(),
            Some(&b"012345678901234567890123456789"[..])
        );
    }

    /// Whether a request of `version`, dropped unread, keeps reading its body.
    fn drains_when_dropped(version: http::Version) -> bool {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let body = stream::unfold(receiver, |mut receiver| async move {
            let chunk = receiver.recv().await?;
            Some((Ok::<_, std::io::Error>(chunk), receiver))
        });
        drop(wrap(request(version, Body::from_stream(body))));
        // A drain holds the receiving end, so the sender can still send; dropped, it cannot.
        sender.send(Bytes::from_static(b"abc")).is_ok()
    }

    #[tokio::test]
    async fn an_http1_body_dropped_unread_is_drained_in_the_background() {
        assert!(drains_when_dropped(http::Version::HTTP_11));
        assert!(drains_when_dropped(http::Version::HTTP_10));
    }

    #[tokio::test]
    async fn an_http2_body_is_left_to_its_stream() {
        assert!(!drains_when_dropped(http::Version::HTTP_2));
    }

    #[tokio::test]
    async fn draining_stops_at_its_byte_bound() {
        assert_eq!(drain(chunks(10), 25, LINGER_TIME).await, 30);
        assert_eq!(drain(chunks(2), 25, LINGER_TIME).await, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn draining_stops_at_its_time_bound() {
        let endless = Body::from_stream(stream::pending::<Result<Bytes, std::io::Error>>());
        assert_eq!(drain(endless, LINGER_BYTES, LINGER_TIME).await, 0);
    }
}
