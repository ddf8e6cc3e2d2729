//! Metrics of the SIP side (issue #13 scope 9): live xcap-diff subscriptions, NOTIFYs by
//! outcome and the NOTIFY transaction's duration (sent until its final answer or Timer F).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::{family, Histogram};

#[derive(Debug, Default)]
pub struct SipMetrics {
    subscriptions: AtomicI64,
    notify_delivered: AtomicU64,
    notify_failed: AtomicU64,
    notify_duration: Histogram,
}

impl SipMetrics {
    pub fn set_subscriptions(&self, n: usize) {
        self.subscriptions.store(n as i64, Ordering::Relaxed);
    }

    /// One NOTIFY's final answer (`408` for a timeout) after `micros`.
    pub fn observe_notify(&self, code: u16, micros: u64) {
        if (200..300).contains(&code) {
            self.notify_delivered.fetch_add(1, Ordering::Relaxed);
        } else {
            self.notify_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.notify_duration.observe(micros);
    }

    pub fn subscriptions(&self) -> i64 {
        self.subscriptions.load(Ordering::Relaxed)
    }

    pub(super) fn render(&self, out: &mut String) {
        family(
            out,
            "xcapd_sip_subscriptions",
            "gauge",
            "Live xcap-diff subscriptions.",
        );
        let _ = writeln!(out, "xcapd_sip_subscriptions {}", self.subscriptions());
        family(
            out,
            "xcapd_sip_notify_total",
            "counter",
            "NOTIFY requests by outcome (delivered: 2xx; failed: an error answer or no answer).",
        );
        for (outcome, n) in [
            ("delivered", &self.notify_delivered),
            ("failed", &self.notify_failed),
        ] {
            let _ = writeln!(
                out,
                "xcapd_sip_notify_total{{outcome=\"{outcome}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        family(
            out,
            "xcapd_sip_notify_duration_seconds",
            "histogram",
            "NOTIFY transactions, from sending until the final answer or the timeout.",
        );
        self.notify_duration.render(
            out,
            "xcapd_sip_notify_duration_seconds",
            "event",
            "xcap-diff",
        );
    }
}
