//! The balancer's state as JSON ([`Status`]) and the small HTTP endpoint that serves it: `GET /status`,
//! `GET /healthz` (the balancer runs) and `GET /readyz` (at least one backend is healthy, else 503).

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::{Balancer, Error};

/// What `GET /status` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub healthy_backends: usize,
    pub backends: Vec<BackendStatus>,
}

/// One backend in [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub address: SocketAddr,
    pub healthy: bool,
    /// Client connections forwarded there and still open.
    pub active_connections: u64,
    /// Client connections ever forwarded there.
    pub total_connections: u64,
    /// Connects on behalf of a client that failed (the client then went to the next backend).
    pub failed_connections: u64,
    /// Health checks run so far.
    pub checks: u64,
    pub checks_passed_in_row: u32,
    pub checks_failed_in_row: u32,
    /// Why the most recent check failed; `null` when it passed.
    pub last_check_error: Option<String>,
}

impl Balancer {
    /// Serves `/status`, `/healthz` and `/readyz` on `listener` until `shutdown`.
    pub async fn serve_status(
        &self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let local = listener.local_addr().map_err(|source| Error::Io {
            context: "the status address".into(),
            source,
        })?;
        info!(address = %local, "serving status");
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "status: accept failed");
                    continue;
                }
            };
            let balancer = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(
                async move {
                    let service = hyper::service::service_fn(move |request| {
                        let answer = balancer.answer(&request);
                        async move { Ok::<_, Infallible>(answer) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        result = connection => {
                            if let Err(error) = result {
                                debug!(%error, "status connection failed");
                            }
                        }
                        () = shutdown.cancelled() => {}
                    }
                }
                .instrument(info_span!("status_connection", %peer)),
            );
        }
    }

    fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let text = |code: StatusCode, body: &str| {
            let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
            *response.status_mut() = code;
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        };
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        match request.uri().path() {
            "/status" => match serde_json::to_vec_pretty(&self.status()) {
                Ok(json) => {
                    let mut response = Response::new(Full::new(Bytes::from(json)));
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    response
                }
                Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{error}\n")),
            },
            "/healthz" | "/livez" => text(StatusCode::OK, "ok"),
            "/readyz" => {
                if self.status().healthy_backends > 0 {
                    text(StatusCode::OK, "ok")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "no healthy backend\n")
                }
            }
            _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
        }
    }
}
