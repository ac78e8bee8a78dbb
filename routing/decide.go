package routing

import (
	"github.com/callgate/callgate/phone"
)

// Media modes of a routed call.
const (
	MediaDirect = "direct" // media flows between carrier and agent
	MediaRelay  = "relay"  // media is anchored on this node
)

// Call is what an edge knows about a call when it asks Decide what to do
// with it. Numbers may be in any form phone.Parse reads (E.164, digits,
// national format with Country, tel:/sip: URIs); Decide normalises them.
type Call struct {
	Called  string // called number as delivered (SIP Request-URI user, webhook To)
	To      string // a second place the called number may be (SIP To); tried when Called is not ours
	Calling string // calling number (From), as delivered
	Country string // ISO 3166 alpha-2 for national-format numbers (the trunk's country); may be empty
	// Diversion are the numbers the call was diverted from, newest first
	// (SIP Diversion, RFC 5806, topmost first; Twilio ForwardedFrom;
	// Telnyx sip_headers Diversion).
	Diversion []string
	// History are the History-Info targets in index order (RFC 7044):
	// the first is the original target, the last the current one.
	History   []string
	Carrier   string // carrier that delivered the call (trunk preset, webhook carrier)
	Trunk     string // trunk or integration it came through, when known
	Source    string // edge: "sip", "twilio_webhook", "telnyx_webhook"
	Direction string // "inbound" (the only direction decided today) or empty
	// CallID picks the agent of a number that splits calls by weight
	// (NumberControl.Agents): the same Call-ID always lands on the same
	// agent, so a retransmitted INVITE goes where the first one went.
	CallID string
}

// Policy is the node's part of a decision: what it knows that the
// snapshot does not.
type Policy struct {
	Health Health // endpoint health from probing; nil: every endpoint up
	Media  string // default media mode for agents without one: MediaDirect (when empty) or MediaRelay
}

// Outcome is what to do with a call.
type Outcome uint8

const (
	OutcomeNotOurs Outcome = iota // the called number is not held here (404)
	OutcomeRoute                  // route to Decision.Candidates in order
	OutcomeReject                 // ours, but refused now: see Decision.Reason
)

func (o Outcome) String() string {
	switch o {
	case OutcomeRoute:
		return "route"
	case OutcomeReject:
		return "reject"
	default:
		return "not_ours"
	}
}

// Reason says why a call is not routed. Edges map it to their protocol
// (SIP status, TwiML, Call Control cause) and to their metric labels.
type Reason string

const (
	ReasonNone          Reason = ""
	ReasonUnknownNumber Reason = "unknown_number" // OutcomeNotOurs (SIP 404)
	ReasonInactive      Reason = "inactive"       // the number is not active: suspended, releasing, ... (SIP 480)
	ReasonUnassigned    Reason = "unassigned"     // no agent assigned (SIP 480)
	ReasonNoEndpoint    Reason = "no_endpoint"    // the agent has no healthy endpoint (SIP 503)
)

// Decision is the answer of Decide. Every field but Outcome and Reason is
// filled whenever the number is known (also for a rejection), so that
// events and logs say whose call was refused.
type Decision struct {
	Outcome Outcome
	Reason  Reason
	Called  string // E.164 of the called number as delivered; "" when it is not a number

	Route     *Route // the gateway number's route; nil for OutcomeNotOurs
	Number    string // E.164 of the gateway number
	Workspace string
	Agent     *Agent // nil when unassigned
	Carrier   string // the number's carrier, else the call's

	// Candidates are the agent's healthy endpoints in the order to try
	// them (voice region first, then by RTT; see AppendCandidates).
	Candidates []Endpoint
	Media      string // MediaDirect or MediaRelay (agent's setting, else the policy's default)

	Origin         string // OriginPurchased, OriginImported or OriginForwarded
	ForwardedFrom  string // registered business line the call came through
	OriginalCalled string // first number the caller dialled (Diversion/History-Info)

	// Hook is the routing hook that applies to the call (the number's
	// override, else the workspace's); nil: none. Edges ask it before
	// routing (gateway/hook) and apply its answer with Retarget.
	Hook *Hook
}

// Decide is the one place a call is decided: every edge (SIP, Twilio and
// Telnyx webhooks) asks it and only translates the answer into its own
// protocol. It reads only s (never the network) and allocates at most the
// candidate list.
//
// The called number is Call.Called, else Call.To. A call is attributed to
// a registered business line (origin forwarded) when the line is in its
// Diversion/History-Info chain, or is the called number itself, and is
// registered as forwarding to the gateway number by the workspace that
// holds that number; a call to a number we do not hold is routed through
// such a registration. Forwarding entries of another workspace are
// ignored. Only an active number with an agent and a healthy endpoint is
// routed.
func Decide(s *Snapshot, c *Call, p Policy) Decision {
	var d Decision
	e, r, ok := LookupNumber(s, c.Called, c.Country)
	if !ok && c.To != "" && c.To != c.Called {
		if e2, r2, ok2 := LookupNumber(s, c.To, c.Country); ok2 || e == "" {
			e, r, ok = e2, r2, ok2
		}
	}
	d.Called = e

	// The forwarding chain, newest first: Diversion, then History-Info
	// from its last entry back.
	var histBuf [8]string
	hist := histBuf[:0]
	for _, v := range c.Diversion {
		if n, ok := phone.Parse(v, c.Country); ok {
			hist = append(hist, n)
		}
	}
	if len(hist) > 0 {
		d.OriginalCalled = hist[len(hist)-1]
	}
	nd := len(hist)
	for _, v := range c.History {
		if n, ok := phone.Parse(v, c.Country); ok {
			hist = append(hist, n)
		}
	}
	if hi := hist[nd:]; len(hi) > 0 {
		if d.OriginalCalled == "" && hi[0] != e {
			d.OriginalCalled = hi[0]
		}
		for i, j := 0, len(hi)-1; i < j; i, j = i+1, j-1 {
			hi[i], hi[j] = hi[j], hi[i]
		}
	}

	// The called number itself may be a registered business line (a
	// carrier that keeps the original Request-URI).
	if !ok && e != "" {
		if f, fok := s.ForwardFrom(e); fok {
			if r2, ok2 := s.forwardRoute(f); ok2 {
				r, ok = r2, true
				d.ForwardedFrom = e
				if d.OriginalCalled == "" {
					d.OriginalCalled = e
				}
			}
		}
	}
	for _, n := range hist {
		if d.ForwardedFrom != "" {
			break
		}
		if ok && n == r.Number.E164 {
			continue
		}
		f, fok := s.ForwardFrom(n)
		if !fok {
			continue
		}
		if ok {
			if f.GatewayNumber == r.Number.E164 && f.Workspace == r.Number.Workspace {
				d.ForwardedFrom = n
			}
		} else if r2, ok2 := s.forwardRoute(f); ok2 {
			r, ok = r2, true
			d.ForwardedFrom = n
		}
	}
	if !ok {
		d.Outcome, d.Reason = OutcomeNotOurs, ReasonUnknownNumber
		return d
	}

	if ctl := r.Number.Control; ctl != nil && len(ctl.Agents) > 0 {
		// weighted agents: the split decides the agent (an unknown one
		// leaves the static assignment)
		if a, ok := s.Agent(r.Number.Workspace, PickWeighted(ctl.Agents, c.CallID)); ok && a != r.Agent {
			r = &Route{Number: r.Number, Agent: a}
		}
	}
	d.Route = r
	d.Hook = hookOf(s, r)
	d.Number = r.Number.E164
	d.Workspace = r.Number.Workspace
	d.Agent = r.Agent
	d.Carrier = r.Number.Carrier
	if d.Carrier == "" {
		d.Carrier = c.Carrier
	}
	d.Origin = r.Number.Origin
	if d.ForwardedFrom != "" {
		d.Origin = OriginForwarded
		if d.OriginalCalled == "" {
			d.OriginalCalled = d.ForwardedFrom
		}
	}
	d.Media = MediaDirect
	switch {
	case r.Agent != nil && r.Agent.Media != "":
		if r.Agent.Media == MediaRelay {
			d.Media = MediaRelay
		}
	case p.Media == MediaRelay:
		d.Media = MediaRelay
	}

	switch {
	case r.Number.Status != StatusActive:
		d.Outcome, d.Reason = OutcomeReject, ReasonInactive
		return d
	case r.Agent == nil:
		d.Outcome, d.Reason = OutcomeReject, ReasonUnassigned
		return d
	}
	d.Candidates = AppendCandidates(make([]Endpoint, 0, len(r.Agent.Endpoints)), r, p.Health)
	if len(d.Candidates) == 0 {
		d.Outcome, d.Reason = OutcomeReject, ReasonNoEndpoint
		return d
	}
	d.Outcome = OutcomeRoute
	return d
}

// forwardRoute is the route of the gateway number a forwarding entry
// names, when the entry belongs to the workspace that holds that number.
func (s *Snapshot) forwardRoute(f Forward) (*Route, bool) {
	r, ok := s.Lookup(f.GatewayNumber)
	if !ok || r.Number.Workspace != f.Workspace {
		return nil, false
	}
	return r, true
}

// LookupNumber finds the route of a number as an edge received it, fast
// path first: a "+digits" string is looked up without parsing or
// allocating, and so are NANP numbers in digits only when country is in
// the NANP. Anything else is normalised with phone.Parse. It returns the
// E.164 form ("" when n is not a number) and the route when n is ours.
func LookupNumber(s *Snapshot, n, country string) (string, *Route, bool) {
	if len(n) > 1 && n[0] == '+' {
		if k, ok := Key(n); ok {
			r, ok := s.LookupKey(k)
			if ok {
				return n, r, true
			}
			return n, nil, false
		}
	}
	if k, ok := nanpKey(n, country); ok {
		// a NANP number in digits only: a hit in the snapshot (valid
		// numbers only) is what phone.Normalize would return; a miss
		// falls through to full normalisation
		if r, ok := s.LookupKey(k); ok {
			return r.Number.E164, r, true
		}
	}
	e, ok := phone.Parse(n, country)
	if !ok {
		return "", nil, false
	}
	r, ok := s.Lookup(e)
	return e, r, ok
}

// nanpKey is the routing key of a called number written in digits only,
// "1NXXNXXXXXX" or national "NXXNXXXXXX", when country is in the North
// American Numbering Plan (calling code 1, fixed ten-digit national
// numbers, so the reading is unambiguous). It does not allocate.
func nanpKey(n, country string) (uint64, bool) {
	switch {
	case len(n) == 11 && n[0] == '1' && n[1] >= '2' && n[1] <= '9':
	case len(n) == 10 && n[0] >= '2' && n[0] <= '9':
	default:
		return 0, false
	}
	if !phone.InNANP(country) {
		return 0, false
	}
	k, ok := Key(n)
	if !ok {
		return 0, false
	}
	if len(n) == 10 {
		k += 1e10
	}
	return k, true
}
