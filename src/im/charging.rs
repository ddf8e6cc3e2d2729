//! Charging data records of the IM Server (the seed's Charging Entity; issue #14 scope 8):
//! one record per MESSAGE outcome (delivered, stored, blocked, failed) and per end of a stored
//! message (delivered, failed, expired), with the IMDN dispositions the sender asked for.
//! isComposing indications and a duplicate of a stored message are not charged. A record is
//! durable before the sender's answer goes out; a log that cannot write is logged, and the
//! message is still handled.

use std::sync::Arc;

use super::cpim::Cpim;
use crate::metrics::Metrics;
use crate::storage::charging::{ChargingLog, ChargingRecord};
use crate::storage::now_ms;
use crate::xdms::generated::rfc3339;

/// What is charged.
pub struct Charge<'a> {
    /// `message` or `deferred-delivery`.
    pub event: &'static str,
    pub sender: &'a str,
    pub recipient: &'a str,
    pub content_type: &'a str,
    pub body: &'a [u8],
    pub call_id: &'a str,
    pub outcome: &'static str,
    pub code: u16,
}

/// Where records go (none: charging off), and the metrics every outcome is counted in.
#[derive(Clone)]
pub struct Charging {
    log: Option<Arc<dyn ChargingLog>>,
    metrics: Arc<Metrics>,
}

impl Charging {
    pub fn new(log: Option<Arc<dyn ChargingLog>>, metrics: Arc<Metrics>) -> Charging {
        Charging { log, metrics }
    }

    /// The deferred queue depth as counted in the store.
    pub fn set_deferred(&self, n: u64) {
        self.metrics.im.set_deferred(n);
    }

    /// Counts the outcome of `c` (`since_ms`: when the MESSAGE arrived, or was stored for a
    /// deferred delivery) and writes its record (durable when this returns, unless the log
    /// failed).
    pub async fn record(&self, c: Charge<'_>, since_ms: u64) {
        let micros = now_ms().saturating_sub(since_ms).saturating_mul(1000);
        match c.event {
            "message" => self.metrics.im.observe_message(c.outcome, micros),
            _ => self.metrics.im.observe_deferred_end(c.outcome, micros),
        }
        let Some(log) = &self.log else {
            return;
        };
        let cpim = Cpim::parse(super::recipient_list::content(c.content_type, c.body).1).ok();
        let requested = cpim.as_ref().map(Cpim::requested).unwrap_or_default();
        let imdn_requested = [
            (requested.positive_delivery, "positive-delivery"),
            (requested.negative_delivery, "negative-delivery"),
            (requested.processing, "processing"),
            (requested.display, "display"),
        ]
        .into_iter()
        .filter_map(|(asked, name)| asked.then_some(name))
        .collect();
        let record = ChargingRecord {
            time: rfc3339(now_ms()),
            event: c.event,
            sender: c.sender.to_string(),
            recipient: c.recipient.to_string(),
            size: c.body.len(),
            content_type: c.content_type.to_string(),
            outcome: c.outcome,
            code: c.code,
            imdn_requested,
            message_id: cpim.and_then(|m| m.message_id()).map(str::to_string),
            call_id: c.call_id.to_string(),
        };
        if let Err(e) = log.append(record).await {
            tracing::error!(target: "xcapd::im", error = %e, "cannot write a charging record");
        }
    }
}
