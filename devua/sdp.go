package devua

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// telephoneEvent is the RTP payload type offered for RFC 4733 events.
const telephoneEvent = 101

// maxSDP caps the SDP bodies the demo UAs parse.
const maxSDP = 8 << 10

// remoteMedia is what the demo UAs take from a peer's SDP.
type remoteMedia struct {
	addr      *net.UDPAddr
	codecs    []Codec // in the peer's order
	eventPT   int     // telephone-event payload type, -1 when not offered
	direction string  // sendrecv, sendonly, recvonly, inactive
}

// hold reports whether the peer asks us to stop sending (RFC 3264 §8.4:
// a=sendonly or a=inactive, or the old c=0.0.0.0).
func (m remoteMedia) hold() bool {
	return m.direction == "sendonly" || m.direction == "inactive" || m.addr.IP.IsUnspecified()
}

// ErrSDP is returned for an SDP body the demo UAs cannot use.
var ErrSDP = errors.New("devua: sdp")

func parseSDP(body []byte) (remoteMedia, error) {
	if len(body) == 0 || len(body) > maxSDP {
		return remoteMedia{}, fmt.Errorf("%w: body of %d bytes", ErrSDP, len(body))
	}
	var s sdp.SessionDescription
	if err := s.UnmarshalString(string(body)); err != nil {
		return remoteMedia{}, fmt.Errorf("%w: %v", ErrSDP, err)
	}
	for _, md := range s.MediaDescriptions {
		if md.MediaName.Media != "audio" || md.MediaName.Port.Value == 0 {
			continue
		}
		conn := md.ConnectionInformation
		if conn == nil {
			conn = s.ConnectionInformation
		}
		if conn == nil || conn.Address == nil {
			return remoteMedia{}, fmt.Errorf("%w: no c= line", ErrSDP)
		}
		ip := net.ParseIP(conn.Address.Address)
		if ip == nil {
			return remoteMedia{}, fmt.Errorf("%w: c= address %q", ErrSDP, conn.Address.Address)
		}
		m := remoteMedia{addr: &net.UDPAddr{IP: ip, Port: md.MediaName.Port.Value}, eventPT: -1, direction: "sendrecv"}
		for _, a := range append(s.Attributes, md.Attributes...) {
			switch a.Key {
			case "sendrecv", "sendonly", "recvonly", "inactive":
				m.direction = a.Key
			case "rtpmap":
				pt, enc, _ := strings.Cut(a.Value, " ")
				if n, err := strconv.Atoi(pt); err == nil && strings.HasPrefix(strings.ToLower(enc), "telephone-event/8000") {
					m.eventPT = n
				}
			}
		}
		for _, f := range md.MediaName.Formats {
			switch f {
			case "0":
				m.codecs = append(m.codecs, PCMU)
			case "8":
				m.codecs = append(m.codecs, PCMA)
			}
		}
		if len(m.codecs) == 0 {
			return remoteMedia{}, fmt.Errorf("%w: no PCMU or PCMA offered (%v)", ErrSDP, md.MediaName.Formats)
		}
		return m, nil
	}
	return remoteMedia{}, fmt.Errorf("%w: no audio stream", ErrSDP)
}

// buildSDP writes an offer or answer for one audio stream at addr with
// the codecs given (first preferred) and telephone-event when eventPT >= 0.
func buildSDP(addr *net.UDPAddr, sessID uint64, version uint64, codecs []Codec, eventPT int, direction string) []byte {
	var b strings.Builder
	ip := addr.IP.String()
	fmt.Fprintf(&b, "v=0\r\no=callgate-demo %d %d IN IP4 %s\r\ns=callgate demo\r\nc=IN IP4 %s\r\nt=0 0\r\n", sessID, version, ip, ip)
	fmt.Fprintf(&b, "m=audio %d RTP/AVP", addr.Port)
	for _, c := range codecs {
		fmt.Fprintf(&b, " %d", c.PayloadType)
	}
	if eventPT >= 0 {
		fmt.Fprintf(&b, " %d", eventPT)
	}
	b.WriteString("\r\n")
	for _, c := range codecs {
		fmt.Fprintf(&b, "a=rtpmap:%d %s/8000\r\n", c.PayloadType, c.Name)
	}
	if eventPT >= 0 {
		fmt.Fprintf(&b, "a=rtpmap:%d telephone-event/8000\r\na=fmtp:%d 0-16\r\n", eventPT, eventPT)
	}
	fmt.Fprintf(&b, "a=ptime:20\r\na=%s\r\n", direction)
	return []byte(b.String())
}

// answerDirection is our direction for a peer's.
func answerDirection(peer string) string {
	switch peer {
	case "sendonly":
		return "recvonly"
	case "recvonly":
		return "sendonly"
	case "inactive":
		return "inactive"
	}
	return "sendrecv"
}
