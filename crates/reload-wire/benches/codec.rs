//! Codec micro-benchmarks: a typical StoreReq message encoded and decoded
//! whole, and the forwarding path of a peer that only relays a message
//! (parse the forwarding header, push itself on the via list, decrement
//! TTL, re-write the header, copy the payload). Criterion prints time per
//! message and throughput in bytes per second.
//!
//! Run: cargo bench -p reload-wire --bench codec

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use reload_wire::{samples, Body, DecodeContext, Destination, ForwardingHeader, HeaderView, Message, Writer};
use std::hint::black_box;

fn store_req_message() -> Message {
    let (_, body) = samples::bodies()
        .into_iter()
        .find(|(l, _)| *l == "store_req")
        .expect("sample");
    samples::message(&body, 42)
}

fn bench_store_req(c: &mut Criterion) {
    let ctx = DecodeContext::default();
    let msg = store_req_message();
    let bytes = msg.to_bytes().unwrap();
    let mut g = c.benchmark_group("store_req");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function(format!("encode ({} bytes)", bytes.len()), |b| {
        b.iter(|| {
            let mut w = Writer::with_capacity(bytes.len());
            black_box(&msg).encode(&mut w);
            black_box(w.finish().unwrap())
        })
    });
    g.bench_function("decode message + body", |b| {
        b.iter(|| {
            let m = Message::decode(black_box(&bytes), &ctx).unwrap();
            black_box(Body::decode(m.message_contents.message_code, &m.message_contents.message_body, &ctx).unwrap())
        })
    });
    g.finish();
}

fn bench_forwarding(c: &mut Criterion) {
    let ctx = DecodeContext::default();
    let bytes = store_req_message().to_bytes().unwrap();
    let me = Destination::Node(samples::node(0x33));
    let mut g = c.benchmark_group("forwarding");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("parse forwarding header only", |b| {
        b.iter(|| black_box(ForwardingHeader::split(black_box(&bytes), &ctx).unwrap().0))
    });
    g.bench_function("parse, add via, re-encode", |b| {
        b.iter(|| {
            let (mut h, payload) = ForwardingHeader::split(black_box(&bytes), &ctx).unwrap();
            h.ttl -= 1;
            h.destination_list.remove(0);
            h.via_list.push(me.clone());
            let mut w = Writer::with_capacity(bytes.len() + 32);
            h.encode_with_payload(&mut w, payload);
            black_box(w.finish().unwrap())
        })
    });
    // What a relaying peer runs (§6.1.2): the header checked in place and
    // rewritten from its bytes, no lists decoded.
    g.bench_function("relay from the header view", |b| {
        b.iter(|| {
            let view = HeaderView::parse(black_box(&bytes), &ctx).unwrap();
            black_box(view.relayed(1, &me).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, bench_store_req, bench_forwarding);
criterion_main!(benches);
