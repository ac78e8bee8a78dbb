package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// Dual stack: besides the listeners of Config.Addr (IPv4 when Addr6 is
// set), a second set on Config.Addr6 (IPv6 only: IPV6_V6ONLY, so that
// 0.0.0.0 and [::] can share a port). A datagram to an IPv6 address
// leaves through the IPv6 socket, to an IPv4 one through the IPv4
// socket; TCP/TLS dials take the family of the address dialled.

// v6 is the IPv6 listener set (nil: none).
type v6 struct {
	udp                       *udpSock
	tcpLn, tlsLn              net.Listener
	udpAddr, tcpAddr, tlsAddr netip.AddrPort
}

// HasV6 reports whether a separate IPv6 listener set (Config.Addr6) is up.
func (t *Transport) HasV6() bool { return t.six != nil }

// UDPAddr6 is the bound IPv6 UDP address (zero without Addr6).
func (t *Transport) UDPAddr6() netip.AddrPort {
	if t.six == nil {
		return netip.AddrPort{}
	}
	return t.six.udpAddr
}

// TCPAddr6 is the bound IPv6 TCP address (zero without Addr6).
func (t *Transport) TCPAddr6() netip.AddrPort {
	if t.six == nil {
		return netip.AddrPort{}
	}
	return t.six.tcpAddr
}

// TLSAddr6 is the bound IPv6 TLS address (zero without TLSAddr6).
func (t *Transport) TLSAddr6() netip.AddrPort {
	if t.six == nil || t.six.tlsLn == nil {
		return netip.AddrPort{}
	}
	return t.six.tlsAddr
}

// HasTLS6 reports whether an IPv6 TLS listener is up.
func (t *Transport) HasTLS6() bool { return t.six != nil && t.six.tlsLn != nil }

// IsV6 reports whether a is an IPv6 address (not IPv4-mapped).
func IsV6(a netip.Addr) bool { return a.Is6() && !a.Is4In6() }

// udpFor is the socket a datagram to a leaves through.
func (t *Transport) udpFor(a netip.Addr) *udpSock {
	if t.six != nil && IsV6(a) {
		return t.six.udp
	}
	return t.udp
}

// primaryNets are the networks the Addr listeners bind: IPv4 only when
// an IPv6 set is configured (0.0.0.0 with "udp" would be dual stack in Go
// and take the port from [::]).
func primaryNets(cfg Config) (udp, tcp string) {
	if cfg.Addr6 != "" {
		return "udp4", "tcp4"
	}
	return "udp", "tcp"
}

// listen6 binds the IPv6 set (cfg.Addr6, cfg.TLSAddr6); t.tlsConf is set
// when TLS is on.
func (t *Transport) listen6(cfg Config) error {
	if cfg.Addr6 == "" {
		return nil
	}
	attempts := 1
	if ap, err := netip.ParseAddrPort(cfg.Addr6); err == nil && ap.Port() == 0 {
		attempts = 20
	}
	six := &v6{}
	var err error
	for i := 0; i < attempts; i++ {
		var pc net.PacketConn
		pc, err = net.ListenPacket("udp6", cfg.Addr6)
		if err != nil {
			err = fmt.Errorf("sip: listen udp %s: %w", cfg.Addr6, err)
			break
		}
		six.udp = newUDPSock(pc.(*net.UDPConn))
		six.udp.setFail(t.heldFailed)
		six.udpAddr = addrPortOf(six.udp.LocalAddr())
		six.tcpLn, err = net.Listen("tcp6", six.udpAddr.String())
		if err == nil {
			break
		}
		six.udp.Close()
		err = fmt.Errorf("sip: listen tcp %s: %w", six.udpAddr, err)
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	if err != nil {
		return err
	}
	_ = six.udp.SetReadBuffer(4 << 20)
	_ = six.udp.SetWriteBuffer(4 << 20)
	six.tcpAddr = addrPortOf(six.tcpLn.Addr())
	if cfg.TLSAddr6 != "" {
		if t.tlsConf == nil {
			cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
			if err != nil {
				six.udp.Close()
				six.tcpLn.Close()
				return fmt.Errorf("sip: tls_cert/tls_key: %w", err)
			}
			t.tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		}
		ln, err := net.Listen("tcp6", cfg.TLSAddr6)
		if err != nil {
			six.udp.Close()
			six.tcpLn.Close()
			return fmt.Errorf("sip: listen tls %s: %w", cfg.TLSAddr6, err)
		}
		six.tlsLn = tls.NewListener(ln, t.tlsConf)
		six.tlsAddr = addrPortOf(ln.Addr())
	}
	t.six = six
	return nil
}

// serve6 starts the IPv6 set's read loops and accept loops.
func (t *Transport) serve6(workers int) {
	if t.six == nil {
		return
	}
	for i := 0; i < workers; i++ {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.readUDPOn(t.six.udp)
		}()
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.accept(t.six.tcpLn, TCP)
	}()
	if t.six.tlsLn != nil {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.accept(t.six.tlsLn, TLS)
		}()
	}
}

// close6 closes the IPv6 listeners.
func (t *Transport) close6() {
	if t.six == nil {
		return
	}
	t.six.udp.Close()
	t.six.tcpLn.Close()
	if t.six.tlsLn != nil {
		t.six.tlsLn.Close()
	}
}
