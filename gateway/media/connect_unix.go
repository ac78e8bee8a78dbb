//go:build unix && !linux

package media

import (
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

func connectFD(c *net.UDPConn, to netip.AddrPort) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var sa unix.Sockaddr
	if a := to.Addr(); a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(to.Port()), Addr: a.As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(to.Port()), Addr: a.As16()}
	}
	var cerr error
	if err := rc.Control(func(fd uintptr) { cerr = unix.Connect(int(fd), sa) }); err != nil {
		return err
	}
	return cerr
}

// disconnectFD dissolves the association (connect to AF_UNSPEC).
func disconnectFD(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		var sa unix.RawSockaddr
		sa.Family = unix.AF_UNSPEC
		unix.RawSyscall(unix.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	})
}
