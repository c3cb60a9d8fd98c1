//! Messages delivered to this node (RFC 6940 §6.3): requests checked and
//! dispatched by method (storage, §7; Attach, §6.5.1; Ping, AppAttach,
//! the topology's own), and answers matched to their transactions.

use super::*;

impl<T: Topology, S: Security> OverlayNode<T, S> {
    /// §6.1.1: the message is for this node. `own` is the credential of a
    /// message this node sent to itself unsigned ([`Self::deliver_own`]).
    pub(super) fn deliver(
        &mut self,
        now: u64,
        link: Option<NodeId>,
        header: ForwardingHeader,
        payload: &[u8],
        own: Option<Credential>,
    ) {
        if !header.fragment.is_unfragmented() {
            return self.reassemble(now, link, header, payload);
        }
        let code = peek_code(payload);
        let mut r = Reader::new(payload, &self.ctx);
        let parsed = MessageContents::decode(&mut r).and_then(|c| {
            let sb = SecurityBlock::decode(&mut r)?;
            r.finish("Message")?;
            Ok((c, sb))
        });
        let Ok((contents, security_block)) = parsed else {
            self.stats.malformed += 1;
            if let Some(l) = link.filter(|_| header.via_list.is_empty()) {
                self.offence(now, l, "undecodable messages");
            }
            if code.is_request() {
                self.send_error(now, link, &header, code, Refusal::Undecodable);
            }
            return;
        };
        if own.is_none() && code.is_request() {
            if let Some(refusal) =
                sequence_mismatch(self.config.configuration_sequence, header.configuration_sequence, code)
            {
                let too_old = refusal == Refusal::ConfigTooOld;
                self.send_error(now, link, &header, code, refusal);
                if too_old {
                    // §6.3.2.1: "the node MUST generate a ConfigUpdate
                    // message to update the requesting node", along the
                    // path the answer took.
                    let path = self.answer_header(link, &header).destination_list;
                    self.tell_configuration(now, path);
                }
                return;
            }
            if critical(&header, forwarding_flags::DESTINATION_CRITICAL) {
                let refusal = Refusal::UnsupportedForwardingOption(CriticalOption::Destination);
                return self.send_error(now, link, &header, code, refusal);
            }
        }
        // §6.3.4: verify the message signature.
        let verified = match own {
            Some(credential) => Ok(credential),
            None => {
                let input = if self.security.needs_signature_input() {
                    Message::signature_input(
                        header.overlay,
                        header.transaction_id,
                        &contents,
                        &security_block.signature.identity,
                    )
                    .unwrap_or_default()
                } else {
                    Vec::new()
                };
                self.security
                    .verify(&input, &security_block.signature, &security_block.certificates)
            }
        };
        let credential = match verified {
            Ok(c) => c,
            Err(_) => {
                // A message the link's peer signed itself (no Via entry):
                // a peer relaying someone else's forgery is not to blame.
                if let Some(l) = link.filter(|_| header.via_list.is_empty()) {
                    self.offence(now, l, "messages with bad signatures");
                }
                if contents.message_code.is_request() {
                    self.send_error(now, link, &header, contents.message_code, Refusal::BadSignature);
                }
                return;
            }
        };
        let Some(sender) = credential
            .signer_node_id
            .or_else(|| credential.node_ids.first().copied())
        else {
            return;
        };
        self.stats.delivered += 1;
        let code = contents.message_code;
        self.record(|| Observation::Received { code });
        if contents.message_code.is_request() {
            self.handle_request(now, link, &header, contents, sender, &credential);
        } else {
            let hops = header.via_list.len() as u32 + link.is_some() as u32;
            self.handle_answer(now, &header, contents, sender, hops);
        }
    }

    pub(super) fn handle_request(
        &mut self,
        now: u64,
        link: Option<NodeId>,
        header: &ForwardingHeader,
        contents: MessageContents,
        sender: NodeId,
        credential: &Credential,
    ) {
        let tid = header.transaction_id;
        let cache = answer_is_cached(contents.message_code);
        // §6.2.1: a retransmission gets the same answer. Only answers to
        // the requests `answer_is_cached` names are kept; the others are
        // answered afresh without a look.
        if let Some(cached) = cache.then(|| self.transactions.answered.get(&tid)).flatten().cloned() {
            self.send_answer(now, link, header, cached, &[], true);
            return;
        }
        let maintenance = !is_application(contents.message_code);
        let answer = match contents.body(&self.ctx) {
            Ok(body) => self.dispatch(now, link, header, body, sender, credential),
            Err(reload_wire::DecodeError::UnknownKinds(kinds)) => Err(Refusal::UnknownKinds(kinds)),
            Err(e) => Err(Refusal::MalformedBody(e)),
        };
        let request = contents.message_code;
        let body = match answer {
            Ok(b) => b,
            Err(refusal) => {
                self.stats.errors_sent += 1;
                Body::Error(refusal.into())
            }
        };
        let error = match &body {
            Body::Error(e) => Some(e.error_code),
            _ => None,
        };
        self.record(|| Observation::Answered { request, error });
        let Ok(contents) = MessageContents::from_body(&body) else {
            return;
        };
        // §6.3.2: max_response_length.
        let contents = if header.max_response_length != 0
            && contents.message_body.len() + 200 > header.max_response_length as usize
        {
            let e = Body::Error(Refusal::ResponseTooLong.into());
            MessageContents::from_body(&e).unwrap_or(contents)
        } else {
            contents
        };
        if cache {
            self.transactions.forget_old_answers(now);
            self.transactions.answered.insert(tid, contents.clone());
            self.transactions
                .answered_expiry
                .push_back((now + self.config.request_lifetime_ms, tid));
        }
        self.send_answer(now, link, header, contents, &data_signers(&body), maintenance);
    }

    pub(super) fn dispatch(
        &mut self,
        now: u64,
        link: Option<NodeId>,
        header: &ForwardingHeader,
        body: Body,
        sender: NodeId,
        credential: &Credential,
    ) -> Result<Body, Refusal> {
        let topology = |what: &'static str| move |code: ErrorCode| Refusal::Topology { what, code };
        // §6.4.2.1-2: Join and Leave only over the sender's own link.
        let direct = if link == Some(sender) && header.via_list.is_empty() {
            Ok(())
        } else {
            Err(Refusal::NotDirect)
        };
        match body {
            Body::PingReq(_) => Ok(Body::PingAns(PingAns {
                response_id: self.instance_id,
                time: now,
            })),
            Body::ProbeReq(req) => {
                let probe_info = req
                    .requested_info
                    .iter()
                    .filter_map(|t| match *t {
                        probe_information_type::RESPONSIBLE_SET => {
                            Some(ProbeInformation::ResponsibleSet(self.topology.responsible_ppb()))
                        }
                        probe_information_type::NUM_RESOURCES => {
                            Some(ProbeInformation::NumResources(self.storage.resource_count() as u32))
                        }
                        probe_information_type::UPTIME => {
                            Some(ProbeInformation::Uptime((self.uptime_ms(now) / 1000) as u32))
                        }
                        _ => None,
                    })
                    .collect();
                Ok(Body::ProbeAns(ProbeAns { probe_info }))
            }
            Body::AttachReq(req) => {
                // Where it takes links: its first host candidate (an ICE
                // offer's UDP host candidate is on its overlay port too).
                let host = req.candidates.iter().find(|c| c.cand_type == CandType::Host);
                if let Some(c) = host.or(req.candidates.first()) {
                    self.actions.push_back(Action::Event(Box::new(Event::PeerAddress {
                        peer: sender,
                        address: c.addr_port.clone(),
                    })));
                }
                let linked = self.links.contains(&sender);
                if linked {
                    self.topology
                        .on_link_up(now, sender, false, req.send_update, &mut self.commands);
                } else {
                    self.attaching.expected_links.insert(sender, (req.send_update, now));
                }
                if self.uses_ice() && ice_attach::offers_ice(&req) {
                    let (answer, local) = self.attach_offer(b"passive", false);
                    if let (Some(local), false) = (local, linked) {
                        self.start_ice(sender, false, local, &req);
                    }
                    return Ok(Body::AttachAns(answer));
                }
                Ok(Body::AttachAns(self.attach_body(b"passive", false)))
            }
            Body::StoreReq(req) => self.handle_store(now, req, sender, credential),
            Body::FetchReq(req) => self.storage.fetch(&self.config, &req).map(Body::FetchAns),
            Body::StatReq(req) => self.storage.stat(&self.config, &req).map(Body::StatAns),
            Body::FindReq(req) => {
                if !self.topology.is_responsible(req.resource.as_bytes()) {
                    return Err(Refusal::NotResponsible);
                }
                self.storage.find(&self.config, &req).map(Body::FindAns)
            }
            Body::JoinReq(req) => {
                direct?;
                self.topology
                    .on_join(now, sender, &req, &mut self.commands)
                    .map(|data| {
                        Body::JoinAns(reload_wire::JoinAns {
                            overlay_specific_data: data,
                        })
                    })
                    .map_err(topology("join"))
            }
            Body::LeaveReq(req) => {
                direct?;
                self.topology
                    .on_leave(now, sender, &req, &mut self.commands)
                    .map(|_| Body::LeaveAns)
                    .map_err(topology("leave"))
            }
            Body::UpdateReq(data) => self
                .topology
                .on_update(now, sender, &data, &mut self.commands)
                .map(Body::UpdateAns)
                .map_err(topology("Update")),
            Body::RouteQueryReq(req) => self
                .topology
                .on_route_query(now, sender, &req, &mut self.commands)
                .map(Body::RouteQueryAns)
                .map_err(topology("RouteQuery")),
            Body::ConfigUpdateReq(req) => self.on_config_update(now, link, sender, req),
            Body::AppAttachReq(req) => {
                if self.applications.contains_key(&req.application) {
                    Ok(Body::AppAttachAns(self.app_attach_body(req.application, b"passive")))
                } else {
                    Err(Refusal::NoSuchApplication)
                }
            }
            _ => Err(Refusal::NotHandled),
        }
    }

    /// Store — §7.4.1.1 with the replica rules of §10.4.
    pub(super) fn handle_store(
        &mut self,
        now: u64,
        req: StoreReq,
        sender: NodeId,
        credential: &Credential,
    ) -> Result<Body, Refusal> {
        let rid = req.resource.as_bytes().to_vec();
        let replica = req.replica_number != 0;
        if replica {
            // §7.4.1.1 wants replica Stores only from the replica set or
            // closer. The responsible peer also takes them from farther
            // away: after several concurrent joins the only copy may sit on
            // a peer that no longer sees the set, and every value is still
            // checked against its own signature and the Kind's access
            // policy (decision 0004).
            let accepted = match self.topology.holding(&rid) {
                Holding::Responsible => true,
                Holding::Replica(_) => self.topology.plausible_replica_source(&rid, &sender),
                Holding::None => false,
            };
            if !accepted {
                return Err(Refusal::OutsideReplicaSet);
            }
        } else if !self.topology.is_responsible(&rid) {
            return Err(Refusal::NotResponsible);
        }
        let config = self.config.clone();
        let topology = &self.topology;
        let hash = |name: &[u8]| topology.resource_id(name);
        let security = &self.security;
        let verify = |resource: &ResourceId, kind: KindId, sd: &StoredData| {
            let input = data_signature_input(
                security,
                resource,
                kind,
                sd.storage_time,
                &sd.value,
                &sd.signature.identity,
            );
            security.verify(&input, &sd.signature, &[])
        };
        let mut ans = self.storage.store(
            &config,
            &req,
            replica,
            StoreRequest {
                now,
                // Anyone may send the responsible peer a replica Store.
                per_signer_quota: self.topology.is_responsible(&rid),
                request_signer: credential,
                verify: &verify,
                hash: &hash,
            },
        )?;
        let set = self.topology.replica_set(&rid).unwrap_or_default();
        if let Some(res) = self.storage.resource_mut(&req.resource) {
            // A sender outside the set hands its copy over and deletes it.
            if replica && set.contains(&sender) && res.is_exactly(&req.kind_data) {
                res.add_holder(sender);
            }
        }
        let replicas: Vec<NodeId> = set.into_iter().filter(|n| *n != self.me).collect();
        for k in &mut ans.kind_responses {
            k.replicas = replicas.clone();
        }
        self.replication.rebalance_soon.insert(req.resource.clone());
        Ok(Body::StoreAns(ans))
    }

    pub(super) fn attach_body(&self, role: &[u8], send_update: bool) -> AttachReqAns {
        AttachReqAns {
            ufrag: Vec::new(),
            password: Vec::new(),
            role: role.to_vec(),
            candidates: vec![IceCandidate {
                addr_port: self.address.clone(),
                overlay_link: overlay_link_type::TLS_TCP_FH_NO_ICE,
                foundation: b"1".to_vec(),
                priority: 1,
                cand_type: CandType::Host,
                extensions: Vec::new(),
            }],
            send_update,
        }
    }

    pub(super) fn handle_answer(
        &mut self,
        now: u64,
        header: &ForwardingHeader,
        contents: MessageContents,
        sender: NodeId,
        hops: u32,
    ) {
        let Some(out) = self.transactions.outstanding.remove(&header.transaction_id) else {
            return; // late duplicate or unknown
        };
        let outcome = match contents.body(&self.ctx) {
            Ok(Body::Error(e)) => Err(RequestFailure::Error(e)),
            Ok(b) => Ok(b),
            Err(e) => Err(RequestFailure::Error(Refusal::MalformedBody(e).into())),
        };
        if let Err(RequestFailure::Error(e)) = &outcome {
            if e.error_code == ErrorCode::FORBIDDEN && out.purpose.maintenance() && !self.is_joined() {
                let info = String::from_utf8_lossy(&e.error_info).into_owned();
                self.actions
                    .push_back(Action::Event(Box::new(Event::Refused { by: sender, info })));
            }
        }
        self.complete(now, out, outcome, sender, hops);
    }

    pub(super) fn complete(
        &mut self,
        now: u64,
        out: Outstanding,
        outcome: Result<Body, RequestFailure>,
        from: NodeId,
        hops: u32,
    ) {
        self.record(|| Observation::Completed {
            request: out.method,
            result: CompletedResult::of(&outcome),
            latency_ms: now.saturating_sub(out.started),
            hops,
        });
        if let Err(RequestFailure::Error(e)) = &outcome {
            if e.error_code == ErrorCode::CONFIG_TOO_NEW && from != self.me {
                // §6.5.4: the responder runs an older document.
                self.tell_configuration(now, vec![Destination::Node(from)]);
            } else if e.error_code == ErrorCode::CONFIG_TOO_OLD && from != self.me {
                self.actions
                    .push_back(Action::Event(Box::new(Event::ConfigurationStale { by: from })));
            }
        }
        match out.purpose {
            Purpose::App(request) => self.actions.push_back(Action::Event(Box::new(Event::Done {
                request,
                outcome,
                hops,
                latency_ms: now.saturating_sub(out.started),
                responder: from,
            }))),
            Purpose::Topology(token) => {
                let answer = outcome.map(|body| Answer { from, body });
                self.topology.on_answer(now, token, answer, &mut self.commands);
            }
            Purpose::Attach { token, ice } => match outcome {
                Ok(Body::AttachAns(_)) if from == self.me => {
                    // This node answered its own Attach (it is responsible
                    // for the target in its own view, as while it joins):
                    // there is no one to link to, and dialling its own
                    // address would only be refused as a copy of itself.
                    self.topology
                        .on_answer(now, token, Err(RequestFailure::NoRoute), &mut self.commands);
                }
                Ok(Body::AttachAns(ans)) => {
                    let address = ans.candidates.first().map(|c| c.addr_port.clone());
                    if self.links.contains(&from) {
                        self.topology.on_link_up(now, from, true, false, &mut self.commands);
                        let answer = Ok(Answer {
                            from,
                            body: Body::AttachAns(ans),
                        });
                        self.topology.on_answer(now, token, answer, &mut self.commands);
                    } else if let (Some(local), true) = (ice.as_deref(), ice_attach::offers_ice(&ans)) {
                        // §6.5.1.9: the requester controls the checks.
                        let first = !self.attaching.connecting.contains_key(&from);
                        if first {
                            self.start_ice(from, true, local.clone(), &ans);
                        }
                        self.attaching.connecting.entry(from).or_default().push(AwaitingLink {
                            token,
                            answer: Body::AttachAns(ans),
                            since: now,
                        });
                    } else if let Some(address) = address {
                        let first = !self.attaching.connecting.contains_key(&from);
                        self.attaching.connecting.entry(from).or_default().push(AwaitingLink {
                            token,
                            answer: Body::AttachAns(ans),
                            since: now,
                        });
                        if first {
                            self.actions.push_back(Action::Connect {
                                peer: Some(from),
                                address,
                            });
                        }
                    } else {
                        self.topology
                            .on_answer(now, token, Err(RequestFailure::NoRoute), &mut self.commands);
                    }
                }
                Ok(_) | Err(_) => {
                    let failure = outcome.err().unwrap_or(RequestFailure::NoRoute);
                    self.topology.on_answer(now, token, Err(failure), &mut self.commands);
                }
            },
            Purpose::Keepalive | Purpose::ConfigPush => {}
            Purpose::Probe { token, bootstrap } => {
                let responder = outcome.map(|_| from);
                self.topology
                    .on_bootstrap_probe(now, token, Some(bootstrap), responder, &mut self.commands);
            }
            Purpose::Migrate { resource } => {
                self.replication.migrating.remove(&resource);
                // Taken by the responsible peer, or it has the same values
                // or newer ones: either way this copy is no longer needed.
                // A copy the ring has since brought back into our set stays.
                if matches!(outcome, Ok(Body::StoreAns(_)))
                    && self.topology.holding(resource.as_bytes()) == Holding::None
                    && from != self.me
                {
                    self.storage.remove(&resource);
                }
            }
            Purpose::Push { resource, to, version } => {
                self.replication.pushing.remove(&(resource.clone(), to));
                let ok = matches!(outcome, Ok(Body::StoreAns(_)));
                if ok {
                    // Only the values sent are confirmed: a Store that
                    // changed them meanwhile found this push in flight and
                    // could not send its own.
                    if let Some(r) = self.storage.resource_mut(&resource).filter(|r| r.version() == version) {
                        r.add_holder(to);
                    }
                }
                if let Some(handover) = &self.leaving {
                    if self.replication.pushing.is_empty() && !handover.exited {
                        if handover.exit_when_pushed {
                            self.exit();
                        } else if handover.saying_goodbye {
                            // Waiting for the Leaves' answers still.
                        } else if handover.rounds_left > 0 {
                            self.hand_over(now);
                        } else {
                            self.finish_handover(now);
                        }
                    }
                } else if ok {
                    // Changed while the push was in flight? Then the new
                    // values go out now.
                    self.replication.push_retry.succeeded(&resource);
                    self.replication.rebalance_soon.insert(resource);
                } else {
                    let why = match &outcome {
                        Err(e) => e.to_string(),
                        Ok(_) => "an answer other than StoreAns".to_string(),
                    };
                    let rounds = self.replication.push_retry.failed(now, resource.clone());
                    self.actions.push_back(Action::Event(Box::new(Event::ReplicaPushFailed {
                        resource,
                        to,
                        why,
                        rounds,
                    })));
                }
            }
        }
    }
}
