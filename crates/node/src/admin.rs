//! The operations API of a peer: plain HTTP on `--admin ADDR` (meant for
//! loopback or a management network). `GET /` is the dashboard, a page
//! that draws the ring and this peer's state from the endpoints below and
//! refreshes itself. `GET /status` returns the peer's
//! state as JSON; `GET /metrics` what it does as OpenMetrics text (see
//! [`crate::metrics`]);
//! `GET /ring` walks the whole overlay; `GET /certificate/NODE_ID` fetches
//! a peer's certificate from the overlay; `GET /responsible/NAME` names the
//! peer responsible for a resource (a user's AOR, say) and its distance in
//! overlay hops; `GET /held/NAME` what this peer itself holds under it,
//! by Kind (as responsible peer or replica). `GET /configuration` returns the signed configuration
//! document the peer runs on; `POST /configuration` offers it a new one
//! (RFC 6940 §6.5.4: taken only if a configuration-signer of the current
//! document signed it and its sequence is newer, then handed on to the
//! whole overlay), which is what `p2psip config publish --peer` does.
//!
//! Bounded like every listener (issue 36 §10): at most 64 connections, 16
//! from one address; a request's header must arrive within 10 s; a
//! connection lasts at most 5 minutes. With a token (required when it
//! listens beyond loopback), every endpoint but the dashboard page itself
//! wants `Authorization: Bearer TOKEN`; the page takes the token from its
//! URL fragment (`/#token=...`, never sent to the server) for its fetches.

use crate::peer::{AdminRequest, Held, Input, ProbedPeer, Responsible, RingWalk, Status};
use crate::sip_server::SipControl;
use crate::source_caps::ConnectionCaps;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// Connections the admin API serves at once, and from one address.
const MAX_CONNECTIONS: usize = 64;
const MAX_CONNECTIONS_PER_SOURCE: usize = 16;
/// A request's header must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a connection lasts (a ring walk of a large overlay takes
/// seconds, not minutes).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// The engine task, and the SIP task when the peer runs one.
#[derive(Clone)]
struct Tasks {
    engine: mpsc::Sender<Input>,
    sip: Option<mpsc::Sender<SipControl>>,
}

pub(crate) async fn serve(
    listener: TcpListener,
    engine: mpsc::Sender<Input>,
    sip: Option<mpsc::Sender<SipControl>>,
    token: Option<String>,
) {
    let status_routes = Router::new().route("/status", get(status)).with_state(Tasks {
        engine: engine.clone(),
        sip,
    });
    let app = Router::new()
        .route("/", get(dashboard))
        .route("/metrics", get(metrics))
        .route("/certificate/{node_id}", get(certificate))
        .route("/ring", get(ring))
        .route("/responsible/{name}", get(responsible))
        .route("/held/{name}", get(held))
        .route(
            "/configuration",
            get(configuration)
                .post(configure)
                .layer(axum::extract::DefaultBodyLimit::max(
                    crate::config_doc::MAX_DOCUMENT_SIZE,
                )),
        )
        .with_state(engine)
        .merge(status_routes)
        .layer(axum::middleware::from_fn_with_state(token.map(Arc::new), bearer_token))
        .layer(axum::middleware::from_fn(only_addressed_by_ip));
    let caps = ConnectionCaps::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_SOURCE);
    loop {
        let (tcp, remote) = crate::source_caps::accept(&listener).await;
        // Past the caps the connection is closed at once.
        let Ok(admitted) = caps.admit(remote.ip()) else {
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _admitted = admitted;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
        });
    }
}

/// With a token, every request but the dashboard page needs
/// `Authorization: Bearer TOKEN` (compared in constant time).
async fn bearer_token(
    State(token): State<Option<Arc<String>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .and_then(|h| {
            h.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        })
        .map(|(_, given)| given.trim())
        .unwrap_or_default();
    let matches =
        given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if matches || request.uri().path() == "/" {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"p2psip admin\"")],
            "this admin API wants Authorization: Bearer TOKEN (P2PSIP_ADMIN_TOKEN for the p2psip commands)",
        )
            .into_response()
    }
}

/// Refuses a request whose Host is a name other than `localhost`: a web
/// page in the operator's browser that rebinds its own name to this
/// address (DNS rebinding) would otherwise read the API through it. The
/// API is reached by address (`--admin` takes one), so nothing else needs
/// a name.
async fn only_addressed_by_ip(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if host_is_address(host) {
        next.run(request).await
    } else {
        (
            StatusCode::MISDIRECTED_REQUEST,
            "address the admin API by IP address or localhost",
        )
            .into_response()
    }
}

/// Whether an HTTP Host value names an IP address or localhost, with or
/// without a port.
fn host_is_address(host: &str) -> bool {
    if host.parse::<std::net::SocketAddr>().is_ok() || host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.parse::<u16>().is_ok() => name,
        _ => host,
    };
    name.eq_ignore_ascii_case("localhost") || name.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok()
}

/// The dashboard: one self-contained page (no outside scripts, styles or
/// fonts) that reads `/status`, `/ring` and `/metrics`.
async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
        ],
        include_str!("dashboard.html"),
    )
        .into_response()
}

async fn ask(engine: &mpsc::Sender<Input>) -> Option<Status> {
    let (tx, rx) = oneshot::channel();
    engine.send(Input::Admin(AdminRequest::Status(tx))).await.ok()?;
    rx.await.ok()
}

/// `GET /status`: the engine's state, with the SIP side's when it runs.
async fn status(State(tasks): State<Tasks>) -> Response {
    let Some(mut status) = ask(&tasks.engine).await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the peer is stopping").into_response();
    };
    if let Some(sip) = &tasks.sip {
        let (tx, rx) = oneshot::channel();
        if sip.send(SipControl::Status(tx)).await.is_ok() {
            status.sip = rx.await.ok();
        }
    }
    Json(status).into_response()
}

/// `GET /certificate/NODE_ID`: the CERTIFICATE_BY_NODE of a Node-ID,
/// fetched through the overlay.
async fn certificate(State(engine): State<mpsc::Sender<Input>>, Path(node_id): Path<String>) -> Response {
    let Some(node) = reload_wire::NodeId::from_hex(&node_id) else {
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

/// `GET /responsible/NAME`: the peer responsible for the resource named
/// NAME (for a SIP user, the AOR without scheme, RFC 7904 §3), found by a
/// Probe (§6.4.2.5) routed to its Resource-ID like any Fetch or Store of
/// it, so `hops` is the length of the lookup path from this peer.
async fn responsible(State(engine): State<mpsc::Sender<Input>>, Path(name): Path<String>) -> Response {
    let (tx, rx) = oneshot::channel();
    // A send that fails drops `tx`, so the wait below ends too.
    let _ = engine
        .send(Input::Admin(AdminRequest::ResourceId(name.clone(), tx)))
        .await;
    let Ok(resource) = rx.await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the peer is stopping").into_response();
    };
    match probe(&engine, resource.clone()).await {
        Ok(peer) => Json(Responsible {
            name,
            resource_id: reload_wire::hex(resource.as_bytes()),
            peer,
        })
        .into_response(),
        Err(why) => (StatusCode::BAD_GATEWAY, format!("no answer to a Probe: {why}")).into_response(),
    }
}

/// `GET /held/NAME`: the values this peer holds under the resource named
/// NAME, by Kind; asks nothing of the overlay.
async fn held(State(engine): State<mpsc::Sender<Input>>, Path(name): Path<String>) -> Response {
    let (tx, rx) = oneshot::channel();
    let _ = engine.send(Input::Admin(AdminRequest::Held(name, tx))).await;
    match rx.await {
        Ok(held) => Json::<Held>(held).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the peer is stopping").into_response(),
    }
}

/// The most peers one walk visits: a bound on the work a single request can
/// cause, far above any overlay this peer expects to see.
const RING_WALK_LIMIT: usize = 100_000;

/// `GET /ring`: walks the overlay by Probe (§6.4.2.5). A Probe addressed to
/// the Resource-ID one past a peer is answered by that peer's successor, so
/// following the answers visits every peer in ring order and comes back
/// here; each answer carries the peer's uptime, stored resources and share
/// of the ring. A walk that meets a peer twice before coming back, or gets
/// no answer, reports where it stopped.
async fn ring(State(engine): State<mpsc::Sender<Input>>) -> Response {
    let Some(me) = ask(&engine).await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the peer is stopping").into_response();
    };
    if !me.joined {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this peer has not joined the overlay yet",
        )
            .into_response();
    }
    let Some(mut start) = reload_wire::NodeId::from_hex(&me.node_id) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "own Node-ID unreadable").into_response();
    };
    if me.role == "client" {
        // A client is not in the ring: the walk starts at the peer
        // responsible for the client's Node-ID.
        let first = probe(&engine, reload_wire::ResourceId(start.as_bytes().to_vec())).await;
        match first.ok().and_then(|p| reload_wire::NodeId::from_hex(&p.node_id)) {
            Some(peer) => start = peer,
            None => {
                return (StatusCode::BAD_GATEWAY, "the client's peer did not answer a Probe").into_response();
            }
        }
    }
    let mut walk = RingWalk {
        start: start.to_hex(),
        complete: false,
        peers: Vec::new(),
        problem: None,
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut at = start;
    while walk.peers.len() < RING_WALK_LIMIT {
        let peer = match probe(&engine, overlay::ring::just_after(&at)).await {
            Ok(p) => p,
            Err(why) => {
                walk.problem = Some(format!("no answer from the successor of {}: {why}", at.to_hex()));
                break;
            }
        };
        let Some(next) = reload_wire::NodeId::from_hex(&peer.node_id) else {
            walk.problem = Some("a Probe answer named no Node-ID".into());
            break;
        };
        walk.peers.push(peer);
        if next == start {
            walk.complete = true;
            break;
        }
        if !seen.insert(next) || next == at {
            walk.problem = Some(format!(
                "{} answered twice before the walk came back: successor pointers disagree",
                next.to_hex()
            ));
            break;
        }
        at = next;
    }
    if !walk.complete && walk.problem.is_none() {
        walk.problem = Some(format!("stopped after {RING_WALK_LIMIT} peers"));
    }
    Json(walk).into_response()
}

async fn probe(engine: &mpsc::Sender<Input>, resource: reload_wire::ResourceId) -> Result<ProbedPeer, String> {
    let (tx, rx) = oneshot::channel();
    engine
        .send(Input::Admin(AdminRequest::Probe(resource, tx)))
        .await
        .map_err(|_| "the peer is stopping".to_string())?;
    rx.await.map_err(|_| "the peer is stopping".to_string())?
}

/// `GET /configuration`: the signed document the peer runs on.
async fn configuration(State(engine): State<mpsc::Sender<Input>>) -> Response {
    let (tx, rx) = oneshot::channel();
    let asked = engine
        .send(Input::Admin(AdminRequest::ConfigurationDocument(tx)))
        .await
        .is_ok();
    match rx.await {
        Ok(document) if asked => ([(header::CONTENT_TYPE, crate::config_doc::CONTENT_TYPE)], document).into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "the peer is stopping").into_response(),
    }
}

/// What `POST /configuration` answers when the document is taken.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Configured {
    /// The sequence the peer runs on now.
    pub sequence: u16,
    /// False when the peer already ran on this document.
    pub adopted: bool,
}

/// `POST /configuration`: a new signed configuration document.
async fn configure(State(engine): State<mpsc::Sender<Input>>, document: axum::body::Bytes) -> Response {
    use overlay::{ConfigRefusal, Offered};
    let (tx, rx) = oneshot::channel();
    let asked = engine
        .send(Input::Admin(AdminRequest::Configure(document.to_vec(), tx)))
        .await
        .is_ok();
    let Ok(offered) = rx
        .await
        .map_err(|_| ())
        .and_then(|o| if asked { Ok(o) } else { Err(()) })
    else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the peer is stopping").into_response();
    };
    match offered {
        Ok(Offered::Adopted { sequence }) => Json(Configured {
            sequence,
            adopted: true,
        })
        .into_response(),
        Ok(Offered::Current { sequence }) => Json(Configured {
            sequence,
            adopted: false,
        })
        .into_response(),
        Err(refusal) => {
            let status = match refusal {
                ConfigRefusal::NotSigned(_) | ConfigRefusal::ConflictingKind(_) | ConfigRefusal::NotTaken => {
                    StatusCode::FORBIDDEN
                }
                ConfigRefusal::Older { .. } => StatusCode::CONFLICT,
                ConfigRefusal::TooMany => StatusCode::TOO_MANY_REQUESTS,
                ConfigRefusal::Invalid(_)
                | ConfigRefusal::Incompatible(_)
                | ConfigRefusal::Revoked(_)
                | ConfigRefusal::UnknownType(_) => StatusCode::UNPROCESSABLE_ENTITY,
            };
            (status, refusal.to_string()).into_response()
        }
    }
}

/// `GET /metrics`: OpenMetrics text, which Prometheus scrapes.
async fn metrics(State(engine): State<mpsc::Sender<Input>>) -> Response {
    let (tx, rx) = oneshot::channel();
    let asked = engine.send(Input::Admin(AdminRequest::Metrics(tx))).await.is_ok();
    match rx.await {
        Ok(text) if asked => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "the peer is stopping").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::host_is_address;

    #[test]
    fn only_addresses_and_localhost_may_name_the_admin_api() {
        for ok in [
            "127.0.0.1:7084",
            "127.0.0.1",
            "[::1]:7084",
            "::1",
            "localhost:7084",
            "LOCALHOST",
            "10.84.0.1:7084",
        ] {
            assert!(host_is_address(ok), "{ok}");
        }
        for refused in [
            "evil.example:7084",
            "evil.example",
            "",
            "localhost.evil.example:7084",
            "127.0.0.1.nip.io",
        ] {
            assert!(!host_is_address(refused), "{refused}");
        }
    }
}
