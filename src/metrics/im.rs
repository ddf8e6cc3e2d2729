//! Metrics of the IM Server (issue #14 scope 9): MESSAGEs by outcome, ends of stored
//! messages by outcome, the deferred queue depth, and how long a delivery took (a live one:
//! MESSAGE received until answered; a deferred one: stored until delivered).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::{family, Histogram};

/// The outcomes counted (charging record vocabulary).
const OUTCOMES: [&str; 5] = ["delivered", "stored", "blocked", "expired", "failed"];

#[derive(Debug, Default)]
pub struct ImMetrics {
    messages: [AtomicU64; OUTCOMES.len()],
    deferred_ends: [AtomicU64; OUTCOMES.len()],
    deferred: AtomicI64,
    live_delivery: Histogram,
    deferred_delivery: Histogram,
}

fn slot(outcome: &str) -> usize {
    OUTCOMES
        .iter()
        .position(|o| *o == outcome)
        .unwrap_or(OUTCOMES.len() - 1)
}

impl ImMetrics {
    /// A MESSAGE answered with `outcome` after `micros` (delivery latency when delivered).
    pub fn observe_message(&self, outcome: &str, micros: u64) {
        self.messages[slot(outcome)].fetch_add(1, Ordering::Relaxed);
        match outcome {
            "delivered" => self.live_delivery.observe(micros),
            "stored" => {
                self.deferred.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// A stored message ended with `outcome`, `micros` after it was stored.
    pub fn observe_deferred_end(&self, outcome: &str, micros: u64) {
        self.deferred_ends[slot(outcome)].fetch_add(1, Ordering::Relaxed);
        self.deferred.fetch_sub(1, Ordering::Relaxed);
        if outcome == "delivered" {
            self.deferred_delivery.observe(micros);
        }
    }

    /// The queue depth as counted in the store (now and then; corrects any drift).
    pub fn set_deferred(&self, n: u64) {
        self.deferred
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    pub fn deferred(&self) -> i64 {
        self.deferred.load(Ordering::Relaxed)
    }

    pub(super) fn render(&self, out: &mut String) {
        family(
            out,
            "xcapd_im_messages_total",
            "counter",
            "MESSAGE requests by outcome (delivered, stored, blocked, failed).",
        );
        for (i, outcome) in OUTCOMES.iter().enumerate() {
            let n = self.messages[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "xcapd_im_messages_total{{outcome=\"{outcome}\"}} {n}");
        }
        family(
            out,
            "xcapd_im_deferred_total",
            "counter",
            "Stored messages that ended, by outcome (delivered, expired, failed).",
        );
        for (i, outcome) in OUTCOMES.iter().enumerate() {
            let n = self.deferred_ends[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "xcapd_im_deferred_total{{outcome=\"{outcome}\"}} {n}");
        }
        family(
            out,
            "xcapd_im_deferred",
            "gauge",
            "Messages waiting for their recipients.",
        );
        let _ = writeln!(out, "xcapd_im_deferred {}", self.deferred().max(0));
        family(
            out,
            "xcapd_im_delivery_seconds",
            "histogram",
            "Delivery latency: live (MESSAGE received until answered) and deferred (stored until delivered).",
        );
        self.live_delivery
            .render(out, "xcapd_im_delivery_seconds", "mode", "live");
        self.deferred_delivery
            .render(out, "xcapd_im_delivery_seconds", "mode", "deferred");
    }
}
