//! Sending (RFC 6940 §6.2, §6.3.4): messages this node originates,
//! signed, encoded and routed, with their transactions; answers and
//! errors.

use super::*;

impl<T: Topology, S: Security> OverlayNode<T, S> {
    pub(super) fn sign_contents(
        &self,
        tid: u64,
        contents: &MessageContents,
        data_signers: &[&SignerIdentity],
        signer: &dyn Signer,
    ) -> SecurityBlock {
        let identity = signer.identity();
        let mut certificates = signer.certificates();
        if !data_signers.is_empty() {
            certificates.extend(self.security.certificates_for(data_signers));
        }
        let input = if self.security.needs_signature_input() {
            Message::signature_input(self.overlay, tid, contents, &identity).unwrap_or_default()
        } else {
            Vec::new()
        };
        SecurityBlock {
            certificates,
            signature: signer.sign(&input),
        }
    }

    /// A message for this node itself: its security block is the empty
    /// {0, 0} signature and no certificates, as nobody else ever reads it
    /// ([`Self::deliver_own`]).
    pub(super) fn encode_unsigned(&self, header: &ForwardingHeader, contents: &MessageContents) -> Option<Vec<u8>> {
        let security_block = SecurityBlock {
            certificates: Vec::new(),
            signature: Signature::anonymous(),
        };
        encode(header, contents, &security_block)
    }

    /// Delivers a message this node sent to itself and did not sign: a
    /// request for a resource it is responsible for, or the answer to one.
    /// §6.3.4 has every message signed so that the nodes it crosses and
    /// reaches can tell who sent it; this one crosses none and reaches its
    /// sender, which knows. `credential` is what verifying the signature
    /// would have given ([`Security::own_credential`]). Its bytes never go
    /// to a link: a request still unanswered after delivery is signed
    /// before it can be retransmitted (see [`Self::originate_as`]).
    pub(super) fn deliver_own(&mut self, now: u64, bytes: &[u8], credential: Credential) {
        if let Ok((header, payload)) = ForwardingHeader::split(bytes, &self.ctx) {
            self.deliver(now, None, header, payload, Some(credential));
        }
    }

    pub(super) fn encode_message(
        &self,
        header: &ForwardingHeader,
        contents: &MessageContents,
        data_signers: &[&SignerIdentity],
        signer: &dyn Signer,
    ) -> Option<Vec<u8>> {
        let security_block = self.sign_contents(header.transaction_id, contents, data_signers, signer);
        encode(header, contents, &security_block)
    }

    /// §6.2.1: build, sign and send a request; remember it for
    /// retransmission.
    pub(super) fn originate(&mut self, now: u64, destination: Vec<Destination>, body: &Body, purpose: Purpose) {
        self.originate_as(now, destination, body, purpose, None)
    }

    /// [`originate`](Self::originate), signed as `user` when one is given.
    pub(super) fn originate_as(
        &mut self,
        now: u64,
        destination: Vec<Destination>,
        body: &Body,
        purpose: Purpose,
        user: Option<&str>,
    ) {
        let tid: u64 = self.rng.random();
        let method = body.message_code();
        let Ok(contents) = MessageContents::from_body(body) else {
            return self.fail_now(now, method, purpose);
        };
        // A request this node will deliver to itself goes unsigned.
        let own = match destination.as_slice() {
            [only] if matches!(self.hop(only.as_ref(), true), Hop::Deliver) => self.security.own_credential(user).ok(),
            _ => None,
        };
        let mut header = ForwardingHeader::new(self.overlay, tid, destination);
        header.ttl = self.config.initial_ttl;
        // §6.3.2.1: a ConfigUpdate carries 65535, so that a node running
        // another document takes it.
        header.configuration_sequence = if method == MessageCode::CONFIG_UPDATE_REQ {
            ANY_SEQUENCE
        } else {
            self.config.configuration_sequence
        };
        let sign = |node: &Self| {
            node.signer(user)
                .and_then(|signer| node.encode_message(&header, &contents, &data_signers(body), signer))
        };
        let encoded = match own {
            Some(_) => self.encode_unsigned(&header, &contents),
            None => sign(self),
        };
        let Some(bytes) = encoded else {
            return self.fail_now(now, method, purpose);
        };
        let deadline = now + self.config.reliability_timer_ms;
        let maintenance = purpose.maintenance();
        self.transactions.outstanding.insert(
            tid,
            Outstanding {
                bytes: bytes.clone(),
                method,
                purpose,
                transmissions: 1,
                deadline,
                started: now,
            },
        );
        self.transactions.retransmit_at.push(deadline, tid);
        match own {
            Some(credential) => {
                self.deliver_own(now, &bytes, credential);
                // Not answered at once: a retransmission may go to another
                // node by then, so it must be signed.
                if self.transactions.outstanding.contains_key(&tid) {
                    match sign(self) {
                        Some(signed) => {
                            if let Some(o) = self.transactions.outstanding.get_mut(&tid) {
                                o.bytes = signed;
                            }
                        }
                        None => {
                            if let Some(o) = self.transactions.outstanding.remove(&tid) {
                                self.complete(now, o, Err(RequestFailure::NoRoute), self.me, 0);
                            }
                        }
                    }
                }
            }
            None => self.route_own(now, &bytes, maintenance),
        }
    }

    /// Routes a message this node just encoded (a request, a retransmission
    /// or an answer) as if it had arrived, minus the Via List entry.
    pub(super) fn route_own(&mut self, now: u64, bytes: &[u8], maintenance: bool) {
        if let Ok((header, payload)) = ForwardingHeader::split(bytes, &self.ctx) {
            self.route(now, None, header, payload, Some(maintenance), Some(bytes));
        }
    }

    pub(super) fn fail_now(&mut self, now: u64, method: MessageCode, purpose: Purpose) {
        let out = Outstanding {
            bytes: Vec::new(),
            method,
            purpose,
            transmissions: 0,
            deadline: now,
            started: now,
        };
        self.complete(now, out, Err(RequestFailure::NoRoute), self.me, 0);
    }

    /// §6.2.2: the header of an answer to `request` from `link`: back along
    /// the reversed Via List.
    pub(super) fn answer_header(&self, link: Option<NodeId>, request: &ForwardingHeader) -> ForwardingHeader {
        let mut path: Vec<Destination> = request.via_list.clone();
        if let Some(l) = link {
            path.push(Destination::Node(l));
        }
        path.reverse();
        let mut header = ForwardingHeader::new(self.overlay, request.transaction_id, path);
        header.ttl = self.config.initial_ttl;
        header.configuration_sequence = self.config.configuration_sequence;
        // §6.3.2.3: RESPONSE_COPY options come back, with no flags set.
        header.options = request
            .options
            .iter()
            .filter(|o| o.flags & forwarding_flags::RESPONSE_COPY != 0)
            .map(|o| ForwardingOption { flags: 0, ..o.clone() })
            .collect();
        header
    }

    /// §6.2.2: the answer goes back along the reversed Via List.
    pub(super) fn send_answer(
        &mut self,
        now: u64,
        link: Option<NodeId>,
        request: &ForwardingHeader,
        contents: MessageContents,
        data_signers: &[&SignerIdentity],
        maintenance: bool,
    ) {
        let header = self.answer_header(link, request);
        // The answer to a request this node sent itself goes unsigned.
        if header.destination_list.is_empty() {
            if let Ok(credential) = self.security.own_credential(None) {
                if let Some(bytes) = self.encode_unsigned(&header, &contents) {
                    self.deliver_own(now, &bytes, credential);
                }
                return;
            }
        }
        let Some(bytes) = self.encode_message(&header, &contents, data_signers, &self.security) else {
            return;
        };
        match header.destination_list.first() {
            Some(Destination::Node(n)) if self.links.contains(n) => {
                let n = *n;
                self.transmit(n, bytes, maintenance);
            }
            _ => {
                self.route_own(now, &bytes, maintenance);
            }
        }
    }

    /// An Error answer to a request this node did not process: it could
    /// not be routed, decoded or verified.
    pub(super) fn send_error(
        &mut self,
        now: u64,
        link: Option<NodeId>,
        header: &ForwardingHeader,
        request: MessageCode,
        refusal: Refusal,
    ) {
        self.stats.errors_sent += 1;
        let code = refusal.error_code();
        self.record(|| Observation::Answered {
            request,
            error: Some(code),
        });
        let body = Body::Error(refusal.into());
        if let Ok(contents) = MessageContents::from_body(&body) {
            self.send_answer(now, link, header, contents, &[], true);
        }
    }
}
