//! Who made a call: the principal a verified access key belongs to, and how CloudTrail writes
//! it down as `userIdentity`.

use serde_json::{Value, json};

use crate::AccountId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    /// The account's root user.
    Root,
    /// An IAM-style user; `user_id` is its stable `AIDA...` principal ID.
    User { name: String, user_id: String },
}

/// The identity behind one access key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub account: AccountId,
    pub access_key_id: String,
    pub kind: PrincipalKind,
}

impl Principal {
    pub fn arn(&self) -> String {
        match &self.kind {
            PrincipalKind::Root => format!("arn:aws:iam::{}:root", self.account),
            PrincipalKind::User { name, .. } => format!("arn:aws:iam::{}:user/{name}", self.account),
        }
    }

    /// The `userIdentity` object exactly as CloudTrail records it for a signed API call.
    pub fn user_identity(&self) -> Value {
        match &self.kind {
            PrincipalKind::Root => json!({
                "type": "Root",
                "principalId": self.account.as_str(),
                "arn": self.arn(),
                "accountId": self.account.as_str(),
                "accessKeyId": self.access_key_id,
            }),
            PrincipalKind::User { name, user_id } => json!({
                "type": "IAMUser",
                "principalId": user_id,
                "arn": self.arn(),
                "accountId": self.account.as_str(),
                "accessKeyId": self.access_key_id,
                "userName": name,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_identity_shapes() {
        let account = AccountId::parse("111122223333").unwrap();
        let root = Principal { account: account.clone(), access_key_id: "AKIAROOT".into(), kind: PrincipalKind::Root };
        assert_eq!(root.user_identity()["type"], "Root");
        assert_eq!(root.user_identity()["arn"], "arn:aws:iam::111122223333:root");
        assert!(root.user_identity().get("userName").is_none());
        let alice = Principal {
            account,
            access_key_id: "AKIAALICE".into(),
            kind: PrincipalKind::User { name: "alice".into(), user_id: "AIDAALICE".into() },
        };
        let identity = alice.user_identity();
        assert_eq!(identity["type"], "IAMUser");
        assert_eq!(identity["userName"], "alice");
        assert_eq!(identity["arn"], "arn:aws:iam::111122223333:user/alice");
    }
}
