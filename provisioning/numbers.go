package provisioning

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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

// idempotencyRecord remembers a purchase's outcome under its key.
type idempotencyRecord struct {
	RequestHash string       `json:"request_hash"`
	State       string       `json:"state"` // pending, done
	Number      *Number      `json:"number,omitempty"`
	ErrKind     string       `json:"err_kind,omitempty"`
	ErrDetail   string       `json:"err_detail,omitempty"`
	ErrFields   []FieldError `json:"err_fields,omitempty"`
}

// Purchase buys a number: claim it (KV create: fails if anyone owns it),
// charge the month (ledger CAS: fails if credits are short), buy at the
// carrier, commit. On a carrier failure the charge is refunded and the
// claim released. The same idempotency key returns the first outcome and
// charges once.
func (s *Service) Purchase(ctx context.Context, p Principal, r PurchaseRequest, idemKey string) (Number, error) {
	if idemKey == "" {
		n, err := s.purchase(ctx, p, r)
		s.m.op("purchase", resultOf(err))
		return n, err
	}
	if len(idemKey) > 255 {
		return Number{}, invalid("Idempotency-Key", "must be at most 255 characters")
	}
	reqHash := sha256.Sum256([]byte(r.PhoneNumber + "|" + r.Carrier + "|" + r.IntegrationID + "|" + r.AgentID))
	kh := sha256.Sum256([]byte(idemKey))
	key := p.Workspace + "." + hex.EncodeToString(kh[:16])
	rec := idempotencyRecord{RequestHash: hex.EncodeToString(reqHash[:]), State: "pending"}
	b, _ := json.Marshal(rec)
	rev, err := s.st.Idempotency.Create(ctx, key, b)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return Number{}, storeErr("idempotency", err)
		}
		var prev idempotencyRecord
		for i := 0; i < 100; i++ { // wait briefly for a concurrent twin to finish
			if _, err := getJSON(ctx, s.st.Idempotency, key, &prev); err != nil {
				return Number{}, storeErr("idempotency", err)
			}
			if prev.State == "done" {
				break
			}
			select {
			case <-ctx.Done():
				return Number{}, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		if prev.RequestHash != rec.RequestHash {
			return Number{}, errorf(ErrConflict, "this Idempotency-Key was used for a different request")
		}
		if prev.State != "done" {
			return Number{}, errorf(ErrConflict, "a request with this Idempotency-Key is still in progress; retry later")
		}
		return replay(prev)
	}
	n, perr := s.purchase(ctx, p, r)
	s.m.op("purchase", resultOf(perr))
	if errors.Is(perr, ErrUnavailable) || isCarrierTransient(perr) || errors.Is(perr, context.Canceled) {
		// Nothing happened that the client cannot safely retry.
		_ = s.st.Idempotency.Delete(context.WithoutCancel(ctx), key, jetstream.LastRevision(rev))
		return n, perr
	}
	done := idempotencyRecord{RequestHash: rec.RequestHash, State: "done"}
	if perr == nil {
		done.Number = &n
	} else {
		done.ErrKind, done.ErrDetail = kindName(perr), perr.Error()
		var ve *ValidationError
		if errors.As(perr, &ve) {
			done.ErrFields = ve.Fields
		}
	}
	b, _ = json.Marshal(done)
	if _, err := s.st.Idempotency.Update(context.WithoutCancel(ctx), key, b, rev); err != nil {
		s.log.Warn("provisioning: idempotency record not saved", "err", err)
	}
	return n, perr
}

func replay(r idempotencyRecord) (Number, error) {
	if r.Number != nil {
		return *r.Number, nil
	}
	if len(r.ErrFields) > 0 {
		return Number{}, &ValidationError{Fields: r.ErrFields}
	}
	for _, k := range []error{ErrNotFound, ErrConflict, ErrInsufficientCredits, ErrInvalid, ErrForbidden} {
		if k.Error() == r.ErrKind {
			return Number{}, &kindError{kind: k, detail: r.ErrDetail}
		}
	}
	return Number{}, errors.New(r.ErrDetail)
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

func (s *Service) purchase(ctx context.Context, p Principal, r PurchaseRequest) (Number, error) {
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
		WorkspaceID: p.Workspace, ClaimedAt: now,
	}
	// 1. Claim.
	b, _ := json.Marshal(rec)
	rev, err := s.st.Numbers.Create(ctx, numberKey(e164), b)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Number{}, errorf(ErrConflict, "%s is no longer available: it may have been purchased by another user", e164)
		}
		return Number{}, storeErr("claim number", err)
	}
	bg := context.WithoutCancel(ctx)
	unclaim := func() {
		if err := s.st.Numbers.Delete(bg, numberKey(e164), jetstream.LastRevision(rev)); err != nil {
			s.log.Error("provisioning: claim not released", "number", phone.Mask(e164), "err", err)
		}
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
	if err != nil {
		return rec, 0, invalid("phone_number", "%v", err)
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

// allNumbers reads every number record (all workspaces).
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

// ListNumbers returns the workspace's numbers sorted by number.
func (s *Service) ListNumbers(ctx context.Context, p Principal) ([]Number, error) {
	recs, _, err := s.allNumbers(ctx)
	if err != nil {
		return nil, err
	}
	out := []Number{}
	for _, r := range recs {
		if r.WorkspaceID == p.Workspace && r.Status != StatusPending {
			out = append(out, r.number())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PhoneNumber < out[j].PhoneNumber })
	return out, nil
}

// NumberPatch changes a number. Nil fields are left alone; an empty
// string clears the field.
type NumberPatch struct {
	AgentID     *string `json:"agent_id"`
	VoiceRegion *string `json:"voice_region"`
}

var twilioRegions = map[string]bool{"us1": true, "ie1": true, "au1": true}

// UpdateNumber assigns a number to an agent and/or sets its voice region.
func (s *Service) UpdateNumber(ctx context.Context, p Principal, e164 string, patch NumberPatch) (Number, error) {
	if patch.AgentID == nil && patch.VoiceRegion == nil {
		return Number{}, invalid("body", "nothing to change: give agent_id and/or voice_region")
	}
	for attempt := 0; attempt < 20; attempt++ {
		rec, rev, err := s.getNumber(ctx, p, e164)
		if err != nil {
			return Number{}, err
		}
		if patch.AgentID != nil {
			id := *patch.AgentID
			if id != "" {
				if !ValidID(id) {
					return Number{}, invalid("agent_id", "not a valid agent id")
				}
				if _, err := s.GetAgent(ctx, p, id); err != nil {
					if errors.Is(err, ErrNotFound) {
						return Number{}, invalid("agent_id", "agent %q does not exist in this workspace", id)
					}
					return Number{}, err
				}
			}
			rec.AgentID = id
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
		if _, err := s.st.Numbers.Update(ctx, numberKey(rec.PhoneNumber), b, rev); err != nil {
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			return Number{}, storeErr("update number", err)
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

func (s *Service) release(ctx context.Context, p Principal, e164 string) error {
	rec, rev, err := s.getNumber(ctx, p, e164)
	if err != nil {
		return err
	}
	c, err := s.carrierFor(ctx, p.Workspace, rec.Carrier, rec.IntegrationID)
	if err != nil {
		return err
	}
	if rec.Origin == routing.OriginImported {
		if rec.WebhookMode == WebhookFullControl && rec.Previous != nil {
			if _, err := c.Configure(ctx, rec.PhoneNumber, *rec.Previous); err != nil {
				return err
			}
		}
	} else if err := c.Release(ctx, rec.PhoneNumber); err != nil && !errors.Is(err, carrier.ErrNotFound) {
		return err
	}
	if err := s.st.Numbers.Delete(ctx, numberKey(rec.PhoneNumber), jetstream.LastRevision(rev)); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			return errorf(ErrConflict, "the number changed while it was being released; retry")
		}
		return storeErr("release number", err)
	}
	// Remove forwarding registrations that pointed at it.
	fwds, _ := s.ListForwarding(ctx, p)
	for _, f := range fwds {
		if f.GatewayNumber == rec.PhoneNumber {
			_ = s.DeleteForwarding(ctx, p, f.BusinessNumber)
		}
	}
	s.log.Info("provisioning: number released", "workspace", p.Workspace, "number", phone.Mask(rec.PhoneNumber), "origin", rec.Origin)
	return nil
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
