//! Plausible text for the corpus: repo names, titles, prose and `git format-patch` diffs.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

const ADJECTIVES: &[&str] = &[
    "tiny", "rusty", "async", "quiet", "lazy", "brave", "sharp", "simple", "swift", "solid",
    "plain", "lucid", "nimble", "sturdy", "vivid", "humble",
];

const NOUNS: &[&str] = &[
    "relay", "wallet", "signer", "indexer", "bridge", "client", "parser", "vault", "gossip",
    "mirror", "ledger", "beacon", "courier", "forge", "garden", "harbor",
];

const VERBS: &[&str] = &[
    "fix", "add", "remove", "refactor", "document", "speed up", "simplify", "harden", "rename",
    "split", "cache", "retry", "validate", "log", "test", "bump",
];

const THINGS: &[&str] = &[
    "relay reconnect logic",
    "event signature check",
    "config parsing",
    "the README",
    "subscription cleanup",
    "error messages",
    "CLI flags",
    "pagination of REQs",
    "the negentropy sync",
    "clone URL handling",
    "patch rendering",
    "timeouts on slow relays",
    "status badges",
    "the release script",
    "unit tests for filters",
    "dependency versions",
];

const PROSE: &[&str] = &[
    "This happens every time the relay drops the connection.",
    "Steps to reproduce are below.",
    "I tested this against two relays and it behaves the same.",
    "The current behaviour surprised me.",
    "It looks like an off-by-one in the loop.",
    "Happy to send a patch if this direction makes sense.",
    "See the logs attached.",
    "This is blocking our deployment.",
    "Thanks for maintaining this!",
    "LGTM, merging after CI passes.",
    "Could you rebase on master?",
    "Nit: the variable name could be clearer.",
    "Works for me on Linux and macOS.",
    "I think we should also handle the empty case.",
];

const CODE: &[&str] = &[
    "    let relay = RelayUrl::parse(url)?;",
    "    for event in events.iter() {",
    "        if !event.verify().is_ok() {",
    "            continue;",
    "        }",
    "    }",
    "    let filter = Filter::new().kind(Kind::GitPatch).limit(500);",
    "    tracing::debug!(%relay, \"connected\");",
    "    match client.fetch_events(filter, timeout).await {",
    "        Ok(events) => store.extend(events),",
    "        Err(e) => return Err(Error::RelayUnreachable(e.to_string())),",
    "    };",
    "    let mut backoff = Duration::from_millis(250);",
    "    backoff = (backoff * 2).min(MAX_BACKOFF);",
    "    self.pending.retain(|id| !seen.contains(id));",
    "    Ok(())",
    "}",
    "",
    "fn parse_coordinate(s: &str) -> Option<(u16, String, String)> {",
    "    let mut parts = s.splitn(3, ':');",
    "    let kind = parts.next()?.parse().ok()?;",
    "    // Relays may send the same event twice; dedupe by id.",
    "    if ids.insert(event.id) {",
    "        out.push(event.clone());",
    "    let deadline = Instant::now() + timeout;",
    "    while Instant::now() < deadline {",
    "#[derive(Debug, Clone, PartialEq, Eq)]",
    "pub struct Cursor { pub until: u64, pub seen: usize }",
    "    assert_eq!(cursor.until, 1_700_000_000);",
    "use std::collections::HashSet;",
];

const FILES: &[&str] = &[
    "src/lib.rs",
    "src/relay.rs",
    "src/sync.rs",
    "src/config.rs",
    "src/main.rs",
    "src/filter.rs",
    "src/store.rs",
    "tests/sync.rs",
    "README.md",
    "Cargo.toml",
];

const PEOPLE: &[&str] = &[
    "Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi",
];

/// A unique kebab-case repo id and a display name.
pub(super) fn repo_name(rng: &mut StdRng, index: usize) -> (String, String) {
    let adjective = ADJECTIVES.choose(rng).expect("non-empty");
    let noun = NOUNS.choose(rng).expect("non-empty");
    let id = format!("{adjective}-{noun}-{index}");
    let name = format!(
        "{}{} {noun}",
        adjective[..1].to_uppercase(),
        &adjective[1..]
    );
    (id, name)
}

/// "fix the README"-style subject line.
pub(super) fn title(rng: &mut StdRng) -> String {
    let verb = VERBS.choose(rng).expect("non-empty");
    let thing = THINGS.choose(rng).expect("non-empty");
    format!("{verb} {thing}")
}

/// A few sentences of prose.
pub(super) fn prose(rng: &mut StdRng, sentences: usize) -> String {
    (0..sentences)
        .map(|_| *PROSE.choose(rng).expect("non-empty"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A committer name and email.
pub(super) fn person(rng: &mut StdRng) -> (String, String) {
    let name = PEOPLE.choose(rng).expect("non-empty");
    (
        name.to_string(),
        format!("{}@example.com", name.to_lowercase()),
    )
}

/// Lowercase hex of `bytes` random bytes.
pub(super) fn hex(rng: &mut StdRng, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// A `git format-patch` email of `target` bytes, overshooting by at most one line and the trailer.
pub(super) fn patch(
    rng: &mut StdRng,
    (name, email): (&str, &str),
    commit: &str,
    subject: &str,
    target: usize,
) -> String {
    let mut out = String::with_capacity(target + 512);
    out.push_str(&format!(
        "From {commit} Mon Sep 17 00:00:00 2001\nFrom: {name} <{email}>\n\
         Date: Tue, 4 Mar 2025 10:{:02}:00 +0100\nSubject: [PATCH] {subject}\n\n{}\n---\n",
        rng.random_range(0..60),
        prose(rng, 2)
    ));
    while out.len() < target {
        let file = FILES.choose(rng).expect("non-empty");
        let start = rng.random_range(1..900);
        out.push_str(&format!(
            "diff --git a/{file} b/{file}\nindex {}..{} 100644\n--- a/{file}\n+++ b/{file}\n\
             @@ -{start},24 +{start},26 @@\n",
            hex(rng, 4),
            hex(rng, 4)
        ));
        for _ in 0..rng.random_range(12..40) {
            if out.len() >= target {
                break;
            }
            let sign = match rng.random_range(0..5) {
                0 => '-',
                1 | 2 => '+',
                _ => ' ',
            };
            out.push(sign);
            out.push_str(CODE.choose(rng).expect("non-empty"));
            out.push('\n');
        }
    }
    out.push_str("-- \n2.43.0\n");
    out
}
