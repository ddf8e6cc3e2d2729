//! Non-INVITE transactions (RFC 3261 §17.1.2, §17.2.2), sans I/O: the state machines take
//! events and the current time and say what to send and when to wake them. The endpoint owns
//! sockets and clocks; this module owns the rules (retransmissions over UDP absorbed or
//! answered with the last response, Timers E, F, J and K).

use std::time::{Duration, Instant};

/// RFC 3261 §17.1.1.1 timer values.
pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
pub const T4: Duration = Duration::from_secs(5);

/// The base timers of client transactions (RFC 3261 §17.1.1.1 allows other values on
/// networks that call for them; tests use short ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: T1,
            t2: T2,
            t4: T4,
        }
    }
}

/// Server transaction states (§17.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// A non-INVITE server transaction: created when a request arrives, fed the responses the TU
/// sends and the retransmissions of the request.
#[derive(Debug)]
pub struct ServerTransaction {
    state: ServerState,
    reliable: bool,
    last_response: Option<Vec<u8>>,
    /// Timer J: when a completed transaction is forgotten.
    expires: Option<Instant>,
}

impl ServerTransaction {
    /// `reliable`: the request came over TCP or TLS (no retransmissions, Timer J is zero).
    pub fn new(reliable: bool) -> ServerTransaction {
        ServerTransaction {
            state: ServerState::Trying,
            reliable,
            last_response: None,
            expires: None,
        }
    }

    pub fn state(&self) -> ServerState {
        self.state
    }

    /// The request arrived again: in Trying it is absorbed (`None`); afterwards the last
    /// response is sent again (§17.2.2).
    pub fn on_retransmission(&self) -> Option<&[u8]> {
        match self.state {
            ServerState::Proceeding | ServerState::Completed => self.last_response.as_deref(),
            ServerState::Trying | ServerState::Terminated => None,
        }
    }

    /// The TU answers with `code`; returns the bytes to send (none once terminated).
    pub fn on_response(&mut self, code: u16, bytes: Vec<u8>, now: Instant) -> Option<&[u8]> {
        match self.state {
            ServerState::Completed | ServerState::Terminated => return None,
            ServerState::Trying | ServerState::Proceeding => {}
        }
        if code < 200 {
            self.state = ServerState::Proceeding;
        } else {
            self.state = ServerState::Completed;
            let j = if self.reliable {
                Duration::ZERO
            } else {
                T1 * 64
            };
            self.expires = Some(now + j);
        }
        self.last_response = Some(bytes);
        self.last_response.as_deref()
    }

    /// Timer J: a completed transaction ends once it fires.
    pub fn poll(&mut self, now: Instant) -> ServerState {
        if self.expires.is_some_and(|at| now >= at) {
            self.state = ServerState::Terminated;
        }
        self.state
    }
}

/// Client transaction states (§17.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// What a client transaction asks its owner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAction {
    /// Send (or resend) the request.
    Send,
    /// A final response reached the TU.
    Final(u16),
    /// Timer F fired before a final response (§17.1.2.2: the TU is told of a timeout, 408).
    Timeout,
}

/// A non-INVITE client transaction (e.g. a NOTIFY the notifier sends).
#[derive(Debug)]
pub struct ClientTransaction {
    state: ClientState,
    reliable: bool,
    timers: Timers,
    /// Timer E: next retransmission and its interval (unreliable transports only).
    retransmit: Option<(Instant, Duration)>,
    /// Timer F: the transaction gives up.
    give_up: Instant,
    /// Timer K: a completed transaction is forgotten.
    forget: Option<Instant>,
}

impl ClientTransaction {
    /// Starts the transaction with the RFC timers: the request is sent now.
    pub fn start(reliable: bool, now: Instant) -> (ClientTransaction, ClientAction) {
        Self::start_with(Timers::default(), reliable, now)
    }

    /// [`ClientTransaction::start`] with other base timers.
    pub fn start_with(
        timers: Timers,
        reliable: bool,
        now: Instant,
    ) -> (ClientTransaction, ClientAction) {
        let tx = ClientTransaction {
            state: ClientState::Trying,
            reliable,
            timers,
            retransmit: (!reliable).then_some((now + timers.t1, timers.t1)),
            give_up: now + timers.t1 * 64,
            forget: None,
        };
        (tx, ClientAction::Send)
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    /// A response for this transaction arrived.
    pub fn on_response(&mut self, code: u16, now: Instant) -> Option<ClientAction> {
        match self.state {
            ClientState::Trying | ClientState::Proceeding => {}
            // Retransmitted finals are absorbed in Completed.
            ClientState::Completed | ClientState::Terminated => return None,
        }
        if code < 200 {
            self.state = ClientState::Proceeding;
            return None;
        }
        self.state = ClientState::Completed;
        self.retransmit = None;
        self.forget = Some(
            now + if self.reliable {
                Duration::ZERO
            } else {
                self.timers.t4
            },
        );
        Some(ClientAction::Final(code))
    }

    /// Runs the timers due at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<ClientAction> {
        match self.state {
            ClientState::Trying | ClientState::Proceeding => {
                if now >= self.give_up {
                    self.state = ClientState::Terminated;
                    self.retransmit = None;
                    return Some(ClientAction::Timeout);
                }
                let (at, interval) = self.retransmit?;
                if now < at {
                    return None;
                }
                // Trying doubles up to T2; Proceeding retransmits every T2 (§17.1.2.2).
                let next = if self.state == ClientState::Proceeding {
                    self.timers.t2
                } else {
                    (interval * 2).min(self.timers.t2)
                };
                self.retransmit = Some((now + next, next));
                Some(ClientAction::Send)
            }
            ClientState::Completed => {
                if self.forget.is_some_and(|at| now >= at) {
                    self.state = ClientState::Terminated;
                }
                None
            }
            ClientState::Terminated => None,
        }
    }

    /// When the owner should call [`ClientTransaction::poll`] next.
    pub fn next_wake(&self) -> Option<Instant> {
        match self.state {
            ClientState::Trying | ClientState::Proceeding => Some(
                self.retransmit
                    .map_or(self.give_up, |(at, _)| at.min(self.give_up)),
            ),
            ClientState::Completed => self.forget,
            ClientState::Terminated => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // RFC 3261 §17.2.2: Trying absorbs retransmissions; a final response is resent for each
    // retransmission until Timer J (64*T1 over UDP, zero over TCP) ends the transaction.
    #[test]
    fn server_transaction_over_udp_and_tcp() {
        let t0 = Instant::now();
        let mut tx = ServerTransaction::new(false);
        assert_eq!(tx.on_retransmission(), None, "absorbed in Trying");
        assert_eq!(tx.on_response(100, b"100".to_vec(), t0), Some(&b"100"[..]));
        assert_eq!(tx.on_retransmission(), Some(&b"100"[..]));
        assert_eq!(tx.on_response(200, b"200".to_vec(), t0), Some(&b"200"[..]));
        assert_eq!(tx.state(), ServerState::Completed);
        assert_eq!(tx.on_retransmission(), Some(&b"200"[..]));
        assert_eq!(
            tx.on_response(500, b"500".to_vec(), t0),
            None,
            "one final only"
        );
        assert_eq!(tx.poll(t0 + T1 * 63), ServerState::Completed);
        assert_eq!(tx.poll(t0 + T1 * 64), ServerState::Terminated);
        let mut tcp = ServerTransaction::new(true);
        tcp.on_response(200, b"200".to_vec(), t0);
        assert_eq!(tcp.poll(t0), ServerState::Terminated);
    }

    // RFC 3261 §17.1.2.2: Timer E doubles from T1 to T2, Timer F gives up at 64*T1.
    #[test]
    fn client_transaction_retransmits_and_times_out_over_udp() {
        let t0 = Instant::now();
        let (mut tx, first) = ClientTransaction::start(false, t0);
        assert_eq!(first, ClientAction::Send);
        let mut sends = vec![];
        let mut now;
        loop {
            now = tx.next_wake().unwrap();
            match tx.poll(now) {
                Some(ClientAction::Send) => sends.push(now - t0),
                Some(ClientAction::Timeout) => break,
                other => panic!("{other:?}"),
            }
        }
        let ms: Vec<u128> = sends.iter().map(|d| d.as_millis()).collect();
        assert_eq!(&ms[..5], &[500, 1500, 3500, 7500, 11500]);
        assert_eq!(now - t0, T1 * 64);
        assert_eq!(tx.state(), ClientState::Terminated);
    }

    // A provisional response moves to Proceeding (retransmit every T2); the final one
    // completes; retransmitted finals are absorbed; Timer K forgets it.
    #[test]
    fn client_transaction_completes() {
        let t0 = Instant::now();
        let (mut tx, _) = ClientTransaction::start(false, t0);
        assert_eq!(tx.on_response(180, t0), None);
        assert_eq!(tx.state(), ClientState::Proceeding);
        assert_eq!(tx.poll(t0 + T1), Some(ClientAction::Send));
        assert_eq!(tx.next_wake(), Some(t0 + T1 + T2));
        assert_eq!(tx.on_response(200, t0 + T1), Some(ClientAction::Final(200)));
        assert_eq!(tx.on_response(200, t0 + T1), None);
        assert_eq!(tx.poll(t0 + T1 + T4), None);
        assert_eq!(tx.state(), ClientState::Terminated);
        let (mut tcp, _) = ClientTransaction::start(true, t0);
        assert_eq!(tcp.next_wake(), Some(t0 + T1 * 64), "no Timer E over TCP");
        assert_eq!(tcp.on_response(481, t0), Some(ClientAction::Final(481)));
    }

    proptest! {
        // Whatever order events come in, a client transaction reports at most one outcome and
        // never sends after it.
        #[test]
        fn client_reports_one_outcome(events in proptest::collection::vec((0u16..700, 0u64..40_000), 0..40), reliable in any::<bool>()) {
            let t0 = Instant::now();
            let (mut tx, _) = ClientTransaction::start(reliable, t0);
            let mut outcomes = 0;
            let mut events = events;
            events.sort_by_key(|e| e.1);
            for (code, ms) in events {
                let now = t0 + Duration::from_millis(ms);
                let done = outcomes > 0;
                let mut acts = vec![];
                acts.extend(tx.poll(now));
                if code >= 100 {
                    acts.extend(tx.on_response(code, now));
                }
                for a in acts {
                    match a {
                        ClientAction::Send => prop_assert!(!done),
                        ClientAction::Final(_) | ClientAction::Timeout => outcomes += 1,
                    }
                }
            }
            prop_assert!(outcomes <= 1);
        }
    }
}
