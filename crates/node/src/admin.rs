//! The operations API of a peer: plain HTTP on `--admin ADDR` (meant for
//! loopback or a management network). `GET /status` returns the peer's
//! state as JSON; `GET /metrics` the same counters as Prometheus text.

use crate::peer::{AdminRequest, Input, Status};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::fmt::Write;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

pub(crate) async fn serve(listener: TcpListener, engine: mpsc::Sender<Input>) {
    let app = Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/certificate/{node_id}", get(certificate))
        .with_state(engine);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("admin API stopped: {e}");
    }
}

async fn ask(engine: &mpsc::Sender<Input>) -> Option<Status> {
    let (tx, rx) = oneshot::channel();
    engine.send(Input::Admin(AdminRequest::Status(tx))).await.ok()?;
    rx.await.ok()
}

async fn status(State(engine): State<mpsc::Sender<Input>>) -> Response {
    match ask(&engine).await {
        Some(s) => Json(s).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "the peer is stopping").into_response(),
    }
}

/// `GET /certificate/NODE_ID`: the CERTIFICATE_BY_NODE of a Node-ID,
/// fetched through the overlay.
async fn certificate(State(engine): State<mpsc::Sender<Input>>, Path(node_id): Path<String>) -> Response {
    let Some(node) = reload_wire::unhex(&node_id).and_then(|b| reload_wire::NodeId::from_slice(&b).ok()) else {
        return (StatusCode::BAD_REQUEST, "the path must end in a Node-ID in hex").into_response();
    };
    let (tx, rx) = oneshot::channel();
    if engine
        .send(Input::Admin(AdminRequest::Certificate(node, tx)))
        .await
        .is_err()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "the peer is stopping").into_response();
    }
    match rx.await {
        Ok(Ok(cert)) => Json(cert).into_response(),
        Ok(Err(why)) => (StatusCode::NOT_FOUND, why).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the peer is stopping").into_response(),
    }
}

async fn metrics(State(engine): State<mpsc::Sender<Input>>) -> Response {
    let Some(s) = ask(&engine).await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the peer is stopping").into_response();
    };
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    gauge(
        "p2psip_joined",
        "1 while the peer is part of the overlay",
        "gauge",
        s.joined as u64,
    );
    gauge(
        "p2psip_uptime_seconds",
        "Seconds since the peer started",
        "gauge",
        s.uptime_s,
    );
    gauge("p2psip_links", "Open overlay links", "gauge", s.links.len() as u64);
    gauge(
        "p2psip_fingers",
        "Finger table entries",
        "gauge",
        s.fingers.len() as u64,
    );
    gauge(
        "p2psip_messages_sent_total",
        "RELOAD messages sent",
        "counter",
        s.messages_sent,
    );
    gauge(
        "p2psip_messages_forwarded_total",
        "RELOAD messages forwarded for others",
        "counter",
        s.messages_forwarded,
    );
    gauge(
        "p2psip_messages_delivered_total",
        "RELOAD messages delivered to this peer",
        "counter",
        s.messages_delivered,
    );
    gauge(
        "p2psip_malformed_total",
        "Undecodable messages received",
        "counter",
        s.malformed,
    );
    gauge(
        "p2psip_errors_sent_total",
        "RELOAD Error answers sent",
        "counter",
        s.errors_sent,
    );
    let _ = writeln!(
        out,
        "# HELP p2psip_stored_items Stored values by Kind\n# TYPE p2psip_stored_items gauge"
    );
    for (kind, n) in &s.stored {
        let _ = writeln!(out, "p2psip_stored_items{{kind=\"{kind}\"}} {n}");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
