//! `bazaar probe <url>`: one GET to a health endpoint, answered by the exit code. The container
//! image has no shell and no curl, so its health check runs this.

use std::process::ExitCode;
use std::time::Duration;

use axum::body::Body;
use chassis::client::Transport;
use http::{Request, StatusCode, Uri};

use crate::args::{EXIT_USAGE, ProbeArgs};

/// Why a probe did not get a 2xx answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    /// Not a plain `http://` URL.
    #[error("{url:?} is not an http:// URL with a host")]
    Url { url: String },
    /// No answer at all.
    #[error("{url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// An answer, but not a 2xx one.
    #[error("{url} answered {status}")]
    Unhealthy { url: String, status: StatusCode },
}

pub(crate) async fn run(args: &ProbeArgs) -> ExitCode {
    match probe(&args.url, args.timeout).await {
        Ok(status) => {
            println!("{} answered {status}", args.url);
            ExitCode::SUCCESS
        }
        Err(error @ ProbeError::Url { .. }) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(error) => {
            eprintln!("unhealthy: {error}");
            ExitCode::FAILURE
        }
    }
}

/// GETs `url`; the status when it is 2xx.
pub(crate) async fn probe(url: &str, timeout: Duration) -> Result<StatusCode, ProbeError> {
    let uri = url
        .parse::<Uri>()
        .ok()
        .filter(|uri| uri.scheme_str() == Some("http") && uri.host().is_some())
        .ok_or_else(|| ProbeError::Url {
            url: url.to_owned(),
        })?;
    let unreachable = |reason: String| ProbeError::Unreachable {
        url: url.to_owned(),
        reason,
    };
    let request = Request::get(uri)
        .body(Body::empty())
        .map_err(|e| unreachable(e.to_string()))?;
    let response = tokio::time::timeout(timeout, Transport::http().send(request))
        .await
        .map_err(|_| {
            unreachable(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            ))
        })?
        .map_err(|e| unreachable(chassis::error::ErrorChain(&e).to_string()))?;
    let status = response.status();
    if status.is_success() {
        Ok(status)
    } else {
        Err(ProbeError::Unhealthy {
            url: url.to_owned(),
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::get;

    use super::*;

    #[tokio::test]
    async fn healthy_only_on_a_2xx_answer() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/health/ready", get(|| async { "ready" }))
            .route(
                "/health/draining",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "draining") }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let second = Duration::from_secs(1);

        assert_eq!(
            probe(&format!("http://{addr}/health/ready"), second).await?,
            StatusCode::OK
        );
        assert!(matches!(
            probe(&format!("http://{addr}/health/draining"), second).await,
            Err(ProbeError::Unhealthy { status, .. }) if status == StatusCode::SERVICE_UNAVAILABLE
        ));
        // Nobody listens on port 1.
        assert!(matches!(
            probe("http://127.0.0.1:1/health/ready", second).await,
            Err(ProbeError::Unreachable { .. })
        ));
        for bad in [
            "localhost:9090/health",
            "https://127.0.0.1/health",
            "not a url",
        ] {
            assert!(
                matches!(probe(bad, second).await, Err(ProbeError::Url { .. })),
                "{bad}"
            );
        }
        Ok(())
    }
}
