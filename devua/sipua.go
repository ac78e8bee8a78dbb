package devua

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// sipUA is a sipgo user agent serving UDP on one socket and sending from
// it (so that replies and in-dialog requests come back to the same port).
type sipUA struct {
	ua   *sipgo.UserAgent
	srv  *sipgo.Server
	cli  *sipgo.Client
	pc   net.PacketConn
	addr *net.UDPAddr
}

func newSIPUA(listen, user string) (*sipUA, error) {
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		return nil, fmt.Errorf("devua: sip listen %s: %w", listen, err)
	}
	addr := pc.LocalAddr().(*net.UDPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	u := &sipUA{pc: pc, addr: addr}
	u.ua, err = sipgo.NewUA(sipgo.WithUserAgent("callgate-demo"), sipgo.WithUserAgentHostname(host))
	if err == nil {
		u.srv, err = sipgo.NewServer(u.ua)
	}
	if err == nil {
		u.cli, err = sipgo.NewClient(u.ua, sipgo.WithClientConnectionAddr(addr.String()), sipgo.WithClientHostname(host))
	}
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("devua: sip: %w", err)
	}
	return u, nil
}

// serve starts serving and waits (up to 5 s) until the socket is in the
// transport layer, so that requests sent from it leave from it.
func (u *sipUA) serve() error {
	go func() { _ = u.srv.ServeUDP(u.pc) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := u.ua.TransportLayer().GetConnection("udp", u.addr.String()); err == nil && c != nil {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("devua: sip listener not ready after 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (u *sipUA) contact(user string) sip.ContactHeader {
	host := u.addr.IP.String()
	if u.addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: host, Port: u.addr.Port}}
}

func (u *sipUA) close() {
	u.ua.Close()
	u.pc.Close()
}

// callgateHeaders returns the X-Callgate-* headers of req as "name=value"
// (values cut at 80 characters: they are printed).
func callgateHeaders(req *sip.Request) []string {
	var out []string
	for _, h := range req.Headers() {
		if n := h.Name(); len(n) > 11 && strings.EqualFold(n[:11], "X-Callgate-") {
			v := h.Value()
			if len(v) > 80 {
				v = v[:80]
			}
			out = append(out, strings.ToLower(n)+"="+v)
		}
	}
	return out
}

// user returns the user part of a From/To header, or "-".
func user(uri *sip.Uri) string {
	if uri != nil && uri.User != "" {
		return uri.User
	}
	return "-"
}

func waitCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
