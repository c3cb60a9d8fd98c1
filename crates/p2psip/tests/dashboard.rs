//! The admin API's dashboard in a real browser (Debian `chromium`,
//! headless), driven over the Chrome DevTools Protocol: it draws every
//! peer of a live demo overlay, follows a peer's death and the ring
//! closing, and its screenshot is a picture, not a blank page.

mod common;

use common::*;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Headless Chromium with the DevTools protocol on a port it picks,
/// killed when dropped.
struct Browser {
    child: Child,
    page: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Drop for Browser {
    /// Debian's `chromium` is a script that starts the browser, which
    /// starts its helpers: the whole process group goes.
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Opens `url` in a new headless Chromium whose profile lives in `dir`.
    fn open(dir: &Path, url: &str) -> Browser {
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        let child = Command::new("chromium")
            .process_group(0)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1200,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("chromium.log")).unwrap())
            .spawn()
            .expect("chromium starts");
        // Chromium writes the port it took into its profile.
        let active = profile.join("DevToolsActivePort");
        let mut port = 0u16;
        wait_for(Duration::from_secs(30), "chromium's DevTools port", || {
            port = std::fs::read_to_string(&active)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.parse().ok()))
                .unwrap_or(0);
            port != 0
        });
        let mut ws_url = String::new();
        wait_for(Duration::from_secs(30), "the dashboard's page target", || {
            let Some(list) = devtools_get(port, "/json/list") else {
                return false;
            };
            let targets: Vec<Value> = serde_json::from_str(&list).unwrap_or_default();
            ws_url = targets
                .iter()
                .find(|t| t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(url)))
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .unwrap_or_default()
                .to_string();
            !ws_url.is_empty()
        });
        let (page, _) = tungstenite::connect(&ws_url).expect("the DevTools WebSocket opens");
        if let MaybeTlsStream::Plain(tcp) = page.get_ref() {
            tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
        Browser {
            child,
            page,
            next_id: 0,
        }
    }

    /// One DevTools command; its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({ "id": id, "method": method, "params": params });
        self.page.send(Message::text(command.to_string())).unwrap();
        loop {
            let Message::Text(text) = self.page.read().expect("a DevTools answer") else {
                continue;
            };
            let answer: Value = serde_json::from_str(text.as_str()).unwrap();
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        result["result"]["value"].clone()
    }

    /// The Node-IDs of the peers the page draws, sorted.
    fn drawn_peers(&mut self) -> Vec<String> {
        let ids = self.eval("[...document.querySelectorAll('#peers circle.peer')].map(c => c.dataset.nodeId)");
        let mut ids: Vec<String> = serde_json::from_value(ids).unwrap_or_default();
        ids.sort();
        ids
    }
}

/// A GET to Chromium's DevTools HTTP endpoint, which keeps the
/// connection open: the body is read by its Content-Length.
fn devtools_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut tcp = TcpStream::connect(loopback(port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(tcp, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tcp.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&raw);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")?
                .trim()
                .parse()
                .ok()
        })?;
        if body.len() >= length {
            return Some(body[..length].to_string());
        }
    }
}

/// A PNG's pixels as RGBA rows.
fn pixels(png_bytes: &[u8]) -> (u32, u32, Vec<[u8; 4]>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..info.buffer_size()];
    let px = match info.color_type {
        png::ColorType::Rgba => bytes.chunks(4).map(|c| [c[0], c[1], c[2], c[3]]).collect(),
        png::ColorType::Rgb => bytes.chunks(3).map(|c| [c[0], c[1], c[2], 255]).collect(),
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    (info.width, info.height, px)
}

/// Issue 32: the dashboard of a 5-peer demo draws the 5 peers of the ring
/// walk, this peer's links and its SIP users; after one peer is killed it
/// draws the 4 that remain once the ring has closed, without a reload.
#[test]
fn the_dashboard_draws_the_ring_and_follows_a_dead_peer() {
    if !tool_available("chromium", "chromium") {
        return;
    }
    let Demo {
        procs: mut demo,
        dir,
        file,
        ..
    } = Demo::start("dashboard", &["--peers", "5"]);
    let peers = file["peers"].as_array().unwrap().clone();
    let admin = peers[0]["admin"].as_str().unwrap().to_string();
    let mut all: Vec<String> = peers
        .iter()
        .map(|p| p["node_id"].as_str().unwrap().to_string())
        .collect();
    all.sort();

    let url = format!("http://{admin}/");
    let page = get_text(admin.parse().unwrap(), "/").unwrap();
    assert!(
        page.contains("<svg id=\"ring\""),
        "the admin API serves the dashboard at /"
    );
    let mut browser = Browser::open(dir.parent().unwrap(), &url);
    let mut drawn = Vec::new();
    wait_for(Duration::from_secs(30), "the page to draw the 5 peers", || {
        drawn = browser.drawn_peers();
        drawn == all
    });
    assert_eq!(browser.eval("document.getElementById('peer-count').textContent"), "5");
    assert_eq!(
        browser.eval("document.getElementById('walk').textContent"),
        "the ring is closed"
    );
    let links = browser.eval("document.querySelectorAll('#links line').length");
    assert!(links.as_u64().unwrap() >= 2, "this peer's links are drawn: {links}");
    let users = browser.eval("document.querySelector('#users tbody').textContent");
    assert!(
        users.as_str().unwrap().contains("alice"),
        "alice is served at peer 0: {users}"
    );

    // Kill a peer other than the one whose dashboard this is.
    let victim = &peers[3];
    let pid = victim["pid"].as_u64().unwrap().to_string();
    Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    let remaining: Vec<String> = all
        .iter()
        .filter(|id| id.as_str() != victim["node_id"].as_str().unwrap())
        .cloned()
        .collect();
    wait_for(Duration::from_secs(30), "the page to drop the dead peer", || {
        drawn = browser.drawn_peers();
        drawn == remaining && browser.eval("document.getElementById('walk').textContent") == "the ring is closed"
    });
    assert_eq!(browser.eval("document.getElementById('peer-count').textContent"), "4");

    let shot = browser.call("Page.captureScreenshot", json!({ "format": "png" }));
    use base64::Engine as _;
    let png_bytes = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    std::fs::write(dir.with_extension("png"), &png_bytes).unwrap();
    let (width, height, px) = pixels(&png_bytes);
    assert!(width >= 800 && height >= 600, "{width}x{height}");
    let background = px[px.len() / 2];
    let different = px.iter().filter(|p| **p != background).count();
    assert!(
        different * 20 > px.len(),
        "more than 5 % of the screenshot differs from one colour: {different} of {}",
        px.len()
    );
    let peer_blue = px.iter().filter(|p| p[2] > 180 && p[0] < 90 && p[1] < 140).count();
    assert!(
        peer_blue > 200,
        "the peers' blue dots are in the picture: {peer_blue} pixels"
    );
    assert!(demo.0[0].try_wait().unwrap().is_none(), "the demo goes on");
}
