//! Multicast bootstrap on the LAN: our extension to §11.4, enabled by the
//! configuration's `<p2psip:multicast-bootstrap address port>`.
//!
//! A peer with no bootstrap peer to reach asks the group "who is in this
//! overlay?"; peers that have joined answer with the port they take links
//! on. An answer is only a hint: the TLS link that follows checks the
//! certificate like any other, so a forged answer costs one failed
//! connection and nothing more.
//!
//! Datagrams are one line of UTF-8, at most [`MAX_DATAGRAM`] bytes:
//!
//! ```text
//! P2PSIP/1 DISCOVER <instance-name> <node-id hex> <port>
//! P2PSIP/1 HERE <instance-name> <node-id hex> <port>
//! ```
//!
//! DISCOVER goes to the group from the asker's unicast socket; HERE goes
//! back to where the DISCOVER came from. The address to link to is the
//! HERE's source address with the port it names.
//!
//! Peers that start at the same moment hear each other's DISCOVERs and
//! nobody answers HERE. Rather than each starting a ring of its own (two
//! overlays that would never merge), the one with the smallest Node-ID
//! starts the ring and the others ask again, and then find it.

use reload_wire::NodeId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use thiserror::Error;

/// The longest datagram either side sends or reads.
pub const MAX_DATAGRAM: usize = 512;
/// How long one discovery round listens for answers, in ms.
pub const ROUND_MS: u64 = 1_000;
const MAGIC: &str = "P2PSIP/1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// "Who is in this overlay?", sent to the group.
    Discover,
    /// "I am, take links on this port", sent back to the asker.
    Here,
}

/// One discovery datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub verb: Verb,
    pub overlay: String,
    pub node_id: NodeId,
    pub port: u16,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DatagramError {
    #[error("longer than {MAX_DATAGRAM} bytes")]
    TooLong,
    #[error("not a P2PSIP/1 discovery line")]
    NotDiscovery,
    #[error("unknown verb {0:?}")]
    UnknownVerb(String),
    #[error("bad Node-ID {0:?}")]
    BadNodeId(String),
    #[error("bad port {0:?}")]
    BadPort(String),
}

impl Datagram {
    pub fn encode(&self) -> Vec<u8> {
        let verb = match self.verb {
            Verb::Discover => "DISCOVER",
            Verb::Here => "HERE",
        };
        format!(
            "{MAGIC} {verb} {} {} {}\n",
            self.overlay,
            self.node_id.to_hex(),
            self.port
        )
        .into_bytes()
    }

    pub fn parse(bytes: &[u8]) -> Result<Datagram, DatagramError> {
        if bytes.len() > MAX_DATAGRAM {
            return Err(DatagramError::TooLong);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| DatagramError::NotDiscovery)?;
        let mut fields = text.trim_end_matches(['\r', '\n']).split(' ');
        if fields.next() != Some(MAGIC) {
            return Err(DatagramError::NotDiscovery);
        }
        let (Some(verb), Some(overlay), Some(node_id), Some(port), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(DatagramError::NotDiscovery);
        };
        let verb = match verb {
            "DISCOVER" => Verb::Discover,
            "HERE" => Verb::Here,
            other => return Err(DatagramError::UnknownVerb(other.to_string())),
        };
        let node_id = NodeId::from_hex(node_id).ok_or_else(|| DatagramError::BadNodeId(node_id.to_string()))?;
        let port = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| DatagramError::BadPort(port.to_string()))?;
        Ok(Datagram {
            verb,
            overlay: overlay.to_string(),
            node_id,
            port,
        })
    }
}

/// What a finished round decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoundOutcome {
    /// Join through these peers.
    Join(Vec<SocketAddr>),
    /// Nobody is in the overlay and no peer with a smaller Node-ID is
    /// starting: start it.
    StartAlone,
    /// A peer with a smaller Node-ID is starting the overlay: ask again.
    Wait,
}

/// One discovery round, sans-IO: the driver feeds it the datagrams heard
/// and asks for the outcome when [`ROUND_MS`] have passed.
#[derive(Debug)]
pub struct Round {
    overlay: String,
    me: NodeId,
    /// Joined peers that answered, by Node-ID.
    members: BTreeMap<NodeId, SocketAddr>,
    /// The smallest Node-ID heard asking, if smaller than ours.
    smaller_asker: Option<NodeId>,
}

impl Round {
    pub fn new(overlay: &str, me: NodeId) -> Round {
        Round {
            overlay: overlay.to_string(),
            me,
            members: BTreeMap::new(),
            smaller_asker: None,
        }
    }

    /// The DISCOVER this round sends, naming the port links are taken on.
    pub fn discover(&self, port: u16) -> Datagram {
        Datagram {
            verb: Verb::Discover,
            overlay: self.overlay.clone(),
            node_id: self.me,
            port,
        }
    }

    /// A datagram from `from` arrived during the round.
    pub fn heard(&mut self, datagram: &Datagram, from: SocketAddr) {
        if datagram.overlay != self.overlay || datagram.node_id == self.me {
            return;
        }
        match datagram.verb {
            Verb::Here => {
                self.members
                    .insert(datagram.node_id, SocketAddr::new(from.ip(), datagram.port));
            }
            Verb::Discover if datagram.node_id < self.me => {
                let smallest = self.smaller_asker.map_or(datagram.node_id, |s| s.min(datagram.node_id));
                self.smaller_asker = Some(smallest);
            }
            Verb::Discover => {}
        }
    }

    pub fn outcome(&self) -> RoundOutcome {
        if !self.members.is_empty() {
            RoundOutcome::Join(self.members.values().copied().collect())
        } else if self.smaller_asker.is_some() {
            RoundOutcome::Wait
        } else {
            RoundOutcome::StartAlone
        }
    }
}

/// The answer a joined peer gives to a DISCOVER for its overlay, if any.
pub fn answer(overlay: &str, me: NodeId, port: u16, asked: &Datagram) -> Option<Datagram> {
    (asked.verb == Verb::Discover && asked.overlay == overlay && asked.node_id != me).then(|| Datagram {
        verb: Verb::Here,
        overlay: overlay.to_string(),
        node_id: me,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u128) -> NodeId {
        NodeId::from_u128(n)
    }

    fn from(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 7], port))
    }

    #[test]
    fn a_datagram_reads_back_as_written() {
        let d = Datagram {
            verb: Verb::Here,
            overlay: "office.example".into(),
            node_id: id(0xabc),
            port: 6084,
        };
        assert_eq!(Datagram::parse(&d.encode()), Ok(d));
    }

    #[test]
    fn bad_datagrams_say_what_is_wrong() {
        let cases: [(&[u8], DatagramError); 5] = [
            (b"GET / HTTP/1.1\r\n", DatagramError::NotDiscovery),
            (b"P2PSIP/1 HELLO o 00 1\n", DatagramError::UnknownVerb("HELLO".into())),
            (b"P2PSIP/1 HERE o zz 1\n", DatagramError::BadNodeId("zz".into())),
            (
                b"P2PSIP/1 HERE o 000000000000000000000000000000ff 0\n",
                DatagramError::BadPort("0".into()),
            ),
            (&[b'x'; MAX_DATAGRAM + 1], DatagramError::TooLong),
        ];
        for (bytes, want) in cases {
            assert_eq!(Datagram::parse(bytes), Err(want));
        }
        assert_eq!(
            Datagram::parse(b"P2PSIP/1 HERE o 000000000000000000000000000000ff 1 extra\n"),
            Err(DatagramError::NotDiscovery)
        );
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Datagram::parse(&bytes);
        }
    }

    #[test]
    fn members_that_answer_are_joined_at_their_source_address() {
        let mut round = Round::new("o", id(5));
        let here = answer("o", id(9), 7000, &round.discover(6000)).unwrap();
        round.heard(&here, from(40000));
        assert_eq!(round.outcome(), RoundOutcome::Join(vec![from(7000)]));
    }

    #[test]
    fn nobody_answering_starts_the_overlay() {
        let mut round = Round::new("o", id(5));
        // Our own DISCOVER comes back through the group; a larger asker
        // waits for us.
        round.heard(&round.discover(6000), from(1));
        round.heard(&Round::new("o", id(8)).discover(6001), from(2));
        assert_eq!(round.outcome(), RoundOutcome::StartAlone);
    }

    #[test]
    fn a_smaller_peer_asking_at_the_same_time_starts_it_and_we_wait() {
        let mut round = Round::new("o", id(5));
        round.heard(&Round::new("o", id(3)).discover(6001), from(2));
        assert_eq!(round.outcome(), RoundOutcome::Wait);
    }

    #[test]
    fn other_overlays_are_ignored() {
        let mut round = Round::new("o", id(5));
        let mut here = answer("other", id(9), 7000, &Round::new("other", id(1)).discover(1)).unwrap();
        round.heard(&here, from(1));
        round.heard(&Round::new("other", id(1)).discover(1), from(1));
        assert_eq!(round.outcome(), RoundOutcome::StartAlone);
        here.overlay = "o".into();
        assert_eq!(answer("o", id(9), 7000, &here), None, "a HERE is not answered");
    }
}
