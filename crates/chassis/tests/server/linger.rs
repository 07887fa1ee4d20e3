//! A request answered before its body was read: the client still reads the answer, and the
//! connection carries its next request (the chassis drains the rest of the body).

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use chassis::client::Transport;
use chassis::config::ChassisConfig;
use chassis::{Server, ServiceInfo};
use http::StatusCode;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Sends one HTTP/1.1 request with a body of `size` bytes on `stream`, writing the body while
/// it reads the answer, as a client streaming an upload does; returns the status and body.
async fn exchange(
    stream: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    size: usize,
) -> std::io::Result<(u16, String)> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/octet-stream\r\ncontent-length: {size}\r\n\r\n"
    );
    let (reader, writer) = stream.get_mut().split();
    let write = async move {
        writer.writable().await?;
        let mut writer = tokio::io::BufWriter::new(writer);
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; 64 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len());
            writer.write_all(&chunk[..n]).await?;
            left -= n;
        }
        writer.flush().await
    };
    let mut reader = BufReader::new(reader);
    let read = async {
        let mut status_line = String::new();
        reader.read_line(&mut status_line).await?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status line: {status_line:?}")))?;
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().map_err(std::io::Error::other)?;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    let (written, answer) = tokio::join!(write, read);
    let answer = answer?;
    written?;
    Ok(answer)
}

#[tokio::test]
async fn an_answer_sent_before_the_body_was_read_reaches_the_client_and_the_connection_lives_on() {
    let mut config = ChassisConfig::with_port(0);
    config.discovery.registry = None;
    config.http.body_limit = 8 * 1024 * 1024;
    let info = ServiceInfo::new("linger", "1.0.0", &config);
    let server = Server::bind(info, &config).await.expect("binds");
    let url = server.url().to_owned();
    let addr = url.trim_start_matches("http://").to_owned();
    let app = Router::new()
        // Refuses without looking at the body, as an authorization layer does.
        .route("/refuse", post(|| async { StatusCode::FORBIDDEN }))
        .route(
            "/count",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route("/ping", get(|| async { "pong" }));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.serve(app, shutdown.clone()));
    assert!(
        chassis::health::wait_until_ready(&Transport::http(), &url, Some(Duration::from_secs(5)))
            .await
    );

    let mut stream = BufReader::new(TcpStream::connect(&addr).await.expect("connects"));
    for round in 0..3 {
        // Refused unread: 4 MiB, far more than the socket buffers hold.
        let (status, _) = exchange(&mut stream, "POST", "/refuse", 4 * 1024 * 1024)
            .await
            .unwrap_or_else(|error| panic!("round {round}: the 403 was lost: {error}"));
        assert_eq!(status, 403, "round {round}");
        // Over the body limit: refused with 413 from its content-length alone.
        let (status, body) = exchange(&mut stream, "POST", "/count", 12 * 1024 * 1024)
            .await
            .unwrap_or_else(|error| panic!("round {round}: the 413 was lost: {error}"));
        assert_eq!(status, 413, "round {round}: {body}");
        // And the same connection still serves: the drained bodies were not taken for requests.
        let (status, body) = exchange(&mut stream, "POST", "/count", 1000)
            .await
            .unwrap_or_else(|error| panic!("round {round}: the connection died: {error}"));
        assert_eq!((status, body.as_str()), (200, "1000"), "round {round}");
    }

    shutdown.cancel();
    task.await.expect("joins").expect("serves");
}
