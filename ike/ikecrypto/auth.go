package ikecrypto

import "crypto/hmac"

// keyPad is the fixed string of RFC 7296 section 2.15.
const keyPad = "Key Pad for IKEv2"

// SignedOctets returns the octets an AUTH payload covers (RFC 7296 section
// 2.15): the sender's first message (IKE_SA_INIT request or response) as
// sent, the peer's nonce data, and prf(SK_px, body of the sender's ID
// payload), where SK_px is SK_pi for the initiator and SK_pr for the
// responder.
func SignedOctets(p *PRF, realMessage, peerNonce, skp, idBody []byte) []byte {
	mac := p.Sum(skp, idBody)
	out := make([]byte, 0, len(realMessage)+len(peerNonce)+len(mac))
	return append(append(append(out, realMessage...), peerNonce...), mac...)
}

// PSKAuth returns the shared-key AUTH data
// prf(prf(Shared Secret, "Key Pad for IKEv2"), signedOctets).
func PSKAuth(p *PRF, psk, signedOctets []byte) []byte {
	return p.Sum(p.Sum(psk, []byte(keyPad)), signedOctets)
}

// VerifyPSKAuth reports whether got is the shared-key AUTH data for
// signedOctets, comparing in constant time.
func VerifyPSKAuth(p *PRF, psk, signedOctets, got []byte) bool {
	return hmac.Equal(PSKAuth(p, psk, signedOctets), got)
}
