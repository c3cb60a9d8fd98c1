//! Link framing (§6.6.2, §6.6.3), fragmentation (§6.7), and the decoder's
//! defences: max-message-size, truncation, trailing bytes, unknown Kinds.

use reload_wire::fragment::{fragment, Reassembler, Reassembly, REASSEMBLY_TIMEOUT_MS};
use reload_wire::framing::{acked_sequences, encode_data, FrameDecoder, ReceivedWindow, RtoEstimator};
use reload_wire::samples;
use reload_wire::storage::UnknownKinds;
use reload_wire::*;

fn ctx() -> DecodeContext {
    DecodeContext::new(16, 64 * 1024).unwrap()
}

#[test]
fn ack_bitmask_marks_the_previous_packets() {
    let mut w = ReceivedWindow::new();
    w.on_data(10);
    w.on_data(11);
    w.on_data(13);
    // 14 arrives: 13 is bit 0 (14-13-1), 11 is bit 2, 10 is bit 3.
    let ack = w.on_data(14);
    assert_eq!(
        ack,
        FramedMessage::Ack {
            ack_sequence: 14,
            received: 0b1101
        }
    );
    let acked: Vec<u32> = acked_sequences(14, 0b1101).collect();
    assert_eq!(acked, vec![14, 13, 11, 10]);
    // A peer setting every bit confirms N-1 ..= N-31, never N-32 (§6.6.2: M > N-32).
    let all: Vec<u32> = acked_sequences(100, u32::MAX).collect();
    assert_eq!(all.len(), 32);
    assert_eq!(*all.last().unwrap(), 69);
}

#[test]
fn ack_bitmask_forgets_beyond_32_packets_and_ignores_later_ones() {
    let mut w = ReceivedWindow::new();
    for s in 0..40 {
        w.on_data(s);
    }
    // 40: the 31 packets 9..=39 are within N-32 < M < N; bit for 8 would be 31 (M > N-32 fails).
    let FramedMessage::Ack { received, .. } = w.on_data(40) else {
        panic!()
    };
    assert_eq!(received, 0x7fff_ffff);
    // A packet older than everything seen: nothing later is "previous" to it.
    let FramedMessage::Ack { received, .. } = w.on_data(5) else {
        panic!()
    };
    assert_eq!(received, 0);
}

#[test]
fn ack_bitmask_handles_sequence_wrap() {
    let mut w = ReceivedWindow::new();
    w.on_data(u32::MAX);
    let FramedMessage::Ack { received, .. } = w.on_data(0) else {
        panic!()
    };
    assert_eq!(received, 1);
}

#[test]
fn rto_follows_rfc6298() {
    let mut r = RtoEstimator::default();
    assert_eq!(r.rto_us(), 500_000, "static default of §6.6.3.1");
    r.on_rtt_sample(100_000);
    // SRTT = R, RTTVAR = R/2, RTO = SRTT + 4*RTTVAR = 300 ms.
    assert_eq!(r.rto_us(), 300_000);
    r.on_rtt_sample(100_000);
    // RTTVAR = 3/4*50 + 1/4*0 = 37.5 ms; SRTT = 100; RTO = 250 ms.
    assert_eq!(r.rto_us(), 250_000);
    r.back_off();
    assert_eq!(r.rto_us(), 500_000);
}

#[test]
fn stream_decoder_cuts_frames_at_any_split() {
    let msgs: Vec<Vec<u8>> = samples::messages().iter().map(|(_, m)| m.to_bytes().unwrap()).collect();
    let mut stream = Writer::new();
    for (i, m) in msgs.iter().enumerate() {
        encode_data(&mut stream, i as u32, m);
        FramedMessage::Ack {
            ack_sequence: i as u32,
            received: 0,
        }
        .encode(&mut stream);
    }
    let stream = stream.finish().unwrap();
    // Either pushed, or read straight into the decoder's input as a link
    // reads a socket.
    for (chunk, read_in) in [1, 7, 100, 4096].into_iter().flat_map(|c| [(c, false), (c, true)]) {
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            if read_in {
                let input = d.input(piece.len());
                assert!(input.capacity() - input.len() >= piece.len());
                input.extend_from_slice(piece);
            } else {
                d.push(piece);
            }
            while let Some(f) = d.next_frame(&ctx()).unwrap() {
                got.push(f);
            }
            if d.buffered() == 0 {
                assert!(d.input(0).is_empty(), "a drained input starts over");
            }
        }
        assert_eq!(got.len(), msgs.len() * 2, "chunk size {chunk}");
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(
                got[2 * i],
                FramedMessage::Data {
                    sequence: i as u32,
                    message: m.clone()
                }
            );
        }
        assert_eq!(d.buffered(), 0);
    }
}

#[test]
fn stream_decoder_refuses_oversized_frame_before_it_arrives() {
    let small = DecodeContext::new(16, 1000).unwrap();
    let mut d = FrameDecoder::new();
    // A data frame header announcing 2000 bytes: refused from its first 8 bytes.
    d.push(&[0x80, 0, 0, 0, 1, 0x00, 0x07, 0xd0]);
    assert_eq!(
        d.next_frame(&small),
        Err(DecodeError::MessageTooLarge {
            length: 2000,
            max: 1000
        })
    );
    let mut d = FrameDecoder::new();
    d.push(&[0x42]);
    assert!(matches!(d.next_frame(&small), Err(DecodeError::InvalidValue { .. })));
}

fn big_message() -> Vec<u8> {
    let body = Body::PingReq(PingReq {
        padding: (0..3000u32).map(|i| i as u8).collect(),
    });
    samples::message(&body, 77).to_bytes().unwrap()
}

#[test]
fn fragments_reassemble_in_any_order() {
    let c = ctx();
    let whole = big_message();
    let frags = fragment(&whole, 1200, &c).unwrap();
    assert!(frags.len() >= 3);
    let sizes: Vec<usize> = frags.iter().map(Vec::len).collect();
    assert!(sizes.iter().all(|&s| s <= 1200), "{sizes:?}");
    // §6.7: each fragment has the header, the offset, and only the last has the last bit.
    for (i, f) in frags.iter().enumerate() {
        let (h, _) = ForwardingHeader::split(f, &c).unwrap();
        assert_eq!(h.fragment.is_last(), i == frags.len() - 1);
    }
    for order in [vec![0, 1, 2], vec![2, 0, 1], vec![1, 2, 0]] {
        let mut r = Reassembler::new(1 << 20);
        let mut done = None;
        for i in order.iter().copied().chain(3..frags.len()) {
            match r.push(0, &frags[i], &c).unwrap() {
                Reassembly::Complete(m) => done = Some(m),
                Reassembly::Pending => {}
                Reassembly::Dropped => panic!("dropped"),
            }
        }
        assert_eq!(done.as_deref(), Some(&whole[..]), "order {order:?}");
        assert_eq!(r.pending(), 0);
    }
    // A fragment of a fragment keeps absolute offsets.
    let refrag = fragment(&frags[0], 600, &c).unwrap();
    assert!(refrag.len() >= 2);
    let mut r = Reassembler::new(1 << 20);
    let mut done = None;
    for f in refrag.iter().chain(&frags[1..]) {
        if let Reassembly::Complete(m) = r.push(0, f, &c).unwrap() {
            done = Some(m);
        }
    }
    assert_eq!(done.unwrap(), whole);
}

#[test]
fn fragmentation_respects_the_256_byte_minimum_and_small_messages() {
    let c = ctx();
    let whole = big_message();
    // No room for header + 256 bytes of body: left to IP fragmentation.
    assert_eq!(fragment(&whole, 200, &c).unwrap(), vec![whole.clone()]);
    assert_eq!(fragment(&whole, 100_000, &c).unwrap(), vec![whole]);
}

#[test]
fn reassembly_times_out_and_bounds_memory() {
    let c = ctx();
    let frags = fragment(&big_message(), 1200, &c).unwrap();
    let mut r = Reassembler::new(1 << 20);
    assert_eq!(r.push(0, &frags[0], &c).unwrap(), Reassembly::Pending);
    r.expire(REASSEMBLY_TIMEOUT_MS);
    assert_eq!(r.pending(), 0, "incomplete fragments dropped after 15 s");
    // The rest alone never completes.
    for f in &frags[1..] {
        assert_eq!(r.push(REASSEMBLY_TIMEOUT_MS, f, &c).unwrap(), Reassembly::Pending);
    }
    let mut tiny = Reassembler::new(100);
    assert_eq!(tiny.push(0, &frags[0], &c).unwrap(), Reassembly::Dropped);
}

#[test]
fn decoder_enforces_max_message_size_before_reading_the_rest() {
    let m = samples::messages().remove(0).1.to_bytes().unwrap();
    let tight = DecodeContext::new(16, m.len() - 1).unwrap();
    assert_eq!(
        Message::decode(&m, &tight),
        Err(DecodeError::MessageTooLarge {
            length: m.len(),
            max: m.len() - 1
        })
    );
    // Only the first 20 bytes are needed to learn the length.
    assert_eq!(header::peek_message_length(&m[..20]), Some(Ok(m.len() as u32)));
    assert_eq!(header::peek_message_length(&m[..19]), None);
}

#[test]
fn the_message_code_is_read_past_the_forwarding_header_lists() {
    for (label, m) in samples::messages() {
        let bytes = m.to_bytes().unwrap();
        let code = m.message_contents.message_code;
        assert_eq!(header::peek_message_code(&bytes), Some(code), "{label}");
        let lists =
            bytes.len() - m.message_contents.to_bytes().unwrap().len() - m.security_block.to_bytes().unwrap().len();
        assert_eq!(
            header::peek_message_code(&bytes[..lists + 1]),
            None,
            "{label}: one byte of the code"
        );
    }
    assert_eq!(header::peek_message_code(&[0; 37]), None);
}

#[test]
fn every_truncation_and_extension_of_every_sample_is_an_error() {
    let c = ctx();
    for (label, m) in samples::messages() {
        let bytes = m.to_bytes().unwrap();
        for cut in 0..bytes.len() {
            assert!(Message::decode(&bytes[..cut], &c).is_err(), "{label} cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Message::decode(&longer, &c).is_err(), "{label} with a trailing byte");
        // Body-level: truncations fail, trailing bytes fail.
        let body = m.message_contents.message_body.clone();
        let code = m.message_contents.message_code;
        let mut extra = body.clone();
        extra.push(0);
        let opaque_codes = [
            MessageCode::UPDATE_REQ,
            MessageCode::UPDATE_ANS,
            MessageCode::ROUTE_QUERY_ANS,
        ];
        if !opaque_codes.contains(&code) {
            assert!(
                Body::decode(code, &extra, &c).is_err(),
                "{label} body with a trailing byte"
            );
            for cut in 0..body.len() {
                assert!(
                    Body::decode(code, &body[..cut], &c).is_err(),
                    "{label} body cut at {cut}"
                );
            }
        }
    }
}

#[test]
fn wrong_token_fragment_bit_and_huge_lengths_are_refused() {
    let c = ctx();
    let mut bytes = samples::messages().remove(0).1.to_bytes().unwrap();
    bytes[0] = 0x52;
    assert!(matches!(Message::decode(&bytes, &c), Err(DecodeError::NotReload(_))));
    let mut bytes = samples::messages().remove(0).1.to_bytes().unwrap();
    bytes[12] &= 0x7f; // fragment high bit cleared (§6.7: discard)
    assert!(matches!(
        Message::decode(&bytes, &c),
        Err(DecodeError::InvalidValue { .. })
    ));
    // A vector claiming 4 GB inside a small buffer: an error, no allocation.
    let huge = [0xff, 0xff, 0xff, 0xff];
    assert!(matches!(
        Body::decode(MessageCode::FETCH_ANS, &huge, &c),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn unknown_kinds_are_collected_for_error_unknown_kind() {
    let c = ctx();
    let mut store = match samples::bodies()
        .into_iter()
        .find(|(l, _)| *l == "store_req")
        .unwrap()
        .1
    {
        Body::StoreReq(s) => s,
        _ => unreachable!(),
    };
    store.kind_data[0].kind = 0xf000_0001;
    store.kind_data[2].kind = 0xf000_0002;
    let bytes = store.to_bytes().unwrap();
    let err = StoreReq::from_bytes(&bytes, &c).unwrap_err();
    assert_eq!(err, DecodeError::UnknownKinds(vec![0xf000_0001, 0xf000_0002]));
    // The answer's error_info, built from the error, is exactly §7.4.1.2's list.
    let DecodeError::UnknownKinds(kinds) = err else {
        unreachable!()
    };
    assert_eq!(
        UnknownKinds(kinds).to_bytes().unwrap(),
        vec![8, 0xf0, 0, 0, 1, 0xf0, 0, 0, 2]
    );
    // Declaring the Kind in the context makes it decodable.
    let declared = ctx()
        .with_kind(0xf000_0001, DataModel::Dictionary)
        .with_kind(0xf000_0002, DataModel::SingleValue);
    assert!(StoreReq::from_bytes(&bytes, &declared).is_ok());
}

#[test]
fn node_id_length_comes_from_the_overlay() {
    let id20 = NodeId::from_slice(&[7; 20]).unwrap();
    let bytes = Destination::Node(id20).to_bytes().unwrap();
    assert_eq!(bytes.len(), 22);
    assert!(Destination::from_bytes(&bytes, &DecodeContext::new(16, 5000).unwrap()).is_err());
    assert_eq!(
        Destination::from_bytes(&bytes, &DecodeContext::new(20, 5000).unwrap()).unwrap(),
        Destination::Node(id20)
    );
    assert!(NodeId::from_slice(&[0; 15]).is_err());
    assert!(NodeId::from_slice(&[0; 21]).is_err());
}

#[test]
fn oversized_fields_are_encode_errors_not_truncation() {
    let r = ResourceId(vec![0; 256]);
    assert!(matches!(r.to_bytes(), Err(EncodeError::TooLong { max: 255, .. })));
    let p = PingReq {
        padding: vec![0; 70_000],
    };
    assert!(matches!(p.to_bytes(), Err(EncodeError::TooLong { max: 0xffff, .. })));
}

fn fragment_frames() -> Vec<Vec<u8>> {
    fragment(&big_message(), 1200, &ctx()).unwrap()
}

#[test]
fn every_fragment_carries_at_least_256_body_bytes() {
    let c = ctx();
    let whole = big_message();
    for max_len in (300..whole.len()).step_by(7) {
        let frags = fragment(&whole, max_len, &c).unwrap();
        if frags.len() == 1 {
            continue;
        }
        for (i, f) in frags.iter().enumerate() {
            let (h, body) = ForwardingHeader::split(f, &c).unwrap();
            assert!(body.len() >= 256, "max_len {max_len}: piece of {}", body.len());
            assert!(f.len() <= max_len);
            assert_eq!(h.fragment.is_last(), i == frags.len() - 1, "max_len {max_len}");
        }
    }
}

#[test]
fn short_or_empty_fragments_are_refused() {
    let c = ctx();
    let frag = &fragment_frames()[0];
    let (mut h, body) = ForwardingHeader::split(frag, &c).unwrap();
    let mut r = Reassembler::new(1 << 20);
    for len in [0, 255] {
        let mut w = Writer::new();
        h.encode_with_payload(&mut w, &body[..len]);
        let short = w.finish().unwrap();
        assert_eq!(
            r.push(0, &short, &c),
            Err(reload_wire::fragment::FragmentError::ShortFragment(len))
        );
    }
    // A short last fragment is fine.
    h.fragment = Fragment::new(true, 256);
    let mut w = Writer::new();
    h.encode_with_payload(&mut w, &body[..10]);
    assert_eq!(r.push(0, &w.finish().unwrap(), &c).unwrap(), Reassembly::Pending);
}

#[test]
fn overflow_drops_the_whole_message_and_frees_its_memory() {
    let c = ctx();
    let frags = fragment_frames();
    let one = frags[0].len() + 64;
    let mut r = Reassembler::new(2 * one + 10);
    assert_eq!(r.push(0, &frags[0], &c).unwrap(), Reassembly::Pending);
    assert_eq!(r.push(0, &frags[1], &c).unwrap(), Reassembly::Pending);
    assert_eq!(r.push(0, &frags[2], &c).unwrap(), Reassembly::Dropped);
    assert_eq!(r.pending(), 0);
    assert_eq!(r.buffered(), 0);
}

#[test]
fn reassembly_counts_the_header_against_max_message_size() {
    let whole = big_message();
    let frags = fragment(&whole, 1200, &ctx()).unwrap();
    // The body alone fits, header plus body does not.
    let c = ctx();
    let (_, body) = ForwardingHeader::split(&whole, &c).unwrap();
    let tight = DecodeContext::new(16, body.len() + 10).unwrap();
    let mut r = Reassembler::new(1 << 20);
    let last = frags.last().unwrap();
    assert!(matches!(
        r.push(0, last, &tight),
        Err(reload_wire::fragment::FragmentError::Decode(
            DecodeError::MessageTooLarge { .. }
        ))
    ));
}

#[test]
fn unknown_kinds_are_deduplicated_and_capped() {
    let c = ctx();
    let spec = |kind| StoredDataSpecifier {
        kind,
        generation: 0,
        model_specifier: ModelSpecifier::SingleValue,
    };
    let mut specifiers: Vec<_> = (0..100).map(|k| spec(0xf000_0000 + k)).collect();
    specifiers.push(spec(0xf000_0000));
    let req = FetchReq {
        resource: ResourceId(vec![1]),
        specifiers,
    };
    let Err(DecodeError::UnknownKinds(kinds)) = FetchReq::from_bytes(&req.to_bytes().unwrap(), &c) else {
        panic!("expected unknown kinds")
    };
    assert_eq!(kinds.len(), 100, "duplicates removed");
    let info = UnknownKinds(kinds).to_bytes().unwrap();
    assert_eq!(info[0] as usize, 4 * UnknownKinds::MAX);
    assert_eq!(info.len(), 1 + 4 * 63);
}

#[test]
fn context_and_wildcard_validate_node_id_length() {
    assert!(DecodeContext::new(15, 5000).is_err());
    assert!(DecodeContext::new(21, 5000).is_err());
    assert!(DecodeContext::new(20, 5000).is_ok());
    assert!(NodeId::wildcard(21).is_err());
    assert_eq!(NodeId::wildcard(16).unwrap().as_bytes(), &[0xff; 16]);
}
