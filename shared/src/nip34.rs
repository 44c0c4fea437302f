//! Reading NIP-34 events: kinds, repository announcements (untrusted relay lists),
//! the repositories a root event belongs to, and KV keys of repos.

use nostr::hashes::{sha256, Hash};
use nostr::{Event, Kind};

use crate::constants::MAX_RELAYS_PER_ANNOUNCEMENT;
use crate::relay_url::RelayUrl;

pub const KIND_REPO_ANNOUNCEMENT: u16 = 30617;
pub const KIND_REPO_STATE: u16 = 30618;
pub const KIND_PATCH: u16 = 1617;
pub const KIND_PULL_REQUEST: u16 = 1618;
pub const KIND_ISSUE: u16 = 1621;
pub const KIND_COMMENT: u16 = 1111;
pub const KINDS_STATUS: [u16; 4] = [1630, 1631, 1632, 1633];

/// Patches, PRs and issues: the events layer 3 follows.
pub const ROOT_KINDS: [u16; 3] = [KIND_PATCH, KIND_PULL_REQUEST, KIND_ISSUE];
/// What discovery reads from the home relay.
pub const DISCOVERY_KINDS: [u16; 4] = [
    KIND_REPO_ANNOUNCEMENT,
    KIND_PATCH,
    KIND_PULL_REQUEST,
    KIND_ISSUE,
];

pub fn is_root_kind(kind: u16) -> bool {
    ROOT_KINDS.contains(&kind)
}

pub fn kind_u16(kind: Kind) -> u16 {
    kind.as_u16()
}

/// A repository announcement as discovery needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// `30617:<pubkey hex>:<d>`.
    pub coord: String,
    /// Valid relay URLs from `relays` and GRASP-shaped `clone` URLs, de-duplicated, in order.
    pub relays: Vec<RelayUrl>,
    /// Entries that were not relay URLs (for a warning, never followed).
    pub invalid: usize,
    pub created_at: u64,
}

/// Reads an announcement; `None` if the event is not one (wrong kind, no `d` tag).
pub fn read_announcement(event: &Event) -> Option<Announcement> {
    if event.kind.as_u16() != KIND_REPO_ANNOUNCEMENT {
        return None;
    }
    let d = tag_values(event, "d").next()?.to_string();
    let coord = format!("{KIND_REPO_ANNOUNCEMENT}:{}:{d}", event.pubkey.to_hex());
    let mut relays = Vec::new();
    let mut invalid = 0;
    let listed = event
        .tags
        .iter()
        .filter(|t| t.as_slice().first().map(String::as_str) == Some("relays"))
        .flat_map(|t| t.as_slice()[1..].iter());
    let grasp = event
        .tags
        .iter()
        .filter(|t| t.as_slice().first().map(String::as_str) == Some("clone"))
        .flat_map(|t| t.as_slice()[1..].iter())
        .filter_map(|u| grasp_relay_of_clone_url(u));
    for raw in listed
        .cloned()
        .chain(grasp)
        .take(MAX_RELAYS_PER_ANNOUNCEMENT)
    {
        match RelayUrl::parse(&raw) {
            Ok(url) if !relays.contains(&url) => relays.push(url),
            Ok(_) => {}
            Err(_) => invalid += 1,
        }
    }
    Some(Announcement {
        coord,
        relays,
        invalid,
        created_at: event.created_at.as_secs(),
    })
}

/// `https://<host>/<npub…>/<name>.git` is a GRASP server's clone URL; its relay is `wss://<host>`.
pub fn grasp_relay_of_clone_url(clone: &str) -> Option<String> {
    let url = url::Url::parse(clone).ok()?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return None;
    }
    let mut segments = url.path_segments()?;
    let npub = segments.next()?;
    let name = segments.next()?;
    if !npub.starts_with("npub1") || !name.ends_with(".git") || segments.next().is_some() {
        return None;
    }
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!("{scheme}://{}{port}", url.host_str()?))
}

/// Repository coordinates a root event (or any NIP-34 event) points at through `a` tags.
pub fn repo_coords_of(event: &Event) -> Vec<String> {
    let prefix = format!("{KIND_REPO_ANNOUNCEMENT}:");
    let mut coords: Vec<String> = tag_values(event, "a")
        .filter(|v| v.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    coords.dedup();
    coords
}

fn tag_values<'a>(event: &'a Event, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    event.tags.iter().filter_map(move |t| {
        let s = t.as_slice();
        (s.first().map(String::as_str) == Some(name))
            .then(|| s.get(1).map(String::as_str))
            .flatten()
    })
}

/// KV key of a repository in `ngit_sync_repos`: readable `<pubkey>_<d>` cut short, plus a hash
/// of the full coordinate (a `d` tag may hold any character).
pub fn repo_key(coord: &str) -> String {
    let readable: String = coord
        .strip_prefix("30617:")
        .unwrap_or(coord)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let hex = sha256::Hash::hash(coord.as_bytes()).to_string();
    format!("{readable}-{}", &hex[..8])
}

/// KV key of a root event of a repository: `<repo key>.<event id>`.
pub fn root_key(coord: &str, id: &str) -> String {
    format!("{}.{id}", repo_key(coord))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::{EventBuilder, Keys, Tag};

    fn announcement(tags: Vec<Vec<&str>>) -> Event {
        let tags = tags.into_iter().map(|t| Tag::parse(t).unwrap());
        EventBuilder::new(Kind::GitRepoAnnouncement, "")
            .tags(tags)
            .sign_with_keys(&Keys::generate())
            .unwrap()
    }

    #[test]
    fn announcement_lists_relays_and_grasp_clone_hosts() {
        let ev = announcement(vec![
            vec!["d", "my repo"],
            vec![
                "relays",
                "wss://a.example/",
                "WSS://A.example",
                "http://bad",
                "wss://b.example",
            ],
            vec![
                "clone",
                "https://git.example/npub1abc/my-repo.git",
                "https://github.com/x/y.git",
            ],
        ]);
        let a = read_announcement(&ev).unwrap();
        let urls: Vec<&str> = a.relays.iter().map(|u| u.as_str()).collect();
        assert_eq!(
            urls,
            ["wss://a.example", "wss://b.example", "wss://git.example"]
        );
        assert_eq!(a.invalid, 1);
        assert!(a.coord.starts_with("30617:") && a.coord.ends_with(":my repo"));
        let key = repo_key(&a.coord);
        assert!(key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    }

    #[test]
    fn an_announcement_reads_at_most_the_limit_of_relays() {
        let many: Vec<String> = (0..MAX_RELAYS_PER_ANNOUNCEMENT + 50)
            .map(|i| format!("wss://r{i}.example"))
            .collect();
        let mut tag = vec!["relays"];
        tag.extend(many.iter().map(String::as_str));
        let a = read_announcement(&announcement(vec![vec!["d", "x"], tag])).unwrap();
        assert_eq!(a.relays.len(), MAX_RELAYS_PER_ANNOUNCEMENT);
    }

    #[test]
    fn root_events_name_every_repo_they_tag() {
        let ev = EventBuilder::new(Kind::GitIssue, "bug")
            .tags([
                Tag::parse(["a", "30617:aa:one"]).unwrap(),
                Tag::parse(["a", "30617:bb:two"]).unwrap(),
                Tag::parse(["a", "1:x:y"]).unwrap(),
            ])
            .sign_with_keys(&Keys::generate())
            .unwrap();
        assert_eq!(repo_coords_of(&ev), ["30617:aa:one", "30617:bb:two"]);
    }

    #[test]
    fn only_grasp_shaped_clone_urls_give_relays() {
        assert_eq!(
            grasp_relay_of_clone_url("https://relay.ngit.dev/npub1xyz/repo.git").as_deref(),
            Some("wss://relay.ngit.dev")
        );
        assert_eq!(grasp_relay_of_clone_url("https://github.com/npub1/x"), None);
        assert_eq!(grasp_relay_of_clone_url("git@github.com:x/y.git"), None);
    }
}
