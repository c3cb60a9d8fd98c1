use super::*;

/// Runs the timer as a driver would, up to `until`, and returns the
/// signals with the times they came at.
fn run(l: &mut LinkLiveness, until: u64) -> Vec<(u64, LivenessSignal)> {
    let mut out = Vec::new();
    loop {
        let at = l.poll_timeout();
        if at > until {
            return out;
        }
        if let Some(s) = l.handle_timeout(at) {
            out.push((at, s));
        }
    }
}

/// A peer that answers every keepalive: one request a second, never
/// silent.
#[test]
fn an_idle_link_with_a_live_peer_asks_for_a_keepalive_every_second_and_stays_up() {
    let mut l = LinkLiveness::new(0);
    let mut seq = 0;
    for _ in 0..10 {
        let at = l.poll_timeout();
        assert_eq!(l.handle_timeout(at), Some(LivenessSignal::Keepalive));
        seq += 1;
        l.data_sent(at, seq);
        assert_eq!(l.ack_received(at + 3, seq), None);
    }
    // Each keepalive a second after the last ACK: 1,000, 2,003, … 10,027.
    assert_eq!(l.poll_timeout(), 10_030 + KEEPALIVE_INTERVAL_MS);
    assert!(!l.is_silent());
}

/// A peer that stops answering right after its last ACK is reported
/// silent within 3 s, and the connection closed 30 s after that.
#[test]
fn a_peer_that_stops_answering_is_silent_within_3_s_and_dead_30_s_later() {
    let mut l = LinkLiveness::new(0);
    l.data_sent(0, 1);
    l.ack_received(1, 1);
    // It stops at 1 ms. The link asks for a keepalive at 1,001 ms and
    // sends it; nothing answers.
    assert_eq!(run(&mut l, 1_001), vec![(1_001, LivenessSignal::Keepalive)]);
    l.data_sent(1_001, 2);
    let signals = run(&mut l, 40_000);
    assert_eq!(
        signals,
        vec![
            (3_001, LivenessSignal::Silent { waited_ms: 2_000 }),
            (33_001, LivenessSignal::Dead)
        ]
    );
    assert!(signals[0].0 - 1 <= 3_000, "noticed within 3 s of the last answer");
}

/// §6.6.5 keeps a silent connection in case the failure was transient:
/// an ACK that arrives later puts the link back.
#[test]
fn an_ack_after_silence_resumes_the_link() {
    let mut l = LinkLiveness::new(0);
    l.data_sent(0, 1);
    assert_eq!(
        l.handle_timeout(l.poll_timeout()),
        Some(LivenessSignal::Silent { waited_ms: 2_000 })
    );
    assert!(l.is_silent());
    assert_eq!(l.ack_received(9_000, 1), Some(LivenessSignal::Resumed));
    assert!(!l.is_silent());
    assert_eq!(l.poll_timeout(), 10_000, "back to keepalives");
    assert_eq!(l.rto_ms(), 1_000, "the silence is no RTT sample");
    assert_eq!(l.srtt_us(), None);
}

/// A timer that fires long after it was due says this process was
/// stopped, not that the peer was: nothing is reported, and the frames
/// in flight get a fresh timeout (their ACKs may wait unread).
#[test]
fn a_late_timer_blames_nobody() {
    let mut l = LinkLiveness::new(0);
    l.data_sent(0, 1);
    assert_eq!(l.handle_timeout(60_000), None);
    assert!(!l.is_silent());
    assert_eq!(l.poll_timeout(), 62_000);
    assert_eq!(l.ack_received(60_001, 1), None);
    assert_eq!(l.poll_timeout(), 61_001);
    assert_eq!(l.srtt_us(), None, "the stall is no RTT sample");
    // A timer up to the tolerance late still counts.
    let mut l = LinkLiveness::new(0);
    l.data_sent(0, 1);
    assert_eq!(
        l.handle_timeout(2_000 + STALL_TOLERANCE_MS),
        Some(LivenessSignal::Silent { waited_ms: 3_000 })
    );
}

/// Busy links never ask for keepalives: traffic in either direction
/// proves enough, and a frame in flight already awaits an ACK.
#[test]
fn traffic_postpones_keepalives() {
    let mut l = LinkLiveness::new(0);
    l.data_received(900);
    assert_eq!(l.poll_timeout(), 1_900);
    l.data_sent(1_500, 1);
    assert_eq!(l.poll_timeout(), 3_500, "waiting for the ACK, not asking");
    l.ack_received(1_510, 1);
    assert_eq!(l.poll_timeout(), 2_510);
}

/// ACKs that confirm only part of what is in flight keep the link alive
/// as long as they keep coming; the rest is timed from the last one.
#[test]
fn partial_acks_restart_the_wait_for_the_rest() {
    let mut l = LinkLiveness::new(0);
    for s in 1..=5 {
        l.data_sent(1_000 + s as u64, s);
    }
    l.ack_received(1_010, 3);
    assert_eq!(l.poll_timeout(), 3_010);
    l.ack_received(1_020, 5);
    assert_eq!(l.poll_timeout(), 2_020, "all confirmed: the keepalive clock runs");
}

/// An ACK for a frame never sent (a confused or hostile peer) proves
/// nothing.
#[test]
fn an_ack_for_an_unsent_frame_is_ignored() {
    let mut l = LinkLiveness::new(0);
    assert_eq!(l.ack_received(10, 7), None);
    l.data_sent(100, 1);
    l.ack_received(200, 2);
    assert_eq!(l.poll_timeout(), 2_100, "still waiting for frame 1");
    // Sequence numbers wrap (§6.6.2): u32::MAX precedes 0.
    let mut l = LinkLiveness::new(0);
    l.data_sent(0, u32::MAX);
    l.data_sent(1, 0);
    l.ack_received(5, 0);
    assert_eq!(l.poll_timeout(), 1_005);
}

/// RFC 6298 §2: the first sample sets SRTT = R and RTTVAR = R/2; later
/// ones smooth with α = 1/8 and β = 1/4; the RTO is never below 1 s, and
/// a link whose RTO grows past the 2 s floor waits that long.
#[test]
fn the_rto_follows_rfc_6298() {
    let mut l = LinkLiveness::new(0);
    assert_eq!(l.rto_ms(), 1_000);
    l.data_sent(0, 1);
    l.ack_received(400, 1);
    assert_eq!(l.srtt_us(), Some(400_000));
    // 400 ms + 4 × 200 ms.
    assert_eq!(l.rto_ms(), 1_200);
    assert_eq!(l.silence_timeout_ms(), SILENCE_FLOOR_MS);
    l.data_sent(1_000, 2);
    l.ack_received(3_000, 2);
    // SRTT = 7/8·400 + 1/8·2000 = 600; RTTVAR = 3/4·200 + 1/4·1600 = 550.
    assert_eq!(l.srtt_us(), Some(600_000));
    assert_eq!(l.rto_ms(), 2_800);
    assert_eq!(l.silence_timeout_ms(), 2_800);
    // Only one frame is timed at a time: the second of two sent together
    // gives no sample of its own.
    l.data_sent(4_000, 3);
    l.data_sent(4_100, 4);
    l.ack_received(4_200, 3);
    let after_one = l.srtt_us();
    l.ack_received(4_300, 4);
    assert_eq!(l.srtt_us(), after_one);
}
