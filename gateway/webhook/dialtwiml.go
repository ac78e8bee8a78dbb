package webhook

// DialSIPTwiML is the TwiML document that connects an answered call to a
// SIP URI, with headers passed as SIP URI headers: the same <Dial><Sip>
// the voice webhook answers inbound calls with (used by the REST call
// placer for outbound calls through Twilio's Calls API).
func DialSIPTwiML(uri string, headers []SIPHeader, ringSeconds int) []byte {
	hs := make([]header, len(headers))
	for i, h := range headers {
		hs[i] = header{h.Name, h.Value}
	}
	d := dialDoc{ringSeconds: ringSeconds, target: sipTarget(nil, uri, "", hs)}
	return d.append(nil)
}
