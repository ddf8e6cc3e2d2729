//! Who may do what to which XCAP resource (RFC 4825 §5.7 default policy, HT-04; per-usage
//! overrides from the descriptor, AU-02i, AU-11e). Pure: the principal is decided upstream
//! (development mode today, the Aggregation Proxy later).

use serde::Deserialize;

/// An authenticated party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An end user, by canonical XUI (e.g. `sip:alice@example.com`).
    User(String),
    /// A trusted network element (RLS, IM Server, presence server): reads any document.
    Service(String),
    /// The operator: every operation.
    Admin,
    /// No credentials.
    Anonymous,
}

impl Principal {
    /// How change records name the writer: the XUI of a user, `service:<name>`, `admin`;
    /// `None` for anonymous.
    pub fn audit_name(&self) -> Option<String> {
        match self {
            Principal::User(xui) => Some(xui.clone()),
            Principal::Service(name) => Some(format!("service:{name}")),
            Principal::Admin => Some("admin".into()),
            Principal::Anonymous => None,
        }
    }
}

/// Who may read documents of a usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ReadPolicy {
    /// The owner (users tree) and trusted principals; global documents: any authenticated.
    #[default]
    Owner,
    /// Any authenticated principal.
    Authenticated,
    /// Trusted principals only (e.g. the rls-services global index, RL-16).
    Trusted,
}

/// Who may create, replace or delete documents of a usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WritePolicy {
    /// The owner; global documents only by the admin (HT-04).
    #[default]
    Owner,
    /// Written by trusted services; the owner may read and delete, never create (IX-04).
    Server,
    /// Nobody over XCAP (generated, read-only usages).
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    /// Create or modify (any PUT).
    Write,
    Delete,
}

/// What the decision was; 401 versus 403 is chosen by the caller from the principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

/// Decides an operation. `owner` is the XUI of the document's home, None for the global tree.
pub fn decide(
    principal: &Principal,
    owner: Option<&str>,
    read: ReadPolicy,
    write: WritePolicy,
    op: Operation,
) -> Decision {
    let allow = match (principal, op) {
        (Principal::Admin, _) => true,
        (Principal::Anonymous, _) => false,
        (Principal::Service(_), Operation::Read) => true,
        (Principal::Service(_), _) => write == WritePolicy::Server && owner.is_some(),
        (Principal::User(me), Operation::Read) => match read {
            ReadPolicy::Authenticated => true,
            ReadPolicy::Trusted => false,
            ReadPolicy::Owner => owner.is_none_or(|o| o == me),
        },
        (Principal::User(me), Operation::Write) => {
            write == WritePolicy::Owner && owner.is_some_and(|o| o == me)
        }
        (Principal::User(me), Operation::Delete) => {
            write != WritePolicy::None && owner.is_some_and(|o| o == me)
        }
    };
    if allow {
        Decision::Allow
    } else {
        Decision::Deny
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "sip:alice@example.com";
    const BOB: &str = "sip:bob@example.com";

    fn user(x: &str) -> Principal {
        Principal::User(x.to_string())
    }

    #[test]
    fn ht04_owner_reads_and_writes_home_only() {
        use Operation::*;
        for op in [Read, Write, Delete] {
            assert_eq!(
                decide(
                    &user(ALICE),
                    Some(ALICE),
                    ReadPolicy::Owner,
                    WritePolicy::Owner,
                    op
                ),
                Decision::Allow
            );
            assert_eq!(
                decide(
                    &user(BOB),
                    Some(ALICE),
                    ReadPolicy::Owner,
                    WritePolicy::Owner,
                    op
                ),
                Decision::Deny
            );
        }
    }

    #[test]
    fn ht04_global_readable_by_users_writable_by_admin_only() {
        assert_eq!(
            decide(
                &user(ALICE),
                None,
                ReadPolicy::Owner,
                WritePolicy::Owner,
                Operation::Read
            ),
            Decision::Allow
        );
        assert_eq!(
            decide(
                &user(ALICE),
                None,
                ReadPolicy::Owner,
                WritePolicy::Owner,
                Operation::Write
            ),
            Decision::Deny
        );
        assert_eq!(
            decide(
                &Principal::Admin,
                None,
                ReadPolicy::Owner,
                WritePolicy::Owner,
                Operation::Write
            ),
            Decision::Allow
        );
        assert_eq!(
            decide(
                &Principal::Anonymous,
                None,
                ReadPolicy::Owner,
                WritePolicy::Owner,
                Operation::Read
            ),
            Decision::Deny
        );
    }

    #[test]
    fn rl16_trusted_only_read() {
        assert_eq!(
            decide(
                &user(ALICE),
                None,
                ReadPolicy::Trusted,
                WritePolicy::None,
                Operation::Read
            ),
            Decision::Deny
        );
        assert_eq!(
            decide(
                &Principal::Service("rls".into()),
                None,
                ReadPolicy::Trusted,
                WritePolicy::None,
                Operation::Read
            ),
            Decision::Allow
        );
    }

    #[test]
    fn ix04_server_written_owner_reads_and_deletes_never_creates() {
        let p = user(ALICE);
        assert_eq!(
            decide(
                &p,
                Some(ALICE),
                ReadPolicy::Owner,
                WritePolicy::Server,
                Operation::Read
            ),
            Decision::Allow
        );
        assert_eq!(
            decide(
                &p,
                Some(ALICE),
                ReadPolicy::Owner,
                WritePolicy::Server,
                Operation::Delete
            ),
            Decision::Allow
        );
        assert_eq!(
            decide(
                &p,
                Some(ALICE),
                ReadPolicy::Owner,
                WritePolicy::Server,
                Operation::Write
            ),
            Decision::Deny
        );
        let im = Principal::Service("im-server".into());
        assert_eq!(
            decide(
                &im,
                Some(ALICE),
                ReadPolicy::Owner,
                WritePolicy::Server,
                Operation::Write
            ),
            Decision::Allow
        );
    }

    #[test]
    fn au09_read_only_usage_nobody_writes_but_admin() {
        assert_eq!(
            decide(
                &user(ALICE),
                None,
                ReadPolicy::Authenticated,
                WritePolicy::None,
                Operation::Write
            ),
            Decision::Deny
        );
        assert_eq!(
            decide(
                &user(ALICE),
                Some(ALICE),
                ReadPolicy::Owner,
                WritePolicy::None,
                Operation::Delete
            ),
            Decision::Deny
        );
    }
}
