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
}
