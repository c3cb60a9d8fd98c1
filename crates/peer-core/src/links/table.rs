//! The links in use, one per peer, as two vectors in Node-ID order: the
//! Node-IDs alone, which every message sent or received searches, and
//! the links at the same positions. A peer of a large overlay has a
//! hundred links or more; the search then touches a few cache lines of
//! Node-IDs rather than whole link records, and the table holds no empty
//! buckets (the simulator keeps one per peer for 100,000 peers).

use super::{Link, LinkId};
use reload_wire::NodeId;

#[derive(Default)]
pub(super) struct LinkTable {
    peers: Vec<NodeId>,
    links: Vec<Link>,
}

impl LinkTable {
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    fn find(&self, peer: &NodeId) -> Result<usize, usize> {
        self.peers.binary_search(peer)
    }

    /// The link number of `peer`'s link.
    pub fn id(&self, peer: &NodeId) -> Option<LinkId> {
        self.get(peer).map(|l| l.id)
    }

    pub fn get(&self, peer: &NodeId) -> Option<&Link> {
        self.find(peer).ok().map(|i| &self.links[i])
    }

    pub fn contains_key(&self, peer: &NodeId) -> bool {
        self.find(peer).is_ok()
    }

    pub fn keys(&self) -> impl Iterator<Item = &NodeId> {
        self.peers.iter()
    }

    /// `peer`'s link from now on, replacing any other.
    pub fn insert(&mut self, peer: NodeId, link: Link) {
        match self.find(&peer) {
            Ok(i) => self.links[i] = link,
            Err(i) => {
                self.peers.insert(i, peer);
                self.links.insert(i, link);
            }
        }
    }

    pub fn remove(&mut self, peer: &NodeId) -> Option<Link> {
        let i = self.find(peer).ok()?;
        self.peers.remove(i);
        Some(self.links.remove(i))
    }

    /// Marks `peer`'s link silent or not, if `link` is still its link;
    /// whether it is.
    pub fn set_silent(&mut self, peer: &NodeId, link: LinkId, silent: bool) -> bool {
        let Ok(i) = self.find(peer) else { return false };
        let l = &mut self.links[i];
        if l.id != link {
            return false;
        }
        l.silent = silent;
        true
    }

    /// The memory every message's search reads, as (start, bytes).
    pub fn hot_memory(&self, visit: &mut dyn FnMut(*const u8, usize)) {
        visit(self.peers.as_ptr().cast(), std::mem::size_of_val(self.peers.as_slice()));
    }
}
