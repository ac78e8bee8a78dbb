package sip

import (
	"time"

	"github.com/emiago/sipgo/sip"
)

// Dialogs: in-dialog requests (ACK, BYE, re-INVITE, ...) forwarded
// statelessly by their Route set or by the dialog record, only toward the
// dialog's peers (dialogauth.go); the 2xx ACK timeout; the BYEs of a
// media timeout.

// onNoAck ends a dialog whose 2xx was never ACKed through us within 64*T1
// (the agent gives up retransmitting its 2xx then and sends BYE, RFC 3261
// 13.3.1.4; if that BYE is lost too, the record must not stay for
// max_call_duration).
// It runs from c.ring (onCallTimer), re-armed when the call was answered;
// a run of the ring timeout that was already under way then finds the
// deadline not reached and does nothing. c.mu held.
func (c *call) onNoAck() {
	if c.ended || c.acked || c.answeredAt.IsZero() || time.Since(c.answeredAt) < c.s.noAckTimeout {
		return
	}
	c.finish(408, "no_ack")
}

// peerTarget is where an in-dialog request that carries no Route to us
// goes: the other party's remote target from the dialog record (the
// agent's 2xx Contact for the caller's requests, the caller's INVITE
// Contact for the agent's). nil when unknown. c.mu held.
func (c *call) peerTarget(fromCaller bool) *sip.Uri {
	if fromCaller {
		if c.agentTarget == nil {
			return nil
		}
		u := *c.agentTarget
		return &u
	}
	if c.inv == nil {
		return nil
	}
	if ct := c.inv.Contact(); ct != nil {
		u := ct.Address
		return &u
	}
	return nil
}

func (s *Server) handleAck(req *sip.Request, from peer) {
	var kb [128]byte
	if c, ok := s.serverTx.getBytes(appendServerTxKey(kb[:0], req)); ok {
		c.mu.Lock()
		if c.state == stCompleted {
			// ACK for our non-2xx final: absorbed here (hop by hop)
			stop(c.timerG)
			c.timerG = nil
			c.scheduleRelease(linger)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
	toTag, _ := req.To().Params.Get("tag")
	if toTag != "" {
		s.forwardInDialog(req, from)
		return
	}
	s.metrics.Dropped.WithLabelValues("stray_ack").Inc()
}

// forwardInDialog forwards a request inside a dialog (BYE, ACK for 2xx,
// re-INVITE, UPDATE, INFO, ...) by its Route set, statelessly (RFC 3261
// 16.11): responses find their way back by Via; retransmissions are the
// endpoints' business.
func (s *Server) forwardInDialog(req *sip.Request, from peer) {
	s.prober.aliveAddr(from.Addr) // an agent sending requests is alive
	isAck := req.IsAck()
	if mf := req.MaxForwards(); mf != nil && *mf == 0 {
		if !isAck {
			s.metrics.Rejected.WithLabelValues("too_many_hops").Inc()
			s.replyStateless(req, from, 483, "Too Many Hops")
		}
		return
	}
	popped := false
	var ours []sip.Uri // the Route entries naming us (their MACs)
	for r := topRoute(req); r != nil && s.isUs(&r.Address); r = topRoute(req) {
		ours = append(ours, r.Address)
		req.RemoveHeader("Route")
		popped = true
	}
	var target *sip.Uri
	if r := topRoute(req); r != nil {
		target = &r.Address
	} else {
		target = &req.Recipient
	}
	callID := string(*req.CallID())
	rec, haveRec := s.dialogs.get(callID)
	if s.isUs(target) || !popped {
		// No Route to us (a UA that lost the route set, or a BYE sent to
		// the Request-URI of the INVITE): route it by the dialog record
		// to the other party; a BYE ends the dialog here either way.
		var pt *sip.Uri
		if haveRec {
			fromTag, _ := req.From().Params.Get("tag")
			rec.mu.Lock()
			pt = rec.peerTarget(fromTag == rec.fromTag)
			if pt == nil && req.Method == sip.BYE {
				rec.finish(200, byeReason(fromTag == rec.fromTag))
			}
			rec.mu.Unlock()
		}
		if pt == nil || s.isUs(pt) {
			if !isAck {
				s.metrics.Rejected.WithLabelValues("no_dialog").Inc()
				s.replyStateless(req, from, 481, "Call/Transaction Does Not Exist")
			}
			return
		}
		req.Recipient = *pt
		target = &req.Recipient
	}
	// Not an open relay: an in-dialog request is forwarded only inside a
	// dialog we routed (its record here, or our verified Record-Route),
	// toward that dialog's peers (dialogauth.go).
	if why := s.inDialogAllowed(rec, callID, ours, target, from); why != "" {
		if !isAck {
			s.metrics.Rejected.WithLabelValues(why).Inc()
			s.replyStateless(req, from, 403, "Forbidden")
		} else {
			s.metrics.Dropped.WithLabelValues(why).Inc()
		}
		s.log.Debug("sip: in-dialog request refused", "method", string(req.Method), "call_id", callID,
			"from", from.Addr.String(), "reason", why)
		return
	}
	if req.Method == sip.INFO && s.dtmfInfo(req, from, rec) {
		return // a digit played as RFC 4733 toward the other side (dtmf.go)
	}
	to, err := s.tp.URIPeerCached(target)
	if err != nil && err != errNeedLookup {
		if !isAck {
			s.replyStateless(req, from, 502, "Bad Gateway")
		}
		return
	}
	if err == errNeedLookup {
		to.Proto, _ = uriProto(target) // for our Via; the address comes later
	}
	if mf := req.MaxForwards(); mf != nil {
		*mf = *mf - 1
	} else {
		m := sip.MaxForwardsHeader(70)
		req.AppendHeader(&m)
	}
	// The branch derives from the incoming one; CANCEL and ACK hash as
	// INVITE so that they keep the branch of the INVITE they belong to
	// (RFC 3261 9.1, 17.1.1.3) when it was forwarded this way (re-INVITE).
	inBr, _ := req.Via().Params.Get("branch")
	m := string(req.Method)
	if req.Method == sip.CANCEL || isAck {
		m = string(sip.INVITE)
	}
	c, inDialog := s.dialogs.get(callID)
	// header policy (headers.go); c nil: the default
	s.policeHeaders(req, c)
	if inDialog && s.transferInDialog(c, req, from) {
		return // REFER refused, or our REFER's NOTIFY: answered here (transfer.go)
	}
	out := s.dialogSide(from.Side, ours, c) // a dialog crossing listeners goes on through the other one
	to.Side = out
	req.PrependHeader(s.via(s.famPeer(out, to, target), to.Proto, statelessBranch(inBr+m, from.Addr.String())))

	fromCaller, bye := false, false
	var alt *streamConn
	if inDialog {
		fromTag, _ := req.From().Params.Get("tag")
		fromCaller = fromTag == c.fromTag
		if !fromCaller && c.up.Proto != protoUDP {
			// toward a caller that came over TCP/TLS: its connection is
			// the way back when its Contact cannot be reached (NAT)
			alt = c.up.Conn
		}
		if fromCaller && c.cseqDelta != 0 {
			req.CSeq().SeqNo += c.cseqDelta // the callee saw the INVITE renumbered (egressauth.go)
			shiftRAck(req, c.cseqDelta)     // a PRACK's RAck too (early.go)
		}
		c.mu.Lock()
		c.shiftCSeq(req, fromCaller) // after INFOs callgate inserted (dtmf.go)
		if isAck && fromCaller && c.state == stAccepted && !c.acked {
			c.acked = true
			stop(c.ring) // the no-ACK timeout (onCallTimer)
		}
		if c.media != nil && len(req.Body()) > 0 && isSDPBody(req) { // not an INFO's digits (info.go)
			var nb []byte
			var err error
			if fromCaller {
				nb, err = c.media.RewriteOffer(req.Body())
			} else {
				nb, err = c.media.RewriteAnswer(req.Body())
			}
			if err != nil {
				c.mu.Unlock()
				if !isAck {
					req.RemoveHeader("Via")
					s.replyStateless(req, from, 400, "Bad Request", sip.NewHeader("Warning", `399 callgate "malformed SDP"`))
				}
				return
			}
			req.SetBody(nb)
		} else if c.media == nil && len(req.Body()) > 0 && isSDPBody(req) {
			c.directSDP(req.Body(), fromCaller) // a bridged transfer's offers and re-INVITE (bridge3pcc.go)
		}
		// the dialog ends when its BYE passes, whatever the answer (below,
		// once it is known whether it could be sent)
		bye = req.Method == sip.BYE && !c.ended
		c.mu.Unlock()
	}
	var done func(error) // nil outside a recorded dialog: no allocation
	if inDialog {
		done = func(err error) {
			if err != nil {
				s.dialogSendFailed(c, req, from, fromCaller, err)
			}
			if bye {
				c.mu.Lock()
				if err != nil {
					c.finish(200, byeReason(fromCaller)+"_undelivered")
				} else {
					c.finish(200, byeReason(fromCaller))
				}
				c.mu.Unlock()
			}
		}
	}
	if err == errNeedLookup {
		tu := *target
		err = s.tpSide(out).SendURIThen(&tu, req, alt, done)
	} else {
		to.Alt = alt
		err = s.tpFor(to).SendMsgThen(to, req, done)
	}
	if err != errPending && done != nil {
		done(err)
	}
}

// dialogSendFailed: an in-dialog request of a recorded dialog could not
// be sent on (the failure itself is logged and counted by the transport).
// It is logged with the call and counted, and a request other than ACK
// is answered 503 (RFC 3261 16.9: a transport error counts as a 503).
func (s *Server) dialogSendFailed(c *call, req *sip.Request, from peer, fromCaller bool, err error) {
	s.metrics.DialogSendFails.WithLabelValues(methodLabel(string(req.Method))).Inc()
	side := "caller"
	if fromCaller {
		side = "agent"
	}
	c.logger().Warn("sip: in-dialog request not delivered", "method", string(req.Method),
		"toward", side, "stage", stageOf(err), "err", err)
	if req.IsAck() {
		return
	}
	req.RemoveHeader("Via") // ours
	s.replyStateless(req, from, 503, "Service Unavailable")
}

func byeReason(fromCaller bool) string {
	if fromCaller {
		return "bye_caller"
	}
	return "bye_agent"
}

// onMediaTimeout ends an answered call whose media stopped: BYE to both
// sides, built from the dialog state kept here.
func (c *call) onMediaTimeout() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	if c.state != stAccepted {
		c.cancelBranches()
		c.replyUp(408, "Request Timeout")
		c.finish(408, "media_timeout")
		return
	}
	c.sendByes()
	c.finish(200, "media_timeout")
}

// sendByes sends BYE to the agent (its Contact) and to the caller (its
// Contact, through the route set the caller's side recorded). Once a
// bridged transfer connected the caller to a new leg, the agent is gone
// and finish's endBridge hangs up the new leg (bridge.go).
func (c *call) sendByes() {
	if c.inv == nil || c.cur == nil {
		return
	}
	if !c.bridged() {
		c.byeAgent()
	}
	c.byeCaller()
}

// byeAgent sends BYE to the agent in the caller's name. c.mu held.
func (c *call) byeAgent() {
	s := c.s
	if c.inv == nil {
		return
	}
	inv := c.inv
	// above the caller's requests seen (sessiontimer.go) and callgate's INFOs (dtmf.go),
	// and the NOTIFYs of a bridged transfer (bridge.go: ownCSeq)
	seq := c.byeCSeq(c.byeSeq(), false)
	// to the agent
	if c.agentTarget != nil {
		if pr, err := uriProto(c.agentTarget); err == nil {
			bye := sip.NewRequest(sip.BYE, *c.agentTarget)
			bye.AppendHeader(s.via(s.famPeer(c.downSide(), peer{}, c.agentTarget), pr, newBranch(branchStateless)))
			mf := sip.MaxForwardsHeader(70)
			bye.AppendHeader(&mf)
			bye.AppendHeader(sip.HeaderClone(inv.From()))
			toH := &sip.ToHeader{DisplayName: inv.To().DisplayName, Address: inv.To().Address,
				Params: inv.To().Params.Clone()}
			toH.Params = toH.Params.Add("tag", c.agentTag)
			bye.AppendHeader(toH)
			bye.AppendHeader(sip.HeaderClone(inv.CallID()))
			bye.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: sip.BYE})
			cl := sip.ContentLengthHeader(0)
			bye.AppendHeader(&cl)
			_ = s.tpSide(c.downSide()).SendURI(c.agentTarget, bye) // a host name not cached is looked up off c.mu
		}
	}
}

// byeCaller sends BYE to the caller in the agent's place. c.mu held.
func (c *call) byeCaller() {
	s := c.s
	if c.inv == nil {
		return
	}
	inv := c.inv
	if ct := inv.Contact(); ct != nil {
		target := ct.Address
		bye := sip.NewRequest(sip.BYE, target)
		bye.AppendHeader(s.via(s.fam(c.up.Side, c.up.Addr.Addr()), c.up.Proto, newBranch(branchStateless)))
		for _, h := range inv.GetHeaders("Record-Route") {
			if rr, ok := h.(*sip.RecordRouteHeader); ok {
				bye.AppendHeader(&sip.RouteHeader{Address: rr.Address})
			}
		}
		mf := sip.MaxForwardsHeader(70)
		bye.AppendHeader(&mf)
		fromH := &sip.FromHeader{DisplayName: inv.To().DisplayName, Address: inv.To().Address,
			Params: sip.HeaderParams{{K: "tag", V: c.agentTag}}}
		bye.AppendHeader(fromH)
		bye.AppendHeader(&sip.ToHeader{DisplayName: inv.From().DisplayName, Address: inv.From().Address,
			Params: inv.From().Params.Clone()})
		bye.AppendHeader(sip.HeaderClone(inv.CallID()))
		bye.AppendHeader(&sip.CSeqHeader{SeqNo: c.byeCSeq(1<<20, true), MethodName: sip.BYE})
		cl := sip.ContentLengthHeader(0)
		bye.AppendHeader(&cl)
		_ = s.tpFor(c.up).Send(c.up, []byte(bye.String()))
	}
}
