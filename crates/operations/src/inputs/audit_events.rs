//! The input of `cloudtrail-data` `PutAuditEvents` (not a CloudTrail operation: it has its own
//! endpoint, but its body follows the same decoding rules).

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutAuditEventsInput {
    pub audit_events: Vec<AuditEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: String,
    pub event_data: String,
    pub event_data_checksum: Option<String>,
}
