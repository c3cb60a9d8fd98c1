//! Issue 34 (performance): calls between a conventional SIP domain
//! (Kamailio, `corp.bench`) and the overlay, against Kamailio taking the
//! same calls itself, in one run.
//!
//! - Inbound: alice, registered at Kamailio, calls bob of a 3-peer
//!   overlay; Kamailio sends the calls to the overlay's proxy peer (peer
//!   0), which finds bob at peer 1. Throughput, CPU per call (Kamailio's
//!   processes and the peers') and setup latency (INVITE→180).
//! - Outbound: alice of the overlay, at peer 0, calls bob registered at
//!   Kamailio: setup latency. Her Request-URI names Kamailio's address,
//!   so no DNS is timed (the peer's resolver caches by TTL anyway).
//! - Kamailio alone: alice and bob both registered at it.

use crate::latency::{self, Calling, Percentiles};
use crate::report::{ratio, InterworkingCalls};
use crate::rig::{self, scratch, Owned};
use crate::throughput::{self, Scenarios};
use crate::{call_scenarios, note_busy, register_scenario, routing_kamailio, sipp, start_demo_with_proxy_peers};
use crate::{Args, Layout};
use anyhow::{Context, Result};
use std::path::Path;

const CORP: &str = "corp.bench";

pub fn measure(args: &Args, p2psip: &Path, layout: &Layout) -> Result<InterworkingCalls> {
    let users = ["alice".to_string(), "bob".to_string()];
    let (alice, bob) = (&users[..1], &users[1..]);
    let tests = args.repo.join("crates/p2psip/tests/sipp");

    eprintln!("p2psip-bench: calls from a Kamailio domain into the overlay through a proxy peer");
    let work = scratch(&args.work, "interworking-p2psip")?;
    // alice of the overlay at peer 0 (the proxy peer), bob at peer 1.
    let demo = start_demo_with_proxy_peers(args, p2psip, &work, (3, 1), &users, &[0, 1])?;
    let corp = scratch(&work, "corp")?;
    let route = rig::Route {
        domain: &demo.domain,
        proxy_peer: demo.sip[0],
    };
    let corp_kamailio = routing_kamailio(args, layout, &corp, &demo.password, Some(route))?;
    let into_overlay = [
        (
            "INVITE sip:[service]@corp.bench",
            format!("INVITE sip:[service]@{}", demo.domain),
        ),
        (
            "To: <sip:[service]@corp.bench>",
            format!("To: <sip:[service]@{}>", demo.domain),
        ),
        ("CALLER", "alice".to_string()),
    ];
    let caller = edited(&corp, &tests.join("uac_call.xml"), CORP, &into_overlay)?;
    let register_at_corp = register_scenario(args, &corp, CORP)?;
    let (register_at_overlay, _, answering) = call_scenarios(args, &work, &demo.domain)?;
    let alice_at_corp = sipp::users_file(&corp, "alice.csv", alice, CORP, &demo.password)?;
    let bob_in_overlay = sipp::users_file(&work, "bob.csv", bob, &demo.domain, &demo.password)?;
    let both_cpu = || -> Result<f64> { Ok(demo.cpu_seconds()? + corp_kamailio.cpu_seconds()?) };
    let inbound = throughput::calls(
        &work,
        &Scenarios {
            register: &register_at_corp,
            register_callee: Some(&register_at_overlay),
            caller: &caller,
            callee: &answering,
        },
        &layout.sipp,
        corp_kamailio.addr,
        demo.sip[1],
        &alice_at_corp,
        &bob_in_overlay,
        "bob",
        args.seconds,
        usize::from(args.repeats),
        &both_cpu,
    )
    .context("calls into the overlay through a proxy peer")?;
    eprintln!(
        "  {:.0}/s (median of {:.0?}), {:.0} µs CPU each (Kamailio and the 3 peers)",
        inbound.per_s, inbound.rates, inbound.cpu_us_per_op
    );

    // Both registrations are still there: bob's phone answers again.
    let calling = crate::latency_calling(args, layout, &work, (&register_at_corp, &caller, &answering));
    let inbound_setup = {
        let _bob: Owned = throughput::answering_callee(&work, &answering, demo.sip[1], layout.sipp.callee)?;
        setup(&calling, corp_kamailio.addr, "bob").context("setup time of calls into the overlay")?
    };
    eprintln!(
        "  INVITE→180 p50 {:.3} ms, p99 {:.3} ms",
        inbound_setup.p50_ms, inbound_setup.p99_ms
    );

    eprintln!("p2psip-bench: call setup from the overlay to the Kamailio domain");
    let out = scratch(&work, "outbound")?;
    let bob_at_corp = sipp::users_file(&out, "bob.csv", bob, CORP, &demo.password)?;
    throughput::register_once(
        &out,
        &register_at_corp,
        corp_kamailio.addr,
        &bob_at_corp,
        layout.sipp.callee,
    )?;
    let corp_answering = throughput::callee_scenario(&out, &tests, CORP)?;
    // INVITE→180 of `caller` of the overlay (one of `users`), registered
    // at `peer`, calling bob at Kamailio; the files in `dir`.
    let setup_out = |dir: &Path, caller: &str, users: &[String], peer: std::net::SocketAddr| -> Result<Percentiles> {
        let out_of_overlay = [
            (
                "INVITE sip:[service]@OVERLAY",
                format!("INVITE sip:[service]@{}", corp_kamailio.addr),
            ),
            (
                "To: <sip:[service]@OVERLAY>",
                "To: <sip:[service]@corp.bench>".to_string(),
            ),
            ("CALLER", caller.to_string()),
        ];
        let scenario = edited(dir, &tests.join("uac_call.xml"), "OVERLAY", &out_of_overlay)?;
        let scenario = rename_domain(&scenario, &demo.domain)?;
        let in_overlay = sipp::users_file(dir, &format!("{caller}.csv"), users, &demo.domain, &demo.password)?;
        throughput::register_once(dir, &register_at_overlay, peer, &in_overlay, layout.sipp.caller)?;
        let calling = crate::latency_calling(args, layout, dir, (&register_at_overlay, &scenario, &corp_answering));
        let _bob: Owned = throughput::answering_callee(dir, &corp_answering, corp_kamailio.addr, layout.sipp.callee)?;
        let times = setup(&calling, peer, "bob")?;
        eprintln!("  INVITE→180 p50 {:.3} ms, p99 {:.3} ms", times.p50_ms, times.p99_ms);
        Ok(times)
    };
    let outbound_setup =
        setup_out(&out, "alice", alice, demo.sip[0]).context("setup time of calls out of the overlay")?;

    // bob of the overlay, at peer 1, which is not a proxy peer: his calls
    // out go through the overlay to peer 0 first (decision 0036).
    eprintln!("p2psip-bench: call setup from a peer that is not a proxy peer, through the proxy peer");
    let via = scratch(&work, "outbound-through-proxy-peer")?;
    let through_proxy_peer_setup =
        setup_out(&via, "bob", bob, demo.sip[1]).context("setup time of calls out through the proxy peer")?;
    let password = demo.password.clone();
    drop(corp_kamailio);
    drop(demo);

    eprintln!("p2psip-bench: the same calls, Kamailio to a callee registered at itself");
    let work = scratch(&args.work, "interworking-kamailio")?;
    let kamailio = crate::kamailio(args, layout, &work, &password)?;
    let cpu = || kamailio.cpu_seconds();
    let addr = kamailio.addr;
    let reference = crate::alice_calls_bob(args, layout, &work, (CORP, &password), (addr, addr), &cpu)
        .context("Kamailio call throughput")?;
    eprintln!(
        "  {:.0}/s (median of {:.0?}), {:.0} µs CPU each",
        reference.per_s, reference.rates, reference.cpu_us_per_op
    );
    let (register, uac, uas) = call_scenarios(args, &work, CORP)?;
    let calling = crate::latency_calling(args, layout, &work, (&register, &uac, &uas));
    let kamailio_setup = {
        let _bob: Owned = throughput::answering_callee(&work, &uas, kamailio.addr, layout.sipp.callee)?;
        setup(&calling, kamailio.addr, "bob").context("setup time through Kamailio")?
    };
    eprintln!(
        "  INVITE→180 p50 {:.3} ms, p99 {:.3} ms",
        kamailio_setup.p50_ms, kamailio_setup.p99_ms
    );
    let kamailio_busy = note_busy(&kamailio);
    Ok(InterworkingCalls {
        ratio: ratio(&inbound, &reference),
        inbound,
        kamailio: reference,
        kamailio_busy,
        inbound_setup,
        outbound_setup,
        through_proxy_peer_setup,
        kamailio_setup,
    })
}

/// A scenario of `source` for `domain`, with each edit made.
fn edited(work: &Path, source: &Path, domain: &str, edits: &[(&str, String)]) -> Result<std::path::PathBuf> {
    let edits: Vec<(&str, &str)> = edits.iter().map(|(from, to)| (*from, to.as_str())).collect();
    sipp::scenario(work, source, domain, &edits)
}

/// The scenario at `path` with the placeholder domain `OVERLAY` that is
/// left (the caller's own) made `domain`.
fn rename_domain(path: &Path, domain: &str) -> Result<std::path::PathBuf> {
    let text = std::fs::read_to_string(path)?.replace("OVERLAY", domain);
    std::fs::write(path, text)?;
    Ok(path.to_path_buf())
}

/// INVITE→180 of the calls to `callee` through `proxy`.
fn setup(calling: &Calling, proxy: std::net::SocketAddr, callee: &str) -> Result<Percentiles> {
    latency::percentiles(&calling.setup_times(proxy, callee)?).context("no call measured")
}
