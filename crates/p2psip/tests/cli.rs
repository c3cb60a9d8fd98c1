//! The CLI as a user runs it: real process, real files.

use std::process::Command;

fn p2psip(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_p2psip"))
        .args(args)
        .output()
        .expect("run p2psip")
}

#[test]
fn samples_writes_a_pcap_and_round_trips_every_message() {
    let dir = std::env::temp_dir().join(format!("p2psip-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("s.pcap");
    let out = p2psip(&[
        "samples",
        "--pcap",
        pcap.to_str().unwrap(),
        "--corpus",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    for method in [
        "store_req",
        "attach_req",
        "update_req (ChordUpdate full)",
        "config_update_ans",
        "error (Error_Not_Found)",
    ] {
        assert!(stdout.contains(method), "table lacks {method}:\n{stdout}");
    }
    let pcap_bytes = std::fs::read(&pcap).unwrap();
    assert_eq!(&pcap_bytes[..4], &0xa1b2_c3d4u32.to_le_bytes(), "pcap magic");
    let seeds = std::fs::read_dir(dir.join("decode_message")).unwrap().count();
    assert!(seeds >= 30, "one seed per sample, got {seeds}");

    // A seed decodes back through `p2psip decode`.
    let seed = std::fs::read(dir.join("decode_message").join("sample-04")).unwrap();
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    let out = p2psip(&["decode", &hex]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("StoreReq"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn assert_one_line_error(args: &[&str], needle: &str) {
    let out = p2psip(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line for {args:?}, got:\n{err}");
    assert!(err.starts_with("p2psip: ") && err.contains(needle), "{args:?}: {err}");
}

#[test]
fn bad_input_gets_one_line_and_status_2() {
    assert_one_line_error(&["--bogus"], "--bogus");
    assert_one_line_error(&["decode", "zz"], "not hex");
    assert_one_line_error(&["decode", "abc"], "odd number of hex digits");
    assert_one_line_error(&["decode", "d2454c4f00"], "not a RELOAD message");
    assert_one_line_error(&["decode", "--node-id-length", "9", "00"], "node-id-length");
    assert_one_line_error(&["samples", "--pcap", "/nonexistent-dir/x.pcap"], "cannot write");
    let busy = std::env::temp_dir().join(format!("p2psip-cli-busy-{}", std::process::id()));
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("something"), b"x").unwrap();
    assert_one_line_error(&["demo", "--dir", busy.to_str().unwrap()], "is not empty");
    // A node directory (or anything else) is never overwritten by init.
    assert_one_line_error(
        &["init", "--dir", busy.to_str().unwrap(), "--overlay", "o.test"],
        "is not empty",
    );
    assert_one_line_error(
        &["user", "list", "--dir", busy.to_str().unwrap()],
        "neither an overlay directory",
    );
    assert_one_line_error(
        &["init", "--overlay", "o.test"],
        "not provided: --dir <DIR> (see 'p2psip init --help')",
    );
    assert_one_line_error(&["status", "--admin", "localhost"], "is not HOST:PORT");
    std::fs::remove_dir_all(&busy).unwrap();
    assert_one_line_error(&["demo", "--base-port", "65500"], "--base-port 65500 leaves no room");
    assert_one_line_error(&["demo", "--peers", "0"], "--peers");
    assert_one_line_error(&["demo", "--users", "al ice"], "--users");
    for group in ["10.0.0.1:6084", "239.255.84.84:0", "239.255.84.84"] {
        let init = ["init", "--dir", "/nonexistent", "--overlay", "o.test"];
        let args = [&init[..], &["--multicast-bootstrap", group]].concat();
        assert_one_line_error(&args, "multicast");
    }
}

#[test]
fn sim_json_has_every_promised_field() {
    let out = p2psip(&[
        "sim",
        "--peers",
        "200",
        "--duration",
        "120",
        "--churn-median",
        "300",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for key in [
        "peers",
        "simulated_s",
        "lookups",
        "lookup_success_rate",
        "hops_mean",
        "hops_p50",
        "hops_p99",
        "lookup_latency_ms_p50",
        "lookup_latency_ms_p99",
        "items_stored",
        "items_lost",
        "items_lost_expected",
        "maintenance_msgs_per_peer_s",
        "maintenance_bytes_per_peer_s",
        "wall_s",
        "peak_rss_mb",
    ] {
        assert!(v.get(key).is_some_and(|x| x.is_number()), "missing {key}: {v}");
    }
    assert_eq!(v["peers"], 200);
    assert_eq!(v["simulated_s"], 120.0);
    assert_eq!(v["items_stored"], 200);
    assert!(v["lookups"].as_u64().unwrap() > 1000);
    assert!(v["lookup_success_rate"].as_f64().unwrap() > 0.99);
}

#[test]
fn sim_table_is_the_default_output() {
    let out = p2psip(&["sim", "--peers", "50", "--duration", "30"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for row in [
        "lookup success",
        "hops mean / p50 / p99",
        "items lost / expected",
        "maintenance per peer",
    ] {
        assert!(text.contains(row), "no '{row}' row:\n{text}");
    }
}

#[test]
fn sim_rejects_bad_arguments_in_one_line() {
    for (args, needle) in [
        (&["sim", "--crash-fraction", "2"][..], "not a fraction"),
        (&["sim", "--peers", "1"][..], "--peers must be at least 2"),
        (&["sim", "--session", "weibull"][..], "exponential or pareto"),
        (&["sim", "--mass-crash", "0.3@soon"][..], "not a number of seconds"),
        (&["sim", "--latency-ms", "0"][..], "positive median latency"),
        (&["sim", "--latency-ms", "NaN"][..], "positive median latency"),
        (
            &["sim", "--plot", "/proc/no-such-dir/charts"][..],
            "cannot create the plot directory",
        ),
    ] {
        let out = p2psip(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "one line for {args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn sim_plot_writes_three_png_charts() {
    let dir = std::env::temp_dir().join(format!("p2psip-plot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = p2psip(&[
        "sim",
        "--peers",
        "100",
        "--duration",
        "180",
        "--churn-median",
        "300",
        "--plot",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for name in ["hops.png", "lookups.png", "maintenance.png"] {
        let png = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name} is not a PNG");
        let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
        assert_eq!((width, height), (900, 540), "{name}");
        // A blank canvas compresses to a few hundred bytes; bars, lines
        // and text do not.
        assert!(png.len() > 8_000, "{name} looks empty: {} bytes", png.len());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
