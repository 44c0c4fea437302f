//! Server side of the WebSocket upgrade, so `TestRelay` owns its accept loop and sees every connection.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Longest request head we accept; real clients send a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;

/// A client that connects and says nothing must not pin a task forever.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the HTTP upgrade request and answers `101 Switching Protocols`.
///
/// `LocalRelay::take_connection` wants an already upgraded stream; doing the upgrade here lets
/// the fixture count connections, which nostr-relay-builder has no hook for.
pub(crate) async fn upgrade(stream: &mut TcpStream) -> anyhow::Result<()> {
    let head = tokio::time::timeout(HEAD_TIMEOUT, read_head(stream))
        .await
        .context("timed out reading the upgrade request")??;
    let Some(key) = header(&head, "sec-websocket-key") else {
        stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
            .await?;
        bail!("not a WebSocket upgrade request");
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    stream.write_all(response.as_bytes()).await?;
    Ok(())
}

/// Reads up to the blank line ending the request head.
///
/// Clients send no frame before the 101 answer, so reading in chunks never swallows frame bytes;
/// if it ever did, the connection is refused rather than silently corrupted.
async fn read_head(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed during the upgrade request");
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            if end + 4 != head.len() {
                bail!("client sent data before the upgrade completed");
            }
            return Ok(String::from_utf8_lossy(&head).into_owned());
        }
        if head.len() > MAX_HEAD {
            bail!("upgrade request head larger than {MAX_HEAD} bytes");
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}
