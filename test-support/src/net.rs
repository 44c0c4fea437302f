//! Loopback networking helpers: free ports, binding with retry, a tiny HTTP/1.0 GET.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on a whole [`http_get`] exchange, so a wedged server fails the test instead of hanging it.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a restart keeps retrying a port that is still held by the previous listener.
const REBIND_WINDOW: Duration = Duration::from_secs(3);

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is released before returning, so another process can grab it in between; that race
/// is accepted for tests.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the loopback interface refuses to bind an ephemeral port")
}

/// Binds 127.0.0.1:`port` (0 picks one), retrying briefly while the port is still in use.
///
/// std sets `SO_REUSEADDR` on Unix, so TIME_WAIT is no obstacle; the retry covers a previous
/// listener whose runtime is still being torn down.
pub(crate) async fn bind_loopback(port: u16) -> anyhow::Result<TcpListener> {
    let deadline = Instant::now() + REBIND_WINDOW;
    loop {
        match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(listener) => {
                listener.set_nonblocking(true)?;
                return Ok(listener);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("binding 127.0.0.1:{port}")),
        }
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub async fn port_is_open(port: u16) -> bool {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .is_ok()
}

/// `GET path` over HTTP/1.0 (the server closes the connection, so no chunking or keep-alive).
///
/// Returns the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    tokio::time::timeout(HTTP_TIMEOUT, http_get_inner(addr, path))
        .await
        .with_context(|| format!("GET http://{addr}{path} took longer than {HTTP_TIMEOUT:?}"))?
}

async fn http_get_inner(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("response from {addr}{path} has no header terminator: {text:?}");
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .with_context(|| format!("bad status line from {addr}{path}: {head:?}"))?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http_get_reads_status_and_body() {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            s.write_all(
                b"HTTP/1.0 418 I'm a teapot\r\nContent-Type: text/plain\r\n\r\nshort and stout",
            )
            .await
            .unwrap();
            request
        });
        let (status, body) = http_get(addr, "/pot?x=1").await.unwrap();
        assert_eq!(status, 418);
        assert_eq!(body, "short and stout");
        assert!(server
            .await
            .unwrap()
            .starts_with("GET /pot?x=1 HTTP/1.0\r\n"));
    }

    #[tokio::test]
    async fn free_port_can_be_bound_again() {
        let port = free_port();
        let listener = bind_loopback(port).await.unwrap();
        assert_eq!(listener.local_addr().unwrap().port(), port);
        assert!(!port_is_open(free_port()).await);
    }
}
