package media

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// Once closed, a socket never touches its old descriptor number: Linux
// hands the lowest free number to the next socket, which may be another
// call's. A late disconnect (a re-offer racing the call's end) or connect
// on the closed socket must leave that new socket connected.
func TestClosedSockLeavesReusedDescriptorAlone(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	port := testPortNext
	testPortNext += 40
	old, err := openSock(lo, port)
	if err != nil {
		t.Fatal(err)
	}
	old.connect(netip.MustParseAddrPort("127.0.0.1:9"))
	old.close()
	next, err := openSock(lo, port+2)
	if err != nil {
		t.Fatal(err)
	}
	defer next.close()
	if next.fd != old.fd {
		t.Skipf("descriptor %d not reused (got %d): nothing to check", old.fd, next.fd)
	}
	peer := netip.MustParseAddrPort("127.0.0.1:7")
	next.connect(peer)
	if p := next.peer.Load(); p == nil || *p != peer {
		t.Fatal("new socket not connected")
	}
	old.disconnect()
	old.connect(netip.MustParseAddrPort("127.0.0.1:11"))
	old.close()
	sa, err := unix.Getpeername(next.fd)
	if err != nil {
		t.Fatalf("the new socket lost its peer: %v", err)
	}
	if in4, ok := sa.(*unix.SockaddrInet4); !ok || in4.Port != 7 {
		t.Fatalf("the new socket's peer is now %+v, want port 7", sa)
	}
	if err := unix.Close(next.fd); err != nil {
		t.Fatalf("the new socket's descriptor was closed by the old socket: %v", err)
	}
	next.closed = true // closed above
}
