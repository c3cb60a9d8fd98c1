//! Any bytes as a link stream (§6.6.2 framing, cut at arbitrary points),
//! and as fragments handed to the reassembler (§6.7). No panic, bounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reload_wire::fragment::Reassembler;
use reload_wire::framing::{FrameDecoder, ReceivedWindow};
use reload_wire::{DecodeContext, FramedMessage};

fuzz_target!(|data: &[u8]| {
    let ctx = DecodeContext::new(16, 1 << 16).unwrap();
    if let Ok(f) = FramedMessage::decode(data, &ctx) {
        assert_eq!(f.to_bytes().unwrap(), data);
    }
    let mut stream = FrameDecoder::new();
    let mut window = ReceivedWindow::new();
    let mut reassembler = Reassembler::new(1 << 18);
    let cut = data.first().map(|&b| usize::from(b) + 1).unwrap_or(1);
    for (i, chunk) in data.chunks(cut).enumerate() {
        stream.push(chunk);
        loop {
            match stream.next_frame(&ctx) {
                Ok(Some(FramedMessage::Data { sequence, message })) => {
                    window.on_data(sequence);
                    let _ = reassembler.push(i as u64 * 1000, &message, &ctx);
                }
                Ok(Some(FramedMessage::Ack { .. })) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
    let _ = reassembler.push(0, data, &ctx);
});
