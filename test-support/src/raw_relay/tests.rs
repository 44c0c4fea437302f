//! Tests for `RawRelay`: filter semantics, scripted refusals, NIP-77 replies, down/up.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use nostr::{EventBuilder, Filter, Keys, Kind, Timestamp};
use nostr_sdk::{Client, SyncOptions};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::protocol::{respond, Reply};
use super::*;
use crate::net::port_is_open;

const WAIT: Duration = Duration::from_secs(5);

/// Five notes at t = 100, 200, 200, 300, 400 (two share a second).
fn notes() -> Vec<Event> {
    let keys = Keys::generate();
    [100, 200, 200, 300, 400]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            EventBuilder::text_note(format!("note {i}"))
                .custom_created_at(Timestamp::from(*t))
                .sign_with_keys(&keys)
                .unwrap()
        })
        .collect()
}

/// Sends `message` and returns every reply up to EOSE/CLOSED (or the socket closing).
async fn exchange(url: &str, message: Value) -> Vec<Value> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text(message.to_string())).await.unwrap();
    let mut replies = Vec::new();
    while let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(WAIT, ws.next()).await {
        let reply: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.to_string()));
        let done = matches!(reply[0].as_str(), Some("EOSE" | "CLOSED"));
        replies.push(reply);
        if done {
            break;
        }
    }
    replies
}

fn created_ats(replies: &[Value]) -> Vec<u64> {
    replies
        .iter()
        .filter(|r| r[0] == "EVENT")
        .map(|r| r[2]["created_at"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn req_gets_matching_events_newest_first_within_limit_until_and_since() {
    let relay = RawRelay::serving(&notes(), RawRelayOptions::new())
        .await
        .unwrap();
    let all = exchange(&relay.url(), json!(["REQ", "a", {"kinds": [1]}])).await;
    assert_eq!(created_ats(&all), [400, 300, 200, 200, 100]);
    assert_eq!(all.last().unwrap(), &json!(["EOSE", "a"]));

    let page = exchange(
        &relay.url(),
        json!(["REQ", "b", {"until": 300, "limit": 2}]),
    )
    .await;
    assert_eq!(created_ats(&page), [300, 200]);
    let window = exchange(
        &relay.url(),
        json!(["REQ", "c", {"since": 200, "until": 300}]),
    )
    .await;
    assert_eq!(created_ats(&window), [300, 200, 200]);
    let none = exchange(&relay.url(), json!(["REQ", "d", {"kinds": [1617]}])).await;
    assert_eq!(none, [json!(["EOSE", "d"])]);

    assert_eq!(relay.req_count(), 4);
    assert_eq!(relay.reqs()[1].filters, [json!({"until": 300, "limit": 2})]);
    assert_eq!(relay.connection_count(), 4);
    assert!(relay.bytes_sent() > 0);
}

#[tokio::test]
async fn max_limit_caps_each_filter() {
    let opts = RawRelayOptions::new().max_limit(2);
    let relay = RawRelay::serving(&notes(), opts).await.unwrap();
    let replies = exchange(&relay.url(), json!(["REQ", "a", {"limit": 10}])).await;
    assert_eq!(created_ats(&replies), [400, 300]);
}

#[tokio::test]
async fn unparseable_events_are_sent_only_when_asked() {
    let mut events: Vec<String> = notes().iter().map(JsonUtil::as_json).collect();
    events.push(json!({"id": "zz", "created_at": 250, "kind": 1}).to_string());
    let quiet = RawRelay::start(events.clone(), RawRelayOptions::new())
        .await
        .unwrap();
    let replies = exchange(&quiet.url(), json!(["REQ", "a", {}])).await;
    assert_eq!(created_ats(&replies).len(), 5);

    let loud = RawRelay::start(events, RawRelayOptions::new().serve_unconditionally())
        .await
        .unwrap();
    let replies = exchange(&loud.url(), json!(["REQ", "a", {"since": 240}])).await;
    assert_eq!(created_ats(&replies), [400, 300, 250]);
}

#[tokio::test]
async fn first_reqs_are_rate_limited() {
    let opts = RawRelayOptions::new().rate_limit_reqs_first(1);
    let relay = RawRelay::serving(&notes(), opts).await.unwrap();
    let first = exchange(&relay.url(), json!(["REQ", "a", {}])).await;
    assert_eq!(first, [json!(["CLOSED", "a", "rate-limited: slow down"])]);
    let second = exchange(&relay.url(), json!(["REQ", "b", {}])).await;
    assert_eq!(created_ats(&second).len(), 5);
}

#[test]
fn neg_open_replies_follow_the_behaviour() {
    let neg_open = json!(["NEG-OPEN", "n", {}, "6100"]).to_string();
    let reply = |neg| {
        let shared = Shared {
            opts: RawRelayOptions::new().neg(neg),
            ..Default::default()
        };
        respond(&shared, &neg_open)
    };
    let one = |v: Value| Reply::Send(vec![v.to_string()]);
    use NegBehaviour::*;
    assert_eq!(
        reply(NoticeBadMsg),
        one(json!(["NOTICE", "ERROR: bad msg: unknown cmd"]))
    );
    assert_eq!(
        reply(NoticeUnparsable),
        one(json!(["NOTICE", "could not parse command"]))
    );
    assert_eq!(
        reply(NegErr),
        one(json!(["NEG-ERR", "n", "blocked: negentropy disabled"]))
    );
    assert_eq!(
        reply(Closed),
        one(json!(["CLOSED", "n", "unsupported: negentropy"]))
    );
    assert_eq!(reply(Silence), Reply::Send(Vec::new()));
    assert_eq!(reply(Disconnect), Reply::Disconnect);
}

#[tokio::test]
async fn nostr_sdk_sees_no_negentropy_and_falls_back_to_req() {
    let events = notes();
    let relay = RawRelay::serving(&events, RawRelayOptions::new())
        .await
        .unwrap();
    let client = Client::default();
    client.add_relay(relay.url()).await.unwrap();
    client.connect().await;
    client.wait_for_connection(WAIT).await;
    let sdk_relay = client.relay(relay.url()).await.unwrap();
    let opts = SyncOptions::default().initial_timeout(Duration::from_secs(2));
    let err = sdk_relay
        .sync(Filter::new().kind(Kind::TextNote), &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(err, nostr_sdk::pool::relay::Error::NegentropyNotSupported),
        "{err}"
    );
    assert!(relay
        .received()
        .iter()
        .any(|m| m.starts_with("[\"NEG-OPEN\"")));

    let fetched = client
        .fetch_events(Filter::new().kind(Kind::TextNote), WAIT)
        .await
        .unwrap();
    assert_eq!(fetched.len(), events.len());
    client.shutdown().await;
}

#[tokio::test]
async fn accept_then_close_closes_right_after_the_handshake() {
    let relay = RawRelay::serving(&notes(), RawRelayOptions::new().accept_then_close())
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(relay.url()).await.unwrap();
    let next = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    assert!(
        matches!(next, Some(Ok(Message::Close(_))) | None),
        "{next:?}"
    );
}

#[tokio::test]
async fn stopped_raw_relay_refuses_connections_and_restarts_on_the_same_port() {
    let mut relay = RawRelay::serving(&notes(), RawRelayOptions::new())
        .await
        .unwrap();
    let port = relay.port();
    relay.stop();
    assert!(!port_is_open(port).await);
    assert!(tokio_tungstenite::connect_async(relay.url()).await.is_err());
    relay.restart().await.unwrap();
    assert_eq!(relay.port(), port);
    let replies = exchange(&relay.url(), json!(["REQ", "a", {}])).await;
    assert_eq!(created_ats(&replies).len(), 5);
}
