//! The backend and the clients exercised against each other over real loopback sockets.

use bytes::Bytes;
use http::{Method, StatusCode, Version};

use crate::*;

#[tokio::test]
async fn h1_keep_alive_reuses_one_connection() {
    let backend = EchoBackend::start("one").await;
    let mut conn = H1Conn::connect(backend.addr()).await.unwrap();
    let req = request(Method::POST, "a.test", "/p/q?x=1&y=2")
        .header("x-multi", "a")
        .header("x-multi", "b")
        .body("hello")
        .unwrap();
    let r = conn.send(req).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.version, Version::HTTP_11);
    assert_eq!(r.header("x-backend"), Some("one"));
    let j = r.json();
    assert_eq!(j["backend"], "one");
    assert_eq!(j["method"], "POST");
    assert_eq!(j["path"], "/p/q");
    assert_eq!(j["query"], "x=1&y=2");
    assert_eq!(j["host"], "a.test");
    assert_eq!(j["version"], "HTTP/1.1");
    assert_eq!(j["headers"]["x-multi"], "a, b");
    assert_eq!(j["body_len"], 5);
    assert_eq!(j["tls"], serde_json::Value::Null);

    let r = conn.get("a.test", "/again").await.unwrap();
    assert_eq!(r.json()["query"], serde_json::Value::Null);
    assert_eq!(conn.requests_sent(), 2);
    assert!(!conn.is_closed());
    assert_eq!(
        backend.connection_count(),
        1,
        "both requests on one TCP connection"
    );
    assert_eq!(backend.request_count(), 2);

    let reqs = backend.requests();
    assert_eq!(reqs[0].body, Bytes::from_static(b"hello"));
    assert_eq!(reqs[0].query.as_deref(), Some("x=1&y=2"));
    assert_eq!((reqs[0].connection, reqs[1].connection), (1, 1));
}

#[tokio::test]
async fn status_and_delay_paths() {
    let backend = EchoBackend::start("s").await;
    let r = get(backend.addr(), "a.test", "/status/503", &[("x-a", "1")]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["headers"]["x-a"], "1");
    assert_eq!(
        get(backend.addr(), "a.test", "/status/204", &[])
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get(backend.addr(), "a.test", "/status/abc", &[])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    let t = std::time::Instant::now();
    let r = get(backend.addr(), "a.test", "/delay/150", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(t.elapsed() >= std::time::Duration::from_millis(150));
    assert_eq!(
        backend.connection_count(),
        4,
        "get() opens a fresh connection each time"
    );
}

#[tokio::test]
async fn h2c_prior_knowledge_on_the_same_port() {
    let backend = EchoBackend::start("two").await;
    let conn = H2Conn::connect_h2c(backend.addr()).await.unwrap();
    let (a, b) = tokio::join!(conn.get("b.test", "/x?q"), conn.get("b.test", "/delay/20"));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.version, Version::HTTP_2);
    let j = a.json();
    assert_eq!(j["version"], "HTTP/2.0");
    assert_eq!(j["host"], "b.test");
    assert_eq!(j["path"], "/x");
    assert_eq!(j["query"], "q");
    assert_eq!(b.status, StatusCode::OK);
    assert_eq!(
        backend.connection_count(),
        1,
        "two concurrent streams, one connection"
    );
    assert_eq!(backend.requests()[0].version, Version::HTTP_2);
}

#[tokio::test]
async fn tls_negotiates_h2_or_http11_by_alpn() {
    let ca = TestCa::new("kit CA");
    let cert = ca.issue(&["a.test", "127.0.0.1"]);
    let backend = EchoBackend::start_tls("secure", &cert).await;
    assert!(backend.url().starts_with("https://127.0.0.1:"));

    let (alpn, mut conn) =
        TlsConn::connect(backend.addr(), "a.test", &ca.pem(), &[b"h2", b"http/1.1"])
            .await
            .unwrap();
    assert_eq!(alpn.as_deref(), Some(b"h2".as_slice()));
    assert!(conn.is_h2());
    let j = conn.get("a.test", "/tls").await.unwrap().json();
    assert_eq!(j["version"], "HTTP/2.0");
    assert_eq!(j["tls"]["sni"], "a.test");
    assert_eq!(j["tls"]["alpn"], "h2");

    let (alpn, mut conn) = TlsConn::connect(backend.addr(), "127.0.0.1", &ca.pem(), &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(b"http/1.1".as_slice()));
    assert_eq!(conn.alpn(), Some(b"http/1.1".as_slice()));
    let j = conn.get("a.test", "/tls").await.unwrap().json();
    assert_eq!(j["version"], "HTTP/1.1");
    assert_eq!(
        j["tls"]["sni"],
        serde_json::Value::Null,
        "no SNI for an IP address"
    );
    let recorded = &backend.requests()[1];
    assert_eq!(
        recorded.tls.as_ref().unwrap().alpn.as_deref(),
        Some("http/1.1")
    );

    // A name the certificate does not cover, and a CA the client does not trust, both fail.
    assert!(
        TlsConn::connect(backend.addr(), "b.test", &ca.pem(), &[b"h2"])
            .await
            .is_err()
    );
    let other = TestCa::new("other CA");
    assert!(
        TlsConn::connect(backend.addr(), "a.test", &other.pem(), &[b"h2"])
            .await
            .is_err()
    );
    assert_eq!(backend.connection_count(), 4);
}

#[tokio::test]
async fn websocket_echo() {
    let backend = EchoBackend::start("ws").await;
    assert_eq!(
        ws_echo(backend.addr(), "w.test", "/ws", "ping 1").await,
        "ping 1"
    );
    assert_eq!(
        ws_echo(backend.addr(), "w.test", "/ws", "ping 2").await,
        "ping 2"
    );
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, "/ws");
    assert_eq!(reqs[0].host.as_deref(), Some("w.test"));
    assert_eq!(reqs[0].headers["upgrade"], "websocket");
    // Not an upgrade: a plain echo.
    assert_eq!(
        get(backend.addr(), "w.test", "/ws", &[]).await.json()["path"],
        "/ws"
    );
}

#[tokio::test]
async fn shutdown_closes_the_port_and_open_connections() {
    let mut backend = EchoBackend::start("gone").await;
    let addr = backend.addr();
    let mut conn = H1Conn::connect(addr).await.unwrap();
    conn.get("a.test", "/").await.unwrap();
    backend.shutdown().await;
    assert!(backend.is_shut_down());
    assert!(
        conn.get("a.test", "/").await.is_err(),
        "open connection dropped"
    );
    assert!(
        try_get(addr, "a.test", "/", &[]).await.is_err(),
        "port refuses"
    );
    assert_eq!(backend.request_count(), 1);
    assert!(format!("{backend:?}").contains("gone"));
}

#[tokio::test]
async fn shutdown_ends_open_websockets() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let mut backend = EchoBackend::start("ws-gone").await;
    let tcp = tokio::net::TcpStream::connect(backend.addr())
        .await
        .unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://w.test/ws", tcp)
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-backend"], "ws-gone");
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
    backend.shutdown().await;
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .unwrap();
    assert!(
        !matches!(end, Some(Ok(Message::Text(_)))),
        "session ended: {end:?}"
    );
}
