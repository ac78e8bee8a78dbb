package sip

import (
	"context"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/calls"
)

// DTMF during a call (issue 18):
//   - key presses the relay decodes from RFC 4733 packets become `dtmf`
//     events (attachDTMF);
//   - SIP INFO digits (application/dtmf-relay, application/dtmf) from
//     either side are played as RFC 4733 toward the other side when that
//     side negotiated telephone-event and the media is relayed (the INFO
//     is answered 200 here), else forwarded as is; a `dtmf` event either
//     way (dtmfInfo);
//   - POST /v1/calls/{id}/dtmf reaches the node holding the call through
//     calls.ControlBus (controlDTMF): RFC 4733 into the phone side's leg,
//     or SIP INFO to it. INFO requests callgate adds to a dialog shift the
//     CSeq numbers of the other party's later requests in that direction
//     (seqShift), and the answers to them are numbered back.

// branchDTMF prefixes the Via branch of INFO requests callgate sends:
// their responses end here.
const branchDTMF = branchOurs + "d"

// Pacing of API digits sent as INFO.
const (
	infoGap   = 100 * time.Millisecond // between two INFO digits, after the tone
	infoPause = 500 * time.Millisecond // 'w'
	// infoCSeqBase is the CSeq of the first INFO callgate inserts in a
	// direction of a dialog.
	infoCSeqBase = 1 << 19
)

// dtmfSession is what DTMF needs of a relayed call's media session
// (gateway/media.Session implements it).
type dtmfSession interface {
	OnDTMF(func(from string, digit byte))
	SendDTMF(toCaller bool, digits string, tone time.Duration) error
	CanSendDTMF(toCaller bool) bool
}

// callDTMF is a call's DTMF state and the CSeq renumbering of every
// request callgate inserts into its dialog (INFO digits, the API's REFER,
// a bridge's NOTIFYs: ownCSeq) (c.mu).
type callDTMF struct {
	toCaller, toCallee seqShift // CSeq renumbering after requests callgate sent
	queue              []byte   // API digits waiting to go out as INFO
	running            bool
}

// seqShift renumbers one direction's in-dialog requests around requests
// callgate inserted: every forwarded request keeps a CSeq above the last
// one sent that way; answers are mapped back by the few recent numbers.
type seqShift struct {
	last     uint32
	add      uint32
	injected bool
	back     [16][2]uint32 // shifted → original
	bi       int
}

// next is the CSeq of a request callgate inserts.
func (sh *seqShift) next() uint32 {
	sh.last++
	sh.injected = true
	return sh.last
}

// forward renumbers a forwarded request's CSeq.
func (sh *seqShift) forward(seq uint32, ackOrCancel bool) uint32 {
	n := seq + sh.add
	if !ackOrCancel {
		if sh.injected && n <= sh.last {
			sh.add += sh.last + 1 - n
			n = sh.last + 1
		}
		sh.last = max(sh.last, n)
	}
	if n != seq {
		sh.back[sh.bi] = [2]uint32{n, seq}
		sh.bi = (sh.bi + 1) % len(sh.back)
	}
	return n
}

// original maps an answered CSeq back (itself when it was not shifted).
func (sh *seqShift) original(n uint32) uint32 {
	for _, b := range sh.back {
		if b[0] == n && b[0] != 0 {
			return b[1]
		}
	}
	return n
}

// dtmfParty names who sent digits: the media/INFO side "caller" is the
// party upstream of callgate, which is the agent on an outbound call.
func (c *call) dtmfParty(upstream bool) string {
	if upstream == (c.out == nil) {
		return "caller"
	}
	return "agent"
}

// attachDTMF hooks the relay's decoded key presses to the call's events.
// Called once the call has its media session.
func (c *call) attachDTMF() {
	ds, ok := c.media.(dtmfSession)
	if !ok {
		return
	}
	c.inspect.Store(true) // INFO digits may be converted: see every in-dialog request
	ds.OnDTMF(func(leg string, digit byte) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.ended {
			return
		}
		c.publishDTMF(c.dtmfParty(leg == "caller"), "rfc4733", string(digit))
	})
}

// publishDTMF sends a dtmf event. c.mu held.
func (c *call) publishDTMF(from, via, digits string) {
	e := calls.Event{
		Kind: calls.DTMF, CallID: c.id, Time: time.Now(), Number: c.rt.route.Number.E164, Workspace: c.rt.route.Number.Workspace,
		Agent: agentID(c.rt.route.Agent), Region: c.regionName(), Carrier: c.rt.carrier, Origin: c.rt.origin,
		Source: "sip", Direction: calls.Inbound, From: c.rt.from, To: c.rt.to,
		Digits: digits, DTMFFrom: from, DTMFVia: via,
	}
	if c.out != nil {
		e.Direction, e.From, e.To, e.Workspace = calls.Outbound, c.out.callerID, c.out.dest, c.out.ws
	}
	c.s.metrics.dtmfEvents(from, via)
	c.s.events.Publish(e)
}

// dtmfInfo handles an INFO inside the recorded dialog c (nil: not
// recorded here) that forwardInDialog allowed. true: answered here (the
// digit goes on as RFC 4733); false: forward it as is.
func (s *Server) dtmfInfo(req *sip.Request, from peer, c *call) bool {
	if c == nil {
		return false
	}
	ct := req.ContentType()
	if ct == nil || !isDTMFInfoType(ct.Value()) {
		return false
	}
	digit, dur, ok := parseDTMFInfo(ct.Value(), req.Body())
	if !ok {
		return false
	}
	fromTag, _ := req.From().Params.Get("tag")
	c.mu.Lock()
	if c.ended || c.state != stAccepted {
		c.mu.Unlock()
		return false
	}
	fromCaller := fromTag == c.fromTag
	c.publishDTMF(c.dtmfParty(fromCaller), "info", string(digit))
	ds, _ := c.media.(dtmfSession)
	converted := ds != nil && ds.CanSendDTMF(!fromCaller) && ds.SendDTMF(!fromCaller, string(digit), dur) == nil
	c.mu.Unlock()
	if !converted {
		return false
	}
	s.metrics.Responses.WithLabelValues("INFO", codeLabel(200)).Inc()
	s.replyStateless(req, from, 200, "OK")
	return true
}

// registerDTMF answers DTMF commands for the calls of this node.
func (s *Server) registerDTMF(bus *calls.ControlBus) {
	if bus != nil {
		bus.Handle(s.controlDTMF)
	}
}

// findCall is the call with this Call-ID on this node, answered or not.
func (s *Server) findCall(callID string) *call {
	if c, ok := s.dialogs.get(callID); ok {
		return c
	}
	var found *call
	s.serverTx.rangeAll(func(_ string, x *call) {
		if found == nil && x.id == callID {
			found = x
		}
	})
	return found
}

// controlDTMF sends API digits to the phone side of a call it holds (the
// caller of an inbound call, the called party of an outbound one).
func (s *Server) controlDTMF(_ context.Context, cmd calls.Command) (calls.Reply, bool) {
	if cmd.Op != calls.OpDTMF {
		return calls.Reply{}, false
	}
	c := s.findCall(cmd.CallID)
	if c == nil {
		return calls.Reply{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ws := c.rt.route.Number.Workspace
	if c.out != nil {
		ws = c.out.ws
	}
	if c.ended || ws != cmd.Workspace {
		return calls.Reply{}, false // another workspace's call does not exist for this one
	}
	if !calls.ValidDTMF(cmd.Digits) {
		return calls.Reply{Status: 400, Error: "digits: 1 to 64 of 0-9, *, #, A-D, w"}, true
	}
	if c.state != stAccepted {
		return calls.Reply{Status: 409, Error: "the call is not answered yet"}, true
	}
	toCaller := c.out == nil // the phone side's leg
	sent := strings.ReplaceAll(cmd.Digits, "w", "")
	if ds, ok := c.media.(dtmfSession); ok && ds.CanSendDTMF(toCaller) {
		if err := ds.SendDTMF(toCaller, cmd.Digits, 0); err == nil {
			c.publishDTMF("agent", "rfc4733", sent)
			return calls.Reply{Status: 202, Detail: map[string]string{"via": "rfc4733"}}, true
		}
	}
	if c.inv == nil || (toCaller && c.inv.Contact() == nil) || (!toCaller && c.agentTarget == nil) {
		return calls.Reply{Status: 409, Error: "the phone side cannot be reached in this dialog"}, true
	}
	if c.dtmf == nil {
		c.dtmf = &callDTMF{}
	}
	if len(c.dtmf.queue)+len(cmd.Digits) > 4*calls.MaxDTMFDigits {
		return calls.Reply{Status: 409, Error: "too many digits queued for this call"}, true
	}
	c.inspect.Store(true) // the other party's CSeqs are renumbered from now on
	c.dtmf.queue = append(c.dtmf.queue, cmd.Digits...)
	if !c.dtmf.running {
		c.dtmf.running = true
		go c.playInfo(toCaller)
	}
	c.publishDTMF("agent", "info", sent)
	return calls.Reply{Status: 202, Detail: map[string]string{"via": "info"}}, true
}

// playInfo sends the queued digits as one INFO each, paced like tones.
func (c *call) playInfo(toCaller bool) {
	for {
		c.mu.Lock()
		if c.ended || len(c.dtmf.queue) == 0 {
			c.dtmf.queue, c.dtmf.running = nil, false
			c.mu.Unlock()
			return
		}
		d := c.dtmf.queue[0]
		c.dtmf.queue = c.dtmf.queue[1:]
		wait := infoPause
		if d != 'w' {
			c.sendInfo(toCaller, d, defaultInfoTone)
			wait = defaultInfoTone + infoGap
		}
		c.mu.Unlock()
		time.Sleep(wait)
	}
}

// sendInfo sends one dtmf-relay INFO inside the dialog, toward the
// caller (its Contact, through the route set its side recorded, like
// sendByes) or toward the called party. c.mu held.
func (c *call) sendInfo(toCaller bool, d byte, dur time.Duration) {
	s := c.s
	inv := c.inv
	if inv == nil {
		return
	}
	var req *sip.Request
	if toCaller {
		ct := inv.Contact()
		if ct == nil {
			return
		}
		req = sip.NewRequest(sip.INFO, ct.Address)
		req.AppendHeader(s.via(c.up.Side, c.up.Proto, newBranch(branchDTMF)))
		for _, h := range inv.GetHeaders("Record-Route") {
			if rr, ok := h.(*sip.RecordRouteHeader); ok {
				req.AppendHeader(&sip.RouteHeader{Address: rr.Address})
			}
		}
		req.AppendHeader(&sip.FromHeader{DisplayName: inv.To().DisplayName, Address: inv.To().Address,
			Params: sip.HeaderParams{{K: "tag", V: c.agentTag}}})
		req.AppendHeader(&sip.ToHeader{DisplayName: inv.From().DisplayName, Address: inv.From().Address,
			Params: inv.From().Params.Clone()})
	} else {
		if c.agentTarget == nil {
			return
		}
		pr, err := uriProto(c.agentTarget)
		if err != nil {
			return
		}
		req = sip.NewRequest(sip.INFO, *c.agentTarget)
		req.AppendHeader(s.via(c.downSide(), pr, newBranch(branchDTMF)))
		req.AppendHeader(sip.HeaderClone(inv.From()))
		toH := &sip.ToHeader{DisplayName: inv.To().DisplayName, Address: inv.To().Address, Params: inv.To().Params.Clone()}
		toH.Params = toH.Params.Add("tag", c.agentTag)
		req.AppendHeader(toH)
	}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.HeaderClone(inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: c.ownCSeq(toCaller), MethodName: sip.INFO})
	req.AppendHeader(sip.NewHeader("Content-Type", ctDTMFRelay))
	req.SetBody(dtmfRelayBody(d, dur))
	if toCaller {
		_ = s.tpFor(c.up).Send(c.up, []byte(req.String()))
	} else {
		_ = s.tpSide(c.downSide()).SendURI(c.agentTarget, req)
	}
	s.metrics.dtmfInfoSent()
}

// ownCSeq is the CSeq of an in-dialog request callgate inserts toward
// the caller (upstream) or the callee, in the place of the other party:
// an INFO with digits (here) or the API's REFER (transferapi.go). The
// other party's numbers before it are not tracked (that would cost every
// call): the first one jumps well above any it uses, and its later
// requests are numbered after ours (shiftCSeq; c.inspect must be set).
// c.mu held.
func (c *call) ownCSeq(toCaller bool) uint32 {
	if c.dtmf == nil {
		c.dtmf = &callDTMF{}
	}
	sh := &c.dtmf.toCaller
	if !toCaller {
		sh = &c.dtmf.toCallee
	}
	if !sh.injected {
		sh.last = max(sh.last, infoCSeqBase, c.inv.CSeq().SeqNo+c.cseqDelta+infoCSeqBase)
	}
	c.inspect.Store(true) // the other party's later requests are renumbered: never the fast path
	return sh.next()
}

// shiftCSeq renumbers a forwarded in-dialog request after INFOs callgate
// inserted in its direction. c.mu held.
func (c *call) shiftCSeq(req *sip.Request, fromCaller bool) {
	if c.dtmf == nil {
		return
	}
	cs := req.CSeq()
	if cs == nil {
		return
	}
	sh := &c.dtmf.toCaller
	if fromCaller {
		sh = &c.dtmf.toCallee
	}
	if !sh.injected {
		return
	}
	cs.SeqNo = sh.forward(cs.SeqNo, req.IsAck() || req.Method == sip.CANCEL)
}

// unshiftCSeq numbers a response back the way its request was sent.
func (c *call) unshiftCSeq(res *sip.Response) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dtmf == nil {
		return
	}
	cs := res.CSeq()
	if cs == nil || res.From() == nil {
		return
	}
	fromTag, _ := res.From().Params.Get("tag")
	sh := &c.dtmf.toCaller
	if fromTag == c.fromTag {
		sh = &c.dtmf.toCallee
	}
	cs.SeqNo = sh.original(cs.SeqNo)
}

// byeCSeq is the CSeq of a BYE callgate sends (sendByes): above the
// INFOs it inserted in that direction, if any. c.mu held.
func (c *call) byeCSeq(seq uint32, toCaller bool) uint32 {
	if c.dtmf == nil {
		return seq
	}
	sh := &c.dtmf.toCallee
	if toCaller {
		sh = &c.dtmf.toCaller
	}
	if !sh.injected {
		return seq
	}
	return max(seq, sh.next())
}
