//! `NextToken`s: where a page ended, bound to the query it belongs to.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The last index key a page returned, and a fingerprint of the query's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    pub reversed_time: u64,
    pub reversed_position: u64,
    pub query_fingerprint: u64,
}

impl PageToken {
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(25);
        bytes.push(1u8);
        bytes.extend_from_slice(&self.reversed_time.to_be_bytes());
        bytes.extend_from_slice(&self.reversed_position.to_be_bytes());
        bytes.extend_from_slice(&self.query_fingerprint.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        if bytes.len() != 25 || bytes[0] != 1 {
            return None;
        }
        let word = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
        Some(Self { reversed_time: word(1), reversed_position: word(9), query_fingerprint: word(17) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_rejected() {
        let token = PageToken { reversed_time: 1, reversed_position: u64::MAX, query_fingerprint: 42 };
        assert_eq!(PageToken::decode(&token.encode()), Some(token));
        assert_eq!(PageToken::decode("garbage"), None);
        assert_eq!(PageToken::decode(""), None);
    }
}
