//! A relay that answers each REQ with whatever the test's script returns: for answers the
//! shared fixtures cannot give (a CLOSED with any reason, an event no filter asked for).

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

type Script = Arc<dyn Fn(&str, &[Value]) -> Vec<String> + Send + Sync>;

pub struct ScriptRelay {
    port: u16,
    task: JoinHandle<()>,
}

impl ScriptRelay {
    /// `script(subscription id, filters)` gives the frames answering a REQ.
    pub async fn start(
        script: impl Fn(&str, &[Value]) -> Vec<String> + Send + Sync + 'static,
    ) -> anyhow::Result<ScriptRelay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let script: Script = Arc::new(script);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, script.clone()));
            }
        });
        Ok(ScriptRelay { port, task })
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }
}

impl Drop for ScriptRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: tokio::net::TcpStream, script: Script) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if parts.first().and_then(Value::as_str) != Some("REQ") {
            continue;
        }
        let sub = parts
            .get(1)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        for frame in script(&sub, &parts[2.min(parts.len())..]) {
            if ws.send(Message::text(frame)).await.is_err() {
                return;
            }
        }
    }
}

/// A REQ whose filters all carry `limit:0` is a live subscription.
pub fn is_live(filters: &[Value]) -> bool {
    filters.iter().all(|f| f["limit"] == 0)
}

pub fn eose(sub: &str) -> String {
    serde_json::json!(["EOSE", sub]).to_string()
}

pub fn closed(sub: &str, reason: &str) -> String {
    serde_json::json!(["CLOSED", sub, reason]).to_string()
}

pub fn event(sub: &str, json: &str) -> String {
    format!("[\"EVENT\",{},{json}]", Value::from(sub))
}
