//! What the home relay's `OK` means for an event: a final outcome, or try again later.

use ngit_sync_shared::status::Outcome;

/// The meaning of one `["OK", id, accepted, message]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The relay has decided; the event is acked once the outcome is published.
    Final(Outcome),
    /// The relay could not decide now; the event is retried, never dropped.
    Transient(Transient),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transient {
    /// `rate-limited:`: the whole sink slows down, not only this event.
    RateLimited,
    /// `error:` (the relay's own trouble).
    RelayError,
}

/// Classifies an `OK` by its status and the machine-readable prefix of its message (NIP-01).
///
/// An `OK false` whose prefix we do not know is taken as a rejection: the relay refused the
/// event on purpose, and retrying a refusal forever would stall the stream behind it.
pub fn classify(accepted: bool, message: &str) -> Answer {
    let prefix = prefix(message);
    if accepted {
        return match prefix {
            Some("duplicate") => Answer::Final(Outcome::Duplicate),
            _ => Answer::Final(Outcome::Saved),
        };
    }
    match prefix {
        Some("rate-limited") => Answer::Transient(Transient::RateLimited),
        Some("error") => Answer::Transient(Transient::RelayError),
        // invalid, blocked, restricted, pow, duplicate, mute, unsupported, auth-required, unknown
        _ => Answer::Final(Outcome::Rejected),
    }
}

/// The lower-case `word` of a `word: text` message, if it has that shape.
fn prefix(message: &str) -> Option<&str> {
    let (word, _) = message.split_once(':')?;
    let word = word.trim();
    let shaped = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-' || c == '_');
    shaped.then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_events_are_saved_unless_the_relay_had_them() {
        assert_eq!(classify(true, ""), Answer::Final(Outcome::Saved));
        assert_eq!(classify(true, "stored"), Answer::Final(Outcome::Saved));
        assert_eq!(
            classify(true, "duplicate: already have this event"),
            Answer::Final(Outcome::Duplicate)
        );
    }

    #[test]
    fn refusals_are_final_rejections() {
        for message in [
            "invalid: bad signature",
            "blocked: not a repo we host",
            "restricted: members only",
            "pow: difficulty 20 required",
            "duplicate: already have this event",
            "unsupported: kind 1617",
            "auth-required: sign in first",
            "mute: no one listens",
            "nope",
            "",
        ] {
            assert_eq!(
                classify(false, message),
                Answer::Final(Outcome::Rejected),
                "{message:?}"
            );
        }
    }

    #[test]
    fn rate_limits_and_relay_errors_are_retried() {
        assert_eq!(
            classify(false, "rate-limited: slow down"),
            Answer::Transient(Transient::RateLimited)
        );
        assert_eq!(
            classify(false, "error: database is locked"),
            Answer::Transient(Transient::RelayError)
        );
    }

    #[test]
    fn only_a_leading_word_counts_as_a_prefix() {
        assert_eq!(prefix("error: x"), Some("error"));
        assert_eq!(prefix("the error: x"), None);
        assert_eq!(prefix("Error: x"), None);
        assert_eq!(prefix("no colon"), None);
    }
}
