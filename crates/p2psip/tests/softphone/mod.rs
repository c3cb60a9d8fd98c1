//! A real softphone for whole-system tests: baresip (Debian `baresip`) on
//! loopback, without a sound card, as shared/REAL-TOOLS.md describes. Its
//! microphone is a WAV tone; the `sndfile` module writes what it decodes,
//! which a test reads back to show that media flowed after the signalling
//! crossed the overlay.

use crate::common::{free_port_block, Procs};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One baresip instance with one account.
pub struct Softphone {
    dir: PathBuf,
    pub log: PathBuf,
}

/// What a softphone is configured with.
pub struct Account<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub domain: &'a str,
    /// The peer's SIP address: registrar and outbound proxy.
    pub peer: SocketAddr,
    /// The frequency of the tone it sends, in Hz.
    pub tone_hz: u32,
    /// How long it sends: when the tone ends, baresip hangs up.
    pub tone_s: u32,
    /// SIP over TLS to the peer instead of UDP: the peer's TLS address,
    /// and the CA certificate its certificate must chain to.
    pub tls: Option<(SocketAddr, &'a Path)>,
}

impl Softphone {
    /// Writes the configuration under `parent/user` and starts baresip,
    /// owned by `procs`. `commands` run once it is up (`/dial sip:…`).
    pub fn start(parent: &Path, account: &Account, commands: &[&str], procs: &mut Procs) -> Softphone {
        let dir = parent.join(account.user);
        let sounds = dir.join("snd");
        std::fs::create_dir_all(&sounds).unwrap();
        let tone = dir.join("tone.wav");
        write_tone(&tone, account.tone_hz, account.tone_s);
        // baresip takes the SIP port for UDP and TCP and the next for TLS.
        let sip = free_port_block(2);
        let rtp = free_port_block(10);
        let config = format!(
            "poll_method epoll\n\
             sip_listen 127.0.0.1:{sip}\n\
             sip_trans_def udp\n\
             module_path /usr/lib/baresip/modules\n\
             module_app account.so\n\
             module_app menu.so\n\
             module g711.so\n\
             module aufile.so\n\
             module sndfile.so\n\
             snd_path {sounds}\n\
             audio_source aufile,{tone}\n\
             audio_player aufile,{silent}\n\
             audio_alert aufile,{silent}\n\
             rtp_ports {rtp}-{rtp_end}\n\
             {cafile}",
            cafile = account
                .tls
                .map(|(_, ca)| format!("sip_cafile {}\n", ca.display()))
                .unwrap_or_default(),
            sounds = sounds.display(),
            tone = tone.display(),
            silent = dir.join("played.wav").display(),
            rtp_end = rtp + 9,
        );
        std::fs::write(dir.join("config"), config).unwrap();
        let (outbound, transport) = match account.tls {
            Some((at, _)) => (at, "tls"),
            None => (account.peer, "udp"),
        };
        let accounts = format!(
            "<sip:{user}@{domain}>;auth_pass={password};outbound=\"sip:{outbound};transport={transport}\";\
             answermode=auto;audio_codecs=PCMU;regint=600\n",
            user = account.user,
            domain = account.domain,
            password = account.password,
        );
        std::fs::write(dir.join("accounts"), accounts).unwrap();
        let log = dir.join("baresip.log");
        let mut c = Command::new("baresip");
        c.arg("-f").arg(&dir).args(["-n", "127.0.0.1", "-s", "-t", "120"]);
        for command in commands {
            c.args(["-e", command]);
        }
        let child = c
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("baresip starts");
        procs.0.push(child);
        Softphone { dir, log }
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    pub fn logged(&self, line: &str) -> bool {
        self.log_text().contains(line)
    }

    /// The audio this phone decoded from the call (sndfile's `*-dec.wav`).
    pub fn heard(&self) -> Option<Tone> {
        let dump = std::fs::read_dir(self.dir.join("snd"))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))?;
        read_tone(&dump)
    }
}

/// A mono 16-bit 8 kHz sine WAV of `seconds`, at half scale.
fn write_tone(path: &Path, hz: u32, seconds: u32) {
    const RATE: u32 = 8000;
    let samples: Vec<u8> = (0..RATE * seconds)
        .flat_map(|n| {
            let phase = 2.0 * std::f64::consts::PI * f64::from(hz) * f64::from(n) / f64::from(RATE);
            ((phase.sin() * 16_000.0) as i16).to_le_bytes()
        })
        .collect();
    let mut wav = Vec::with_capacity(44 + samples.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + samples.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&(RATE * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    wav.extend_from_slice(&samples);
    std::fs::write(path, wav).unwrap();
}

/// What a decoded recording holds: how long its sound lasts and its
/// pitch.
#[derive(Debug)]
pub struct Tone {
    /// Seconds of samples louder than near-silence.
    pub sounding_s: f64,
    /// The frequency from the zero crossings of the sounding samples, Hz.
    pub hz: f64,
}

/// Reads a 16-bit PCM WAV (any chunk layout libsndfile writes).
fn read_tone(path: &Path) -> Option<Tone> {
    let bytes = std::fs::read(path).ok()?;
    let mut at = 12;
    let (mut rate, mut data) = (0u32, None);
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?) as usize;
        let body = bytes.get(at + 8..(at + 8 + len).min(bytes.len()))?;
        if id == b"fmt " && body.len() >= 8 {
            rate = u32::from_le_bytes(body[4..8].try_into().ok()?);
        } else if id == b"data" {
            data = Some(body);
        }
        at += 8 + len + (len & 1);
    }
    let samples: Vec<i16> = data?
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    // 20 ms frames; a frame sounds when its mean level is above 1/32 of
    // full scale, far above PCMU's quantisation of silence.
    let frame = (rate / 50).max(1) as usize;
    let sounding: Vec<&[i16]> = samples
        .chunks(frame)
        .filter(|f| f.iter().map(|s| f64::from(s.unsigned_abs())).sum::<f64>() / f.len() as f64 > 1024.0)
        .collect();
    let crossings: usize = sounding
        .iter()
        .map(|f| f.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count())
        .sum();
    let sounding_s = sounding.iter().map(|f| f.len()).sum::<usize>() as f64 / f64::from(rate.max(1));
    Some(Tone {
        sounding_s,
        hz: if sounding_s > 0.0 {
            crossings as f64 / 2.0 / sounding_s
        } else {
            0.0
        },
    })
}
