package provisioning

import (
	"context"
	"crypto/md5" //nolint:gosec // RFC 2617/7616 digest HA1: the hash is the protocol's, not our choice
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"net/netip"
	"sort"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/routing"
)

// DefaultSIPRealm is the digest realm of agents' SIP credentials when the
// service is given none (Options.SIPRealm).
const DefaultSIPRealm = "callgate"

// Bounds of agents' SIP credentials and source ranges.
const (
	MaxSIPCredentialsPerAgent = 10
	MaxSourceCIDRs            = 20
	sipPasswordLen            = 32
)

// SIPCredential is an agent's SIP digest credential as the API lists it:
// never the password or its hashes.
type SIPCredential struct {
	Username  string    `json:"username"`
	Realm     string    `json:"realm"`
	AgentID   string    `json:"agent_id"`
	CreatedAt time.Time `json:"created_at"`
}

// NewSIPCredential is a credential just created: the password is shown
// this once.
type NewSIPCredential struct {
	Username  string    `json:"username"`
	Password  string    `json:"password"`
	Realm     string    `json:"realm"`
	CreatedAt time.Time `json:"created_at"`
}

// sipCredentialRecord is how a credential is stored (bucket
// callgate_sip_credentials, key = username): HA1 hashes only.
type sipCredentialRecord struct {
	Username  string    `json:"username"`
	Workspace string    `json:"workspace"`
	AgentID   string    `json:"agent_id"`
	Realm     string    `json:"realm"`
	HA1MD5    string    `json:"ha1_md5"`
	HA1SHA256 string    `json:"ha1_sha256"`
	CreatedAt time.Time `json:"created_at"`
}

func (s *Service) sipRealm() string {
	if s.opts.SIPRealm != "" {
		return s.opts.SIPRealm
	}
	return DefaultSIPRealm
}

// HA1 returns the hex MD5 and SHA-256 of username:realm:password (RFC
// 2617 3.2.2.2, RFC 7616 3.4.2).
func HA1(username, realm, password string) (md5hex, sha256hex string) {
	in := []byte(username + ":" + realm + ":" + password)
	m := md5.Sum(in) //nolint:gosec
	h := sha256.Sum256(in)
	return hex.EncodeToString(m[:]), hex.EncodeToString(h[:])
}

const passwordAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"

// randomPassword returns n characters from passwordAlphabet (about 5.8
// bits each: 32 characters hold 187 bits).
func randomPassword(n int) string {
	b := make([]byte, n)
	max := big.NewInt(int64(len(passwordAlphabet)))
	for i := range b {
		k, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(err) // crypto/rand never fails on Linux
		}
		b[i] = passwordAlphabet[k.Int64()]
	}
	return string(b)
}

// checkSourceCIDRs validates an agent's source ranges and returns them in
// canonical form (masked prefix; a bare address is a /32 or /128).
func checkSourceCIDRs(v *ValidationError, cidrs []string) []string {
	if len(cidrs) == 0 {
		return nil
	}
	if len(cidrs) > MaxSourceCIDRs {
		v.Add("source_cidrs", "at most %d ranges", MaxSourceCIDRs)
		return nil
	}
	out := make([]string, 0, len(cidrs))
	seen := map[string]bool{}
	for i, c := range cidrs {
		f := "source_cidrs[" + strconv.Itoa(i) + "]"
		var p netip.Prefix
		var err error
		if a, aerr := netip.ParseAddr(c); aerr == nil {
			if a.Zone() != "" {
				v.Add(f, "must not hold a zone")
				continue
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		} else if p, err = netip.ParsePrefix(c); err != nil {
			v.Add(f, "%q is not a CIDR range such as 203.0.113.0/24 or 2001:db8::/32", clipString(c, 60))
			continue
		}
		s := p.Masked().String()
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// CreateSIPCredential issues a new SIP digest credential for an agent of
// the workspace. The username is claimed with a KV create, so it is
// unique across every node sharing the store.
func (s *Service) CreateSIPCredential(ctx context.Context, p Principal, agentID string) (NewSIPCredential, error) {
	if !ValidID(agentID) {
		return NewSIPCredential{}, errorf(ErrNotFound, "agent %q not found", agentID)
	}
	if err := s.credentialAgent(ctx, p.Workspace, agentID); err != nil {
		return NewSIPCredential{}, err
	}
	have, err := s.listSIPCredentials(ctx, p.Workspace, agentID)
	if err != nil {
		return NewSIPCredential{}, err
	}
	if len(have) >= MaxSIPCredentialsPerAgent {
		return NewSIPCredential{}, errorf(ErrConflict, "agent %q already has %d SIP credentials (the most); revoke one first", agentID, len(have))
	}
	realm := s.sipRealm()
	password := randomPassword(sipPasswordLen)
	now := s.now().UTC()
	for attempt := 0; attempt < 5; attempt++ {
		username := "ag_" + randomToken("")[:20]
		if s.drawUsername != nil {
			username = s.drawUsername()
		}
		md5h, shah := HA1(username, realm, password)
		rec := sipCredentialRecord{Username: username, Workspace: p.Workspace, AgentID: agentID, Realm: realm, HA1MD5: md5h, HA1SHA256: shah, CreatedAt: now}
		b, _ := json.Marshal(rec)
		rev, err := s.st.SIPCredentials.Create(ctx, username, b)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // 80 random bits taken: draw again
			}
			return NewSIPCredential{}, storeErr("create SIP credential", err)
		}
		// The agent may have been deleted meanwhile: its delete revokes
		// the credentials it finds, and this one may have come too late.
		if err := s.credentialAgent(ctx, p.Workspace, agentID); err != nil {
			_ = s.st.SIPCredentials.Delete(context.WithoutCancel(ctx), username, jetstream.LastRevision(rev))
			return NewSIPCredential{}, err
		}
		return NewSIPCredential{Username: username, Password: password, Realm: realm, CreatedAt: now}, nil
	}
	return NewSIPCredential{}, errorf(ErrConflict, "could not draw a free username; retry")
}

// credentialAgent checks that the agent exists and is not being deleted.
func (s *Service) credentialAgent(ctx context.Context, ws, id string) error {
	var a Agent
	if _, err := getJSON(ctx, s.st.Agents, agentKey(ws, id), &a); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return errorf(ErrNotFound, "agent %q not found", id)
		}
		return storeErr("get agent", err)
	}
	if a.DeletingAt != nil {
		return errorf(ErrConflict, "agent %q is being deleted", id)
	}
	return nil
}

// ListSIPCredentials lists an agent's SIP credentials (no secrets).
func (s *Service) ListSIPCredentials(ctx context.Context, p Principal, agentID string) ([]SIPCredential, error) {
	if _, err := s.GetAgent(ctx, p, agentID); err != nil {
		return nil, err
	}
	return s.listSIPCredentials(ctx, p.Workspace, agentID)
}

func (s *Service) listSIPCredentials(ctx context.Context, ws, agentID string) ([]SIPCredential, error) {
	out := []SIPCredential{}
	err := scanJSON(ctx, s, s.st.SIPCredentials, func(_ string, r sipCredentialRecord, _ uint64) {
		if r.Workspace == ws && r.AgentID == agentID {
			out = append(out, SIPCredential{Username: r.Username, Realm: r.Realm, AgentID: r.AgentID, CreatedAt: r.CreatedAt})
		}
	})
	if err != nil {
		return nil, storeErr("list SIP credentials", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].Username < out[j].Username
	})
	return out, nil
}

// RevokeSIPCredential deletes one of the agent's credentials; 404 when
// the username is not this agent's.
func (s *Service) RevokeSIPCredential(ctx context.Context, p Principal, agentID, username string) error {
	notFound := errorf(ErrNotFound, "SIP credential %q of agent %q not found", clipString(username, 80), agentID)
	if !ValidID(agentID) || !ValidID(username) {
		return notFound
	}
	var rec sipCredentialRecord
	rev, err := getJSON(ctx, s.st.SIPCredentials, username, &rec)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return notFound
		}
		return storeErr("revoke SIP credential", err)
	}
	if rec.Workspace != p.Workspace || rec.AgentID != agentID {
		return notFound
	}
	if err := s.st.SIPCredentials.Delete(ctx, username, jetstream.LastRevision(rev)); err != nil {
		if isRevisionConflict(err) {
			return notFound // revoked meanwhile
		}
		return storeErr("revoke SIP credential", err)
	}
	return nil
}

// revokeAgentCredentials deletes every credential of a deleted agent.
func (s *Service) revokeAgentCredentials(ctx context.Context, ws, agentID string) error {
	var keys []string
	err := scanJSON(ctx, s, s.st.SIPCredentials, func(key string, r sipCredentialRecord, _ uint64) {
		if r.Workspace == ws && r.AgentID == agentID {
			keys = append(keys, key)
		}
	})
	if err != nil {
		return storeErr("revoke SIP credentials", err)
	}
	for _, k := range keys {
		if err := s.st.SIPCredentials.Delete(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return storeErr("revoke SIP credentials", err)
		}
	}
	return nil
}

// decodeSIPCredential is the data plane's view of a stored credential.
func decodeSIPCredential(value []byte) (routing.SIPCredential, bool) {
	var r sipCredentialRecord
	if json.Unmarshal(value, &r) != nil || r.Username == "" {
		return routing.SIPCredential{}, false
	}
	return routing.SIPCredential{Username: r.Username, Workspace: r.Workspace, AgentID: r.AgentID, Realm: r.Realm, HA1MD5: r.HA1MD5, HA1SHA256: r.HA1SHA256}, true
}
