//go:build !unix

package media

import (
	"errors"
	"net"
	"net/netip"
)

func connectFD(*net.UDPConn, netip.AddrPort) error { return errors.New("not supported") }
func disconnectFD(*net.UDPConn)                    {}
