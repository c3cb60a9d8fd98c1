//! Two ends of a link over a deterministic datagram channel: a fixed
//! one-way delay, and the datagrams a test chooses to lose.

use super::*;

const DELAY_MS: u64 = 10;

fn ctx() -> DecodeContext {
    DecodeContext::default()
}

/// Ends `a` and `b`, and the datagrams in flight: (arrival, to b?, bytes).
struct Wire {
    now: u64,
    a: SimpleReliability,
    b: SimpleReliability,
    flying: Vec<(u64, bool, Vec<u8>)>,
    /// Datagrams (counted from 0, both directions) to lose.
    lose: Vec<usize>,
    sent: usize,
    /// Data frames a sent (first transmissions and retransmissions).
    a_data_frames: usize,
    got_a: Vec<Event>,
    got_b: Vec<Event>,
}

impl Wire {
    fn new() -> Wire {
        Wire {
            now: 0,
            a: SimpleReliability::new(0, Some(2 * DELAY_MS)),
            b: SimpleReliability::new(0, Some(2 * DELAY_MS)),
            flying: Vec::new(),
            lose: Vec::new(),
            sent: 0,
            a_data_frames: 0,
            got_a: Vec::new(),
            got_b: Vec::new(),
        }
    }

    fn collect(&mut self) {
        while let Some(f) = self.a.poll_transmit() {
            if f[0] == reload_wire::framing::framed_message_type::DATA {
                self.a_data_frames += 1;
            }
            if !self.lose.contains(&self.sent) {
                self.flying.push((self.now + DELAY_MS, true, f));
            }
            self.sent += 1;
        }
        while let Some(f) = self.b.poll_transmit() {
            if !self.lose.contains(&self.sent) {
                self.flying.push((self.now + DELAY_MS, false, f));
            }
            self.sent += 1;
        }
        while let Some(e) = self.a.poll_event() {
            self.got_a.push(e);
        }
        while let Some(e) = self.b.poll_event() {
            self.got_b.push(e);
        }
    }

    /// Runs until `until`, delivering datagrams and firing timers in time
    /// order.
    fn run(&mut self, until: u64) {
        self.collect();
        loop {
            let arrival = self.flying.iter().map(|f| f.0).min();
            let timer = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = [arrival, timer].into_iter().flatten().min().filter(|t| *t <= until) else {
                break;
            };
            self.now = next;
            if let Some(k) = self.flying.iter().position(|f| f.0 == next) {
                let (_, to_b, bytes) = self.flying.remove(k);
                let end = if to_b { &mut self.b } else { &mut self.a };
                end.receive(next, &bytes, &ctx()).unwrap();
            } else {
                self.a.handle_timeout(next);
                self.b.handle_timeout(next);
            }
            self.collect();
        }
        self.now = until;
    }

    fn messages_at_b(&self) -> Vec<Vec<u8>> {
        self.got_b
            .iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }
}

fn message(n: u32) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// Nothing lost: every message arrives once, each Data frame is ACKed,
/// nothing is sent twice, and the window grew past its start, so 200
/// messages took far fewer round trips than 200.
#[test]
fn a_lossless_link_delivers_everything_once_and_opens_its_window() {
    let mut w = Wire::new();
    for n in 0..200 {
        w.a.send(0, message(n)).unwrap();
    }
    w.run(2_000);
    assert_eq!(w.messages_at_b(), (0..200).map(message).collect::<Vec<_>>());
    assert_eq!(w.a_data_frames, 200, "no retransmission");
    assert_eq!(w.a.backlog(), (0, 0));
    assert!(w.a.window > 16.0, "window {}", w.a.window);
}

/// With a window of one message, 200 messages would take 200 round
/// trips (4 s at 20 ms); the growing window takes a handful.
#[test]
fn the_window_lets_many_messages_share_a_round_trip() {
    let mut w = Wire::new();
    for n in 0..200 {
        w.a.send(0, message(n)).unwrap();
    }
    w.run(200);
    assert_eq!(w.messages_at_b().len(), 200, "all 200 within 10 round trips");
}

/// A lost Data frame is sent again under a new sequence number as soon
/// as three later messages are ACKed, well before its RTO; the window
/// halves.
#[test]
fn a_lost_message_is_retransmitted_when_later_ones_are_acknowledged() {
    let mut w = Wire::new();
    w.lose = vec![0]; // the first Data frame
    for n in 0..10 {
        w.a.send(0, message(n)).unwrap();
    }
    w.run(100);
    let mut got = w.messages_at_b();
    assert_eq!(got.len(), 10, "all arrived within 100 ms, before any RTO");
    got.sort();
    assert_eq!(got, (0..10).map(message).collect::<Vec<_>>());
    assert_eq!(w.a_data_frames, 11, "one retransmission");
    assert!(w.a.window < INITIAL_WINDOW + 10.0);
}

/// A peer that never answers: the message goes out five times (§6.6.3.1:
/// at 0, RTO, 3 RTO, 7 RTO, 15 RTO), the link is reported silent after
/// three unanswered retransmissions, and fails after the fifth.
#[test]
fn a_peer_that_never_answers_is_silent_then_failed() {
    let mut a = SimpleReliability::new(0, None);
    a.send(0, message(1)).unwrap();
    let mut sent_at = Vec::new();
    let mut events = Vec::new();
    let mut now = 0;
    loop {
        while a.poll_transmit().is_some() {
            sent_at.push(now);
        }
        while let Some(e) = a.poll_event() {
            events.push((now, e));
        }
        let Some(t) = a.poll_timeout() else { break };
        now = t;
        a.handle_timeout(now);
    }
    assert_eq!(sent_at, [0, 500, 1500, 3500, 7500]);
    let silent = events.iter().find(|(_, e)| *e == Event::Silent).map(|(t, _)| *t);
    assert_eq!(silent, Some(3500));
    assert_eq!(events.last(), Some(&(15_500, Event::Failed)));
    assert_eq!(a.poll_timeout(), None, "a failed link has nothing more to do");
}

/// ACKs coming back after the link was reported silent resume it.
#[test]
fn acks_after_silence_resume_the_link() {
    let mut w = Wire::new();
    // The RTO is 100 ms (the floor): transmissions at 0, 100, 300, 700
    // are lost, the fifth at 1,500 arrives.
    w.lose = (0..4).collect();
    w.a.send(0, message(1)).unwrap();
    w.run(1_000);
    assert_eq!(w.got_a, [Event::Silent]);
    w.run(5_000);
    assert!(w.got_a.contains(&Event::Resumed), "{:?}", w.got_a);
    assert!(!w.got_a.contains(&Event::Failed));
    assert!(w.messages_at_b().contains(&message(1)));
}

/// A receiver ACKs every Data frame at once, with the bitmask of the 32
/// before it (§6.6.2).
#[test]
fn every_data_frame_is_acknowledged_at_once() {
    let mut b = SimpleReliability::new(0, None);
    for sequence in [0u32, 1, 3] {
        let f = FramedMessage::Data {
            sequence,
            message: message(sequence),
        };
        b.receive(5, &f.to_bytes().unwrap(), &ctx()).unwrap();
    }
    let acks: Vec<_> = std::iter::from_fn(|| b.poll_transmit())
        .map(|bytes| FramedMessage::decode(&bytes, &ctx()).unwrap())
        .collect();
    assert_eq!(
        acks,
        [
            FramedMessage::Ack {
                ack_sequence: 0,
                received: 0
            },
            FramedMessage::Ack {
                ack_sequence: 1,
                received: 0b1
            },
            FramedMessage::Ack {
                ack_sequence: 3,
                received: 0b110
            },
        ]
    );
}

#[test]
fn a_link_far_behind_refuses_more() {
    let mut a = SimpleReliability::new(0, None);
    for n in 0..(MAX_QUEUED as u32 + INITIAL_WINDOW as u32) {
        a.send(0, message(n)).unwrap();
    }
    assert_eq!(a.send(0, message(0)), Err(Full));
}

/// A link with nothing to send or hear asks for a keepalive once a
/// second of quiet, and not again until something happens.
#[test]
fn a_quiet_link_asks_for_a_keepalive() {
    let mut a = SimpleReliability::new(0, None);
    assert_eq!(a.poll_timeout(), Some(KEEPALIVE_INTERVAL_MS));
    a.handle_timeout(KEEPALIVE_INTERVAL_MS);
    assert_eq!(a.poll_event(), Some(Event::Idle));
    assert_eq!(a.poll_timeout(), None);
}

/// Junk from the peer is an error for the caller to count, not a panic
/// or a state change.
#[test]
fn a_malformed_frame_is_refused() {
    let mut b = SimpleReliability::new(0, None);
    assert!(b.receive(0, &[0x80, 0, 0], &ctx()).is_err());
    assert!(b.receive(0, &[0x07; 40], &ctx()).is_err());
    assert_eq!(b.poll_transmit(), None);
    assert_eq!(b.poll_event(), None);
}

proptest::proptest! {
    /// Whatever datagrams are lost (both directions), every message
    /// arrives at least once, or the sender reports the link failed; the
    /// sender ends with nothing in flight either way.
    #[test]
    fn under_any_loss_everything_arrives_or_the_link_fails(
        lost in proptest::collection::vec(proptest::prelude::any::<bool>(), 400),
        count in 1u32..60,
    ) {
        let mut w = Wire::new();
        w.lose = lost.iter().enumerate().filter(|(_, l)| **l).map(|(k, _)| k).filter(|k| k % 3 != 0).collect();
        for n in 0..count {
            w.a.send(0, message(n)).unwrap();
        }
        w.run(120_000);
        let failed = w.got_a.contains(&Event::Failed);
        if !failed {
            let mut got = w.messages_at_b();
            got.sort();
            got.dedup();
            proptest::prop_assert_eq!(got, (0..count).map(message).collect::<Vec<_>>());
            proptest::prop_assert_eq!(w.a.backlog(), (0, 0));
        }
    }
}

/// Many messages unanswered at once are still one retransmission round
/// at a time: silent after the third round, as with one message.
#[test]
fn many_messages_in_flight_do_not_make_a_link_silent_sooner() {
    let mut a = SimpleReliability::new(0, None);
    for n in 0..4 {
        a.send(0, message(n)).unwrap();
    }
    let mut silent_at = None;
    while let Some(now) = a.poll_timeout().filter(|t| *t < 10_000) {
        a.handle_timeout(now);
        while a.poll_transmit().is_some() {}
        while let Some(e) = a.poll_event() {
            if e == Event::Silent && silent_at.is_none() {
                silent_at = Some(now);
            }
        }
    }
    assert_eq!(silent_at, Some(3_500));
}

/// An ACK for a sequence never sent changes nothing.
#[test]
fn an_ack_for_a_sequence_never_sent_is_ignored() {
    let mut a = SimpleReliability::new(0, None);
    a.send(0, message(1)).unwrap();
    let forged = FramedMessage::Ack {
        ack_sequence: 1_000,
        received: u32::MAX,
    };
    a.receive(5, &forged.to_bytes().unwrap(), &ctx()).unwrap();
    assert_eq!(a.backlog(), (1, 0), "still waiting for its real ACK");
    assert_eq!(a.highest_acked, None);
}
