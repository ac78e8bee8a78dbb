package sip

import (
	"bytes"
	"net/netip"
	"sync"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/sip/transport"
)

// The transport layer is its own package (gateway/sip/transport); these
// are the names the proxy uses of it, and the proxy's side of its Handler.

type (
	peer       = transport.Peer
	proto      = transport.Proto
	streamConn = transport.Conn
	// DNSConfig is the resolver of the SIP edge (`sip.dns`).
	DNSConfig = transport.DNSConfig
)

const (
	protoUDP = transport.UDP
	protoTCP = transport.TCP
	protoTLS = transport.TLS

	resolveCached = transport.ResolveCached
	resolveLast   = transport.ResolveLast
)

var (
	errPending    = transport.ErrPending
	errNeedLookup = transport.ErrNeedLookup
	errBusy       = transport.ErrBusy

	isResolveErr    = transport.IsResolveErr
	stageOf         = transport.StageOf
	uriProto        = transport.URIProto
	writeHeaderLine = transport.WriteHeaderLine
)

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// edge is the Server as the transport's Handler: the transport calls the
// proxy only through it.
type edge Server

var _ transport.Handler = (*edge)(nil)

func (e *edge) AllowedSource(a netip.Addr) bool { return (*Server)(e).allowedSource(a) }

func (e *edge) RefuseSource(data []byte, from peer) { (*Server)(e).refuseSource(data, from) }

func (e *edge) HandleDatagram(data []byte, from peer) { (*Server)(e).handleDatagram(data, from) }

func (e *edge) HandleMessage(m sip.Message, from peer) { (*Server)(e).handleMessage(m, from) }
