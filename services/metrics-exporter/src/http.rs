//! The HTTP endpoints: `GET /metrics`, `GET /healthz` and the status page `GET /`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use ngit_sync_shared::messages::now_ms;

use crate::exporter::Exporter;
use crate::Error;

pub fn router(exporter: Arc<Exporter>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/", get(page))
        .with_state(exporter)
}

/// Serves until `stop` is cancelled; open connections then finish their request.
pub async fn serve(
    listener: TcpListener,
    exporter: Arc<Exporter>,
    stop: CancellationToken,
) -> Result<(), Error> {
    axum::serve(listener, router(exporter))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .map_err(Error::Http)
}

async fn metrics(State(exporter): State<Arc<Exporter>>) -> Response {
    match exporter.render_metrics(now_ms()) {
        Ok(body) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    }
}

async fn healthz(State(exporter): State<Arc<Exporter>>) -> Response {
    match exporter.health() {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

async fn page(State(exporter): State<Arc<Exporter>>) -> Html<String> {
    Html(exporter.render_page(now_ms()))
}
