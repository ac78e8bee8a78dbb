package provisioning

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/provisioning/carrier/telnyx"
	"github.com/callgate/callgate/routing"
)

// numberKey is the KV key of a number: its digits (numbers are unique
// across the whole system, whatever the workspace).
func numberKey(e164 string) string { return strings.TrimPrefix(e164, "+") }

func (s *Service) isOwned(ctx context.Context, e164 string) (bool, error) {
	_, err := s.st.Numbers.Get(ctx, numberKey(e164))
	if err == nil {
		return true, nil
	}
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	return false, storeErr("check number", err)
}

// SearchRequest is a marketplace search.
type SearchRequest struct {
	Carrier       string
	IntegrationID string
	carrier.SearchQuery
}

// Search lists purchasable numbers. Numbers owned by anyone never appear.
func (s *Service) Search(ctx context.Context, p Principal, r SearchRequest) (carrier.SearchPage, error) {
	v := &ValidationError{}
	if r.Country == "" {
		v.Add("country", "required (ISO 3166 alpha-2, e.g. US)")
	} else if len(r.Country) != 2 {
		v.Add("country", "must be an ISO 3166 alpha-2 code such as US or GB")
	}
	switch r.Type {
	case "", carrier.TypeLocal, carrier.TypeMobile, carrier.TypeTollFree, carrier.TypeNational:
	default:
		v.Add("type", "must be one of national, local, mobile, toll_free")
	}
	if r.Limit < 0 || r.Limit > 100 {
		v.Add("limit", "must be between 1 and 100")
	}
	if err := v.Err(); err != nil {
		return carrier.SearchPage{}, err
	}
	if r.Limit == 0 {
		r.Limit = 20
	}
	r.Country = strings.ToUpper(r.Country)
	c, err := s.carrierFor(ctx, p.Workspace, r.Carrier, r.IntegrationID)
	if err != nil {
		return carrier.SearchPage{}, err
	}
	page, err := c.Search(ctx, r.SearchQuery)
	if err != nil {
		return carrier.SearchPage{}, carrierErr(err, "area_code")
	}
	if !s.isSandbox(c) {
		// The sandbox filters while it generates; others are filtered here.
		kept := page.Numbers[:0]
		for _, n := range page.Numbers {
			owned, err := s.isOwned(ctx, n.PhoneNumber)
			if err != nil {
				return carrier.SearchPage{}, err
			}
			if !owned {
				kept = append(kept, n)
			}
		}
		page.Numbers = kept
	}
	if page.Numbers == nil {
		page.Numbers = []carrier.AvailableNumber{}
	}
	return page, nil
}

// carrierErr turns an invalid-query carrier error into a field error and
// passes other carrier errors through (the API maps them to 502/504).
func carrierErr(err error, field string) error {
	var ce *carrier.Error
	if errors.As(err, &ce) && errors.Is(err, carrier.ErrInvalidQuery) {
		if ce.Field != "" {
			field = ce.Field
		}
		detail := ce.Detail
		if detail == "" {
			detail = ce.Error()
		}
		return invalid(field, "%s", detail)
	}
	return err
}

// PurchaseRequest buys a number.
type PurchaseRequest struct {
	PhoneNumber   string `json:"phone_number"`
	Carrier       string `json:"carrier"`
	IntegrationID string `json:"integration_id,omitempty"`
	AgentID       string `json:"agent_id,omitempty"`
}

// Purchase buys a number: claim it (KV create: fails if anyone owns it),
// charge the month (ledger CAS: fails if credits are short), buy at the
// carrier, commit. On a carrier failure the charge is refunded and the
// claim released. The same idempotency key returns the first outcome and
// charges once.
func (s *Service) Purchase(ctx context.Context, p Principal, r PurchaseRequest, idemKey string) (Number, error) {
	if idemKey == "" {
		n, err := s.purchase(ctx, p, r, "")
		s.m.op("purchase", resultOf(err))
		return n, err
	}
	key, err := idempotencyKey(p.Workspace, opPurchase, idemKey)
	if err != nil {
		return Number{}, err
	}
	rec := idempotencyRecord{
		RequestHash: requestHash(r.PhoneNumber + "|" + r.Carrier + "|" + r.IntegrationID + "|" + r.AgentID),
		Op:          opPurchase, Workspace: p.Workspace,
	}
	if e164, err := phone.Normalize(r.PhoneNumber, ""); err == nil {
		rec.PhoneNumber = e164
	}
	rev, prev, err := s.beginIdempotent(ctx, key, rec)
	if err != nil {
		return Number{}, err
	}
	if prev != nil {
		if prev.Number != nil {
			return *prev.Number, nil
		}
		return Number{}, replayErr(*prev)
	}
	n, perr := s.purchase(ctx, p, r, key)
	if errors.Is(perr, errSimulatedCrash) {
		return n, perr
	}
	s.m.op("purchase", resultOf(perr))
	if perr == nil {
		rec.Number = &n
	}
	s.endIdempotent(ctx, key, rev, rec, perr)
	return n, perr
}

func kindName(err error) string {
	for _, k := range []error{ErrNotFound, ErrConflict, ErrInsufficientCredits, ErrInvalid, ErrForbidden, ErrUnavailable} {
		if errors.Is(err, k) {
			return k.Error()
		}
	}
	return "error"
}

func resultOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrConflict):
		return "conflict"
	case errors.Is(err, ErrInsufficientCredits):
		return "insufficient_credits"
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrNotFound):
		return "invalid"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	}
	var ce *carrier.Error
	if errors.As(err, &ce) {
		return "carrier_error"
	}
	return "error"
}

func isCarrierTransient(err error) bool {
	return errors.Is(err, carrier.ErrTimeout) || errors.Is(err, carrier.ErrUnavailable)
}

// purchase runs the saga; idemKey is the store key of the purchase's
// idempotency record ("" without one), kept on the claim for recovery.
func (s *Service) purchase(ctx context.Context, p Principal, r PurchaseRequest, idemKey string) (Number, error) {
	v := &ValidationError{}
	e164, err := phone.Normalize(r.PhoneNumber, "")
	if err != nil {
		v.Add("phone_number", "%v; use E.164 such as +12282001234", err)
	}
	if r.AgentID != "" && !ValidID(r.AgentID) {
		v.Add("agent_id", "not a valid agent id")
	}
	if err := v.Err(); err != nil {
		return Number{}, err
	}
	c, err := s.carrierFor(ctx, p.Workspace, r.Carrier, r.IntegrationID)
	if err != nil {
		return Number{}, err
	}
	if r.AgentID != "" {
		if _, err := s.GetAgent(ctx, p, r.AgentID); err != nil {
			return Number{}, invalid("agent_id", "agent %q does not exist in this workspace", r.AgentID)
		}
	}
	listing, err := s.listing(ctx, c, e164)
	if err != nil {
		return Number{}, err
	}
	now := s.now().UTC()
	rec := numberRecord{
		Number: Number{
			PhoneNumber: e164, Country: listing.Country, Region: listing.Region, Locality: listing.Locality,
			Type: listing.Type, Features: listing.Features, MonthlyCost: listing.MonthlyCost,
			Carrier: c.Name(), Origin: routing.OriginPurchased, Status: StatusPending,
			AgentID: r.AgentID, IntegrationID: r.IntegrationID, PurchasedAt: now,
		},
		WorkspaceID: p.Workspace, ClaimedAt: now, IdempotencyKey: idemKey,
	}
	// 1. Claim: the workspace's index entry first (index.go), then the
	// claim itself.
	ref, err := s.indexAdd(ctx, indexNumbers, p.Workspace, numberKey(e164))
	if err != nil {
		return Number{}, err
	}
	b, _ := json.Marshal(rec)
	rev, err := s.st.Numbers.Create(ctx, numberKey(e164), b)
	if err != nil {
		s.indexUndo(ctx, ref)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Number{}, errorf(ErrConflict, "%s is no longer available: it may have been purchased by another user", e164)
		}
		return Number{}, storeErr("claim number", err)
	}
	bg := context.WithoutCancel(ctx)
	unclaim := func() {
		if err := s.st.Numbers.Delete(bg, numberKey(e164), jetstream.LastRevision(rev)); err != nil {
			s.log.Error("provisioning: claim not released", "number", phone.Mask(e164), "err", err)
			return
		}
		s.indexRemove(bg, indexNumbers, p.Workspace, numberKey(e164), ref.stamp)
	}
	if r.AgentID != "" {
		// The claim names the agent: if the agent began to be deleted
		// meanwhile, give up (DeleteAgent sees claims too).
		if err := s.assignableAgent(ctx, p.Workspace, r.AgentID); err != nil {
			unclaim()
			return Number{}, err
		}
	}
	if s.crashed("purchase:claimed") {
		return Number{}, errSimulatedCrash
	}
	// 2. Charge the full month at once. The message id is unique to this
	// claim, so a charge retried after a lost ack is written once.
	chargeID := fmt.Sprintf("purchase:%s:%d", numberKey(e164), rev)
	charge, err := s.post(ctx, p.Workspace, LedgerEntry{
		Kind: KindPurchase, Amount: -listing.MonthlyCost, Number: e164,
		Reason: fmt.Sprintf("purchase of %s (%s, %s): first month, no proration", e164, c.Name(), listing.Type),
	}, chargeID)
	if errors.Is(err, errDuplicateEntry) {
		err = nil // an earlier attempt of this very charge landed
	}
	if err != nil {
		unclaim()
		return Number{}, err
	}
	if s.crashed("purchase:charged") {
		return Number{}, errSimulatedCrash
	}
	refund := func(why string) {
		if _, err := s.post(bg, p.Workspace, LedgerEntry{
			Kind: KindRefund, Amount: listing.MonthlyCost, Number: e164,
			Reason: "refund of purchase " + charge.ID + ": " + why,
		}, "refund:"+chargeID); err != nil && !errors.Is(err, errDuplicateEntry) {
			s.log.Error("provisioning: REFUND FAILED", "workspace", p.Workspace, "number", phone.Mask(e164), "amount", listing.MonthlyCost, "err", err)
		}
	}
	// 3. Buy at the carrier.
	owned, err := c.Buy(ctx, e164, s.callbackConfig())
	if err != nil {
		refund("the carrier did not sell the number: " + err.Error())
		unclaim()
		if isCarrierTransient(err) {
			// The carrier may have bought it after all: give it back.
			go s.undoBuy(c, e164, err)
		}
		if errors.Is(err, carrier.ErrNotAvailable) {
			return Number{}, errorf(ErrConflict, "%s is no longer available at %s: it may have been purchased by another user", e164, c.Name())
		}
		return Number{}, err
	}
	// 4. Commit.
	renews := addMonths(now, 1)
	rec.Status = routing.StatusActive
	rec.CarrierID = owned.CarrierID
	rec.RenewsAt = &renews
	b, _ = json.Marshal(rec)
	if _, err := s.st.Numbers.Update(bg, numberKey(e164), b, rev); err != nil {
		// The state store failed at the last step: the claim stays
		// pending, and RecoverStaleClaims later refunds the charge and
		// releases the number at the carrier, as the client was told
		// the purchase failed.
		s.log.Error("provisioning: purchase not committed", "number", phone.Mask(e164), "err", err)
		return Number{}, storeErr("commit purchase", err)
	}
	if s.crashed("purchase:committed") {
		return Number{}, errSimulatedCrash
	}
	s.log.Info("provisioning: number purchased", "workspace", p.Workspace, "number", phone.Mask(e164), "carrier", c.Name(), "charged", listing.MonthlyCost)
	return rec.number(), nil
}

// listing finds the price and description of a number at a carrier.
func (s *Service) listing(ctx context.Context, c carrier.Carrier, e164 string) (carrier.AvailableNumber, error) {
	if s.isSandbox(c) {
		n, ok := s.sandbox.Describe(e164)
		if !ok {
			return n, errorf(ErrConflict, "%s is not available from the sandbox carrier", e164)
		}
		return n, nil
	}
	info, err := phone.Describe(e164)
	if err != nil {
		return carrier.AvailableNumber{}, invalid("phone_number", "%v", err)
	}
	// Look the number up in the carrier's inventory to learn its price.
	q := carrier.SearchQuery{Country: info.Country, Type: info.Type, Limit: 100}
	if info.Country == "US" || info.Country == "CA" {
		q.AreaCode = strings.TrimPrefix(e164, "+1")[:3]
	}
	for page := 0; page < 5; page++ {
		res, err := c.Search(ctx, q)
		if err != nil {
			return carrier.AvailableNumber{}, carrierErr(err, "phone_number")
		}
		for _, n := range res.Numbers {
			if n.PhoneNumber == e164 {
				return n, nil
			}
		}
		if res.NextPageToken == "" {
			break
		}
		q.PageToken = res.NextPageToken
	}
	return carrier.AvailableNumber{}, errorf(ErrConflict, "%s is no longer available at %s: it may have been purchased by another user", e164, c.Name())
}

// addMonths adds n calendar months, clamping to the month's last day
// (Jan 31 + 1 month = Feb 28/29).
func addMonths(t time.Time, n int) time.Time {
	y, m, d := t.Date()
	first := time.Date(y, m+time.Month(n), 1, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
	last := first.AddDate(0, 1, -1).Day()
	if d > last {
		d = last
	}
	return time.Date(first.Year(), first.Month(), d, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
}

// getNumber reads a number in the caller's workspace (others' are not found).
func (s *Service) getNumber(ctx context.Context, p Principal, raw string) (numberRecord, uint64, error) {
	var rec numberRecord
	e164, err := phone.Normalize(raw, "")
	if err != nil { // a path that names no number
		return rec, 0, errorf(ErrNotFound, "number %q not found in this workspace (%v)", raw, err)
	}
	rev, err := getJSON(ctx, s.st.Numbers, numberKey(e164), &rec)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return rec, 0, errorf(ErrNotFound, "number %s not found in this workspace", e164)
		}
		return rec, 0, storeErr("get number", err)
	}
	if rec.WorkspaceID != p.Workspace || rec.Status == StatusPending {
		return rec, 0, errorf(ErrNotFound, "number %s not found in this workspace", e164)
	}
	return rec, rev, nil
}

// GetNumber returns one of the workspace's numbers.
func (s *Service) GetNumber(ctx context.Context, p Principal, e164 string) (Number, error) {
	rec, _, err := s.getNumber(ctx, p, e164)
	return rec.number(), err
}

// allNumbers reads every number record (all workspaces): renewals and
// recovery; a workspace's listing reads its index instead.
func (s *Service) allNumbers(ctx context.Context) ([]numberRecord, []uint64, error) {
	var recs []numberRecord
	var revs []uint64
	err := scanJSON(ctx, s, s.st.Numbers, func(_ string, rec numberRecord, rev uint64) {
		recs = append(recs, rec)
		revs = append(revs, rev)
	})
	if err != nil {
		return nil, nil, storeErr("list numbers", err)
	}
	return recs, revs, nil
}

// ListNumbers returns the workspace's numbers sorted by number. It reads
// the workspace's index entries and their records only (index.go), not
// the numbers of other workspaces.
func (s *Service) ListNumbers(ctx context.Context, p Principal) ([]Number, error) {
	keys, err := s.indexed(ctx, indexNumbers, p.Workspace)
	if err != nil {
		return nil, err
	}
	out := []Number{}
	err = getEach(ctx, s.st.Numbers, keys, func(e jetstream.KeyValueEntry) error {
		var r numberRecord
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			return fmt.Errorf("decode %s/%s: %w", s.st.Numbers.Bucket(), e.Key(), err)
		}
		if r.WorkspaceID == p.Workspace && r.Status != StatusPending {
			out = append(out, r.number())
		}
		return nil
	})
	if err != nil {
		return nil, storeErr("list numbers", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PhoneNumber < out[j].PhoneNumber })
	return out, nil
}

// NumberPatch changes a number. Nil fields are left alone; an empty
// string clears the field.
type NumberPatch struct {
	AgentID     *string `json:"agent_id"`
	VoiceRegion *string `json:"voice_region"`
	// Call control (numbercontrol.go). agents replaces agent_id (which
	// becomes the first of them); agent_id clears agents. An empty list
	// or string clears; "routing_hook": null removes the override.
	Agents      *[]AgentWeight  `json:"agents"`
	SMSAgentID  *string         `json:"sms_agent_id"`
	Fallback    *[]FallbackStep `json:"fallback"`
	RoutingHook json.RawMessage `json:"routing_hook"`
}

var twilioRegions = map[string]bool{"us1": true, "ie1": true, "au1": true}

// UpdateNumber assigns a number to an agent and/or sets its voice region.
func (s *Service) UpdateNumber(ctx context.Context, p Principal, e164 string, patch NumberPatch) (Number, error) {
	if patch.AgentID == nil && patch.VoiceRegion == nil && !patch.hasControlPatch() {
		return Number{}, invalid("body", "nothing to change: give agent_id, agents, sms_agent_id, fallback, routing_hook and/or voice_region")
	}
	for attempt := 0; attempt < 20; attempt++ {
		rec, rev, err := s.getNumber(ctx, p, e164)
		if err != nil {
			return Number{}, err
		}
		if rec.Status == StatusReleasing {
			return Number{}, errorf(ErrConflict, "number %s is being released; it can no longer be changed", rec.PhoneNumber)
		}
		before := rec
		if patch.AgentID != nil {
			id := *patch.AgentID
			if id != "" {
				if !ValidID(id) {
					return Number{}, invalid("agent_id", "not a valid agent id")
				}
				if err := s.assignableAgent(ctx, p.Workspace, id); err != nil {
					return Number{}, err
				}
			}
			rec.AgentID = id
		}
		if patch.AgentID != nil || patch.hasControlPatch() {
			if err := s.applyControl(ctx, p.Workspace, &rec, patch); err != nil {
				return Number{}, err
			}
		}
		if patch.VoiceRegion != nil {
			region := *patch.VoiceRegion
			switch rec.Carrier {
			case "twilio":
				if region != "" && !twilioRegions[region] {
					return Number{}, invalid("voice_region", "Twilio voice regions are us1, ie1 and au1")
				}
			case "telnyx":
				if region != "" {
					return Number{}, invalid("voice_region", "regions are configured for Twilio numbers only")
				}
			default:
				if region != "" && !ValidID(region) {
					return Number{}, invalid("voice_region", "must be a region name such as us-east")
				}
			}
			if region != rec.VoiceRegion && rec.Carrier != "sandbox" {
				c, err := s.carrierFor(ctx, p.Workspace, rec.Carrier, rec.IntegrationID)
				if err != nil {
					return Number{}, err
				}
				r := region
				if r == "" {
					r = "us1"
				}
				if err := c.SetRegion(ctx, rec.PhoneNumber, r); err != nil {
					if errors.Is(err, carrier.ErrRegionUnsupported) {
						return Number{}, invalid("voice_region", "regions are configured for Twilio numbers only")
					}
					return Number{}, err
				}
			}
			rec.VoiceRegion = region
		}
		b, _ := json.Marshal(rec)
		newRev, err := s.st.Numbers.Update(ctx, numberKey(rec.PhoneNumber), b, rev)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			return Number{}, storeErr("update number", err)
		}
		if patch.AgentID != nil && *patch.AgentID != "" {
			// The agent may have been marked for deletion after it was
			// checked: confirm it now that the assignment is written
			// (DeleteAgent marks first and then looks for numbers, so
			// one of the two sees the other), and undo the assignment if
			// the agent is going.
			if err := s.confirmAssignment(ctx, rec, newRev); err != nil {
				return Number{}, err
			}
		}
		if patch.hasControlPatch() {
			if err := s.confirmControl(ctx, before, rec, newRev); err != nil {
				return Number{}, err
			}
		}
		return rec.number(), nil
	}
	return Number{}, errorf(ErrConflict, "the number is changing too fast; retry")
}

// Release gives a number up: no refund, it returns to inventory. An
// imported number in full_control mode gets its previous carrier settings
// back.
func (s *Service) Release(ctx context.Context, p Principal, e164 string) error {
	err := s.release(ctx, p, e164)
	s.m.op("release", resultOf(err))
	return err
}

// release is a saga: mark the number releasing (compare-and-set; from
// then on nothing else may change it), give it back at the carrier, then
// delete it. A crash between the steps leaves it releasing, and
// RecoverStaleClaims (or a retried release) finishes the job, so a number
// released at the carrier never stays active in callgate.
func (s *Service) release(ctx context.Context, p Principal, e164 string) error {
	var (
		rec, prev numberRecord
		rev, key  = uint64(0), ""
		resumed   bool
	)
	for attempt := 0; ; attempt++ {
		var err error
		rec, rev, err = s.getNumber(ctx, p, e164)
		if err != nil {
			return err
		}
		key = numberKey(rec.PhoneNumber)
		if rec.Status == StatusReleasing {
			resumed = true // an earlier release did not finish: finish it
			break
		}
		// Resolve the carrier before marking, so that a number whose
		// carrier cannot be reached is not left releasing for nothing.
		if _, err := s.carrierFor(ctx, p.Workspace, rec.Carrier, rec.IntegrationID); err != nil {
			return err
		}
		prev = rec
		now := s.now().UTC()
		rec.Status, rec.ReleasingAt = StatusReleasing, &now
		b, _ := json.Marshal(rec)
		newRev, err := s.st.Numbers.Update(ctx, key, b, rev)
		if err == nil {
			rev = newRev
			break
		}
		if !isRevisionConflict(err) {
			return storeErr("mark number releasing", err)
		}
		if attempt >= 100 {
			return errorf(ErrConflict, "the number is changing too fast to be released; retry")
		}
	}
	if s.crashed("release:marked") {
		return errSimulatedCrash
	}
	if err := s.releaseAtCarrier(ctx, rec); err != nil {
		if !resumed && !isCarrierTransient(err) {
			// The carrier refused: it still holds the number, so
			// callgate keeps it as it was.
			b, _ := json.Marshal(prev)
			if _, uerr := s.st.Numbers.Update(context.WithoutCancel(ctx), key, b, rev); uerr != nil {
				s.log.Error("provisioning: number left releasing after a refused release", "number", phone.Mask(rec.PhoneNumber), "err", uerr)
			}
		}
		// After a timeout the carrier may have released it: it stays
		// releasing (changes refused) until a retry or recovery finishes.
		return err
	}
	if s.crashed("release:carrier") {
		return errSimulatedCrash
	}
	return s.deleteReleased(ctx, rec, rev)
}

// releaseAtCarrier gives a releasing number back at its carrier: a
// purchased one is released, an imported one in full_control mode gets its
// previous settings back.
func (s *Service) releaseAtCarrier(ctx context.Context, rec numberRecord) error {
	c, err := s.carrierFor(ctx, rec.WorkspaceID, rec.Carrier, rec.IntegrationID)
	if err != nil {
		return err
	}
	if rec.Origin == routing.OriginImported {
		if rec.WebhookMode == WebhookFullControl && rec.Previous != nil {
			if _, err := c.Configure(ctx, rec.PhoneNumber, *rec.Previous); err != nil {
				return err
			}
		}
		return nil
	}
	if err := c.Release(ctx, rec.PhoneNumber); err != nil && !errors.Is(err, carrier.ErrNotFound) {
		return err
	}
	return nil
}

// deleteReleased is the last step of a release: the record (at rev) is
// deleted and forwarding registrations pointing at it are removed.
func (s *Service) deleteReleased(ctx context.Context, rec numberRecord, rev uint64) error {
	key := numberKey(rec.PhoneNumber)
	irev := s.indexStampOf(ctx, indexNumbers, rec.WorkspaceID, key)
	if err := s.st.Numbers.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
		if !isRevisionConflict(err) {
			return storeErr("release number", err)
		}
		// Only a twin finishing the same release can have changed it.
		if _, gerr := s.st.Numbers.Get(ctx, key); !errors.Is(gerr, jetstream.ErrKeyNotFound) {
			return errorf(ErrConflict, "the number changed while it was being released; retry")
		}
	}
	s.indexRemove(ctx, indexNumbers, rec.WorkspaceID, key, irev)
	p := Principal{Workspace: rec.WorkspaceID}
	fwds, _ := s.ListForwarding(ctx, p)
	for _, f := range fwds {
		if f.GatewayNumber == rec.PhoneNumber {
			_ = s.DeleteForwarding(ctx, p, f.BusinessNumber)
		}
	}
	s.log.Info("provisioning: number released", "workspace", rec.WorkspaceID, "number", phone.Mask(rec.PhoneNumber), "origin", rec.Origin)
	return nil
}

func isRevisionConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)
}

// orderReleaser is implemented by carriers whose orders can outlive Buy (Telnyx).
type orderReleaser interface {
	ReleaseOrder(ctx context.Context, orderID string) error
}

type unwrapper interface{ Unwrap() carrier.Carrier }

// undoBuy gives back a number whose purchase timed out or failed in
// transit, in case the carrier completed it after all. It retries for a
// few minutes and logs loudly if it cannot.
func (s *Service) undoBuy(c carrier.Carrier, e164 string, cause error) {
	var pending *telnyx.PendingOrderError
	isPending := errors.As(cause, &pending)
	base := c
	for {
		u, ok := base.(unwrapper)
		if !ok {
			break
		}
		base = u.Unwrap()
	}
	delay := 2 * time.Second
	for attempt := 0; attempt < 8; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var err error
		if or, ok := base.(orderReleaser); ok && isPending {
			err = or.ReleaseOrder(ctx, pending.OrderID)
		} else {
			err = c.Release(ctx, e164)
			if errors.Is(err, carrier.ErrNotFound) {
				err = nil // never reached the account
			}
		}
		cancel()
		if err == nil {
			s.log.Info("provisioning: undid a failed purchase at the carrier", "number", phone.Mask(e164), "carrier", c.Name())
			return
		}
		time.Sleep(delay)
		delay *= 2
	}
	s.log.Error("provisioning: a failed purchase may still hold the number at the carrier; release it there", "number", phone.Mask(e164), "carrier", c.Name())
}
