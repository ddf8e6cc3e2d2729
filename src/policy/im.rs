//! IM reading of a policy [`Decision`] (IM-24..IM-29; IX-07b): the `<im-handling>` action of
//! the recipient's IM rules, with the server's configured default.
//!
//! Inputs the IM Server supplies through [`super::Request`]:
//! - `identities`: the P-Asserted-Identity values from the trusted core, never the From
//!   header (IM-24);
//! - `anonymous`: `Privacy: id` or an anonymous From (IM-27c);
//! - `media`: pager mode versus session versus file transfer (IM-27g). The same evaluation
//!   serves INVITE and group joins (IM-29).
//!
//! Outcomes (IM-26): [`ImAction::Block`] rejects with 403, [`ImAction::Allow`] delivers, and
//! [`ImAction::PoliteBlock`] accepts and silently discards.

use super::eval::Decision;
use super::model::ImHandling;

/// The IM action, ordered `Block < PoliteBlock < Allow` (combined by maximum, IM-25). It is
/// the same type as the document's `<im-handling>` value.
pub type ImAction = ImHandling;

/// The action to apply to one IM request.
///
/// - No rule matched: `default` (IM-25; block is the recommended default).
/// - Some rule matched: the combined `<im-handling>`. Matching rules that carry none count
///   as `Block`, the lowest value (CP-13d).
/// - Unresolved external lists: if the decision depends on them
///   ([`Decision::unresolved_decisive`]), `default`. A broken list reference therefore
///   neither grants nor blocks by accident. If the outcome is the same whatever the lists
///   hold, the decision stands: for example, a sender granted by an `<identity>` rule is not
///   blocked because an unrelated blocked-contacts list is unreachable.
pub fn im_action(decision: &Decision, default: ImAction) -> ImAction {
    if decision.unresolved_decisive || decision.matched_rules.is_empty() {
        return default;
    }
    decision.im_handling.unwrap_or(ImAction::Block)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(im: Option<ImHandling>, matched: &[&str], decisive: bool) -> Decision {
        Decision {
            im_handling: im,
            matched_rules: matched.iter().map(|s| (*s).to_owned()).collect(),
            unresolved: if decisive {
                vec!["http://x/l".into()]
            } else {
                vec![]
            },
            unresolved_decisive: decisive,
            ..Decision::default()
        }
    }

    // IM-25: default when nothing matched, combined value otherwise.
    #[test]
    fn default_only_when_no_rule_matched_im25() {
        assert_eq!(
            im_action(&decision(None, &[], false), ImAction::Block),
            ImAction::Block
        );
        assert_eq!(
            im_action(&decision(None, &[], false), ImAction::Allow),
            ImAction::Allow
        );
        assert_eq!(
            im_action(
                &decision(Some(ImHandling::PoliteBlock), &["r"], false),
                ImAction::Allow
            ),
            ImAction::PoliteBlock
        );
        assert_eq!(
            im_action(
                &decision(Some(ImHandling::Allow), &["r"], false),
                ImAction::Block
            ),
            ImAction::Allow
        );
    }

    // CP-13d: a matching rule without <im-handling> means block, not "no decision".
    #[test]
    fn matched_without_im_handling_is_block_cp13d() {
        assert_eq!(
            im_action(&decision(None, &["r"], false), ImAction::Allow),
            ImAction::Block
        );
    }

    // CP-21: a decisive unresolved list falls back to the default, whatever was computed.
    #[test]
    fn decisive_unresolved_uses_default_cp21() {
        assert_eq!(
            im_action(
                &decision(Some(ImHandling::Allow), &["r"], true),
                ImAction::Block
            ),
            ImAction::Block
        );
        assert_eq!(
            im_action(
                &decision(Some(ImHandling::Block), &["r"], true),
                ImAction::PoliteBlock
            ),
            ImAction::PoliteBlock
        );
        let mut settled = decision(Some(ImHandling::Allow), &["r"], false);
        settled.unresolved = vec!["http://x/l".into()];
        assert_eq!(im_action(&settled, ImAction::Block), ImAction::Allow);
    }

    #[test]
    fn ordering_block_polite_allow() {
        assert!(ImAction::Block < ImAction::PoliteBlock);
        assert!(ImAction::PoliteBlock < ImAction::Allow);
    }
}
