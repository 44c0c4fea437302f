//! Negentropy batches driven by hand: the relay's side is the `negentropy` crate itself.

use negentropy::{Id, Negentropy, NegentropyStorageVector};
use ngit_sync_shared::messages::RelayBody;
use ngit_sync_shared::status::SyncPlan;
use nostr::{ClientMessage, Event, EventBuilder, JsonUtil, Keys, Kind, Tag};

use super::*;

fn cfg() -> SyncerConfig {
    let common = ngit_sync_shared::CommonConfig::for_url("nats://127.0.0.1:4222");
    crate::session::syncer_config(&crate::config::Config::new(common))
}

/// A fresh session by negentropy; L1 only (no targets yet).
fn started() -> (Syncer, Vec<Action>) {
    let start = StartPlan {
        plan: SyncPlan::Fresh,
        since: None,
    };
    let mut s = Syncer::new(
        cfg(),
        "w-1".into(),
        start,
        &RelayState::default(),
        HistoricMethod::Negentropy,
    );
    s.start(0);
    let actions = s.drain();
    (s, actions)
}

fn announcements(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            EventBuilder::new(Kind::GitRepoAnnouncement, "")
                .tags([Tag::identifier(format!("r{i}"))])
                .sign_with_keys(&Keys::generate())
                .unwrap()
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A relay holding `events`, answering one negentropy message.
fn relay_answer(events: &[Event], message: &str) -> String {
    let mut storage = NegentropyStorageVector::new();
    for e in events {
        storage
            .insert(e.created_at.as_secs(), Id::from_byte_array(e.id.to_bytes()))
            .unwrap();
    }
    storage.seal().unwrap();
    let mut neg = Negentropy::owned(storage, 60_000).unwrap();
    hex(&neg.reconcile(&unhex(message)).unwrap())
}

/// The index requests among `actions`.
fn index_requests(actions: &[Action]) -> Vec<(String, usize, Filter)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::IndexItems {
                batch,
                filter_idx,
                filter,
            } => Some((batch.clone(), *filter_idx, filter.clone())),
            _ => None,
        })
        .collect()
}

fn sent(actions: &[Action]) -> Vec<ClientMessage<'static>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(text) => Some(ClientMessage::from_json(text).unwrap()),
            _ => None,
        })
        .collect()
}

/// (sub, initial message) of the NEG-OPEN among `actions`.
fn neg_open(actions: &[Action]) -> (String, String) {
    sent(actions)
        .into_iter()
        .find_map(|m| match m {
            ClientMessage::NegOpen {
                subscription_id,
                initial_message,
                ..
            } => Some((subscription_id.to_string(), initial_message.into_owned())),
            _ => None,
        })
        .expect("a NEG-OPEN")
}

/// (sub, filters) of historic REQs among `actions`.
fn historic_reqs(actions: &[Action]) -> Vec<(String, Vec<Filter>)> {
    sent(actions)
        .into_iter()
        .filter_map(|m| match m {
            ClientMessage::Req {
                subscription_id,
                filters,
            } => Some((
                subscription_id.to_string(),
                filters
                    .into_iter()
                    .map(|f| f.into_owned())
                    .collect::<Vec<_>>(),
            )),
            _ => None,
        })
        .filter(|(_, f)| f[0].limit != Some(0))
        .collect()
}

fn news(actions: &[Action]) -> Vec<RelayBody> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::News(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

/// Opens the L1 reconciliation with an empty index; returns its NEG-OPEN.
fn opened(s: &mut Syncer, actions: &[Action]) -> (String, String) {
    let requests = index_requests(actions);
    assert_eq!(requests.len(), 1, "L1 asks the index once");
    assert!(historic_reqs(actions).is_empty(), "no REQ for history");
    let (batch, idx, _) = &requests[0];
    s.on_index_items(batch, *idx, Ok(Vec::new()), 1);
    neg_open(&s.drain())
}

#[test]
fn a_reconciled_filter_fetches_what_the_relay_has_and_confirms() {
    let (mut s, actions) = started();
    let (sub, first) = opened(&mut s, &actions);
    let relay = announcements(3);
    let answer = relay_answer(&relay, &first);
    s.on_text(&format!("[\"NEG-MSG\",\"{sub}\",\"{answer}\"]"), 2);
    let a = s.drain();
    let reqs = historic_reqs(&a);
    assert_eq!(reqs.len(), 1);
    let asked = reqs[0].1[0].ids.clone().unwrap();
    assert_eq!(asked, relay.iter().map(|e| e.id).collect());
    let fetch = &reqs[0].0;
    for e in &relay {
        s.on_text(&format!("[\"EVENT\",\"{fetch}\",{}]", e.as_json()), 3);
    }
    s.on_text(&format!("[\"EOSE\",\"{fetch}\"]"), 4);
    for _ in &relay {
        s.on_ack(Some("w-1-b1"), 9, 5);
    }
    let done = news(&s.drain());
    assert!(
        done.iter()
            .any(|n| matches!(n, RelayBody::BatchConfirmed { events_seen: 3, .. })),
        "{done:?}"
    );
}

#[test]
fn a_notice_before_any_answer_turns_the_session_to_req_with_one_report() {
    let (mut s, actions) = started();
    opened(&mut s, &actions);
    s.on_text("[\"NOTICE\",\"ERROR: bad msg: unknown cmd\"]", 2);
    s.on_text("[\"NOTICE\",\"ERROR: bad msg: unknown cmd\"]", 3);
    let a = s.drain();
    let reports = a
        .iter()
        .filter(|x| matches!(x, Action::NegentropyUnsupported))
        .count();
    assert_eq!(reports, 1);
    let reqs = historic_reqs(&a);
    assert_eq!(reqs.len(), 1, "the L1 filter goes by REQ at once");
    assert!(reqs[0].1[0].kinds.is_some());
}

#[test]
fn ten_seconds_of_silence_mean_no_nip77() {
    let (mut s, actions) = started();
    opened(&mut s, &actions);
    s.on_tick(9_000);
    assert!(!s.drain().contains(&Action::NegentropyUnsupported));
    s.on_tick(10_001);
    let a = s.drain();
    assert!(a.contains(&Action::NegentropyUnsupported));
    assert_eq!(historic_reqs(&a).len(), 1);
}

#[test]
fn a_relay_that_returns_none_of_its_ids_twice_fails_the_batch_without_looping() {
    let (mut s, actions) = started();
    let (sub, first) = opened(&mut s, &actions);
    let answer = relay_answer(&announcements(2), &first);
    s.on_text(&format!("[\"NEG-MSG\",\"{sub}\",\"{answer}\"]"), 2);
    let first_round = historic_reqs(&s.drain());
    assert_eq!(first_round.len(), 1);
    s.on_text(&format!("[\"EOSE\",\"{}\"]", first_round[0].0), 3);
    let second_round = historic_reqs(&s.drain());
    assert_eq!(second_round.len(), 1, "asked once more");
    assert_eq!(second_round[0].1[0].ids, first_round[0].1[0].ids);
    s.on_text(&format!("[\"EOSE\",\"{}\"]", second_round[0].0), 4);
    let a = s.drain();
    assert!(historic_reqs(&a).is_empty(), "not a third time");
    assert!(
        news(&a).iter().any(
            |n| matches!(n, RelayBody::BatchFailed { reason, .. } if reason.contains("returned none"))
        ),
        "{a:?}"
    );
}

#[test]
fn too_many_results_split_the_time_range_in_two() {
    let (mut s, actions) = started();
    let (sub, _) = opened(&mut s, &actions);
    s.on_text(
        &format!("[\"NEG-ERR\",\"{sub}\",\"blocked: too many query results\"]"),
        2_000,
    );
    let a = s.drain();
    assert!(!a.contains(&Action::NegentropyUnsupported));
    let halves = index_requests(&a);
    assert_eq!(halves.len(), 2);
    assert_eq!(halves[0].2.until.map(|t| t.as_secs()), Some(1));
    assert_eq!(halves[1].2.since.map(|t| t.as_secs()), Some(2));
}

#[test]
fn the_first_answer_reports_nip77_support_once() {
    let (mut s, actions) = started();
    let (sub, first) = opened(&mut s, &actions);
    let answer = relay_answer(&announcements(1), &first);
    s.on_text(&format!("[\"NEG-MSG\",\"{sub}\",\"{answer}\"]"), 2);
    s.on_text(&format!("[\"NEG-MSG\",\"{sub}\",\"{answer}\"]"), 3);
    let supported = s
        .drain()
        .iter()
        .filter(|a| matches!(a, Action::NegentropySupported))
        .count();
    assert_eq!(supported, 1);
}

#[test]
fn the_daily_fresh_start_asks_a_relay_found_without_nip77_again() {
    let (mut s, actions) = started();
    opened(&mut s, &actions);
    s.on_text("[\"NOTICE\",\"ERROR: bad msg: unknown cmd\"]", 2);
    assert!(s.drain().contains(&Action::NegentropyUnsupported));

    s.daily_fresh_start("w-2".into(), HistoricMethod::Negentropy, 5_000);
    let a = s.drain();
    assert_eq!(index_requests(&a).len(), 1, "L1 by negentropy again");
    assert!(historic_reqs(&a).is_empty(), "no REQ for history");
    // And a second refusal is reported again, so the relay's state stays right.
    let (batch, idx, _) = index_requests(&a).remove(0);
    s.on_index_items(&batch, idx, Ok(Vec::new()), 5_001);
    s.drain();
    s.on_text("[\"NOTICE\",\"ERROR: bad msg: unknown cmd\"]", 5_002);
    assert!(s.drain().contains(&Action::NegentropyUnsupported));
}
