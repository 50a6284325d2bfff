package ike

import (
	"crypto"
	"fmt"

	"github.com/espy-dpi/espy/ike/ikecrypto"
	"github.com/espy-dpi/espy/ike/message"
)

// SignatureAuth says which AUTH methods this side signs with and accepts
// when it authenticates with certificates: the Digital Signature method
// of RFC 7427 (14) or the legacy methods that predate it, RSA (1, PKCS#1
// v1.5 with SHA-1) and ECDSA (9–11, RFC 4754).
type SignatureAuth uint8

// Signature AUTH policies.
const (
	// SignatureAuthAuto, the default, signs with method 14 when the peer
	// sent SIGNATURE_HASH_ALGORITHMS in IKE_SA_INIT and otherwise, as
	// RFC 7427 section 4 implies, with the key's legacy method: 9–11 for
	// ECDSA keys, 1 for RSA keys only with AllowSHA1Auth (else still 14),
	// none for Ed25519 (14, RFC 8420). It accepts 14, 9–11, and 1 with
	// AllowSHA1Auth.
	SignatureAuthAuto SignatureAuth = iota
	// SignatureAuthRFC7427 signs and accepts method 14 only.
	SignatureAuthRFC7427
	// SignatureAuthLegacy always signs with the key's legacy method (an
	// RSA key then needs AllowSHA1Auth, an Ed25519 key cannot be used) and
	// accepts what SignatureAuthAuto does.
	SignatureAuthLegacy
)

// signMethodLocked returns the AUTH method to sign with key: 14 or a
// legacy one, per the policy and what the peer announced.
func (sa *IKESA) signMethodLocked(key crypto.Signer) message.AuthMethod {
	c := sa.cfg
	if c.SignatureAuth == SignatureAuthRFC7427 || c.SignatureAuth == SignatureAuthAuto && sa.peerAuth.sigHash {
		return message.AuthDigitalSig
	}
	m, err := ikecrypto.LegacyMethod(key.Public())
	if err != nil || m == message.AuthRSASig && !c.AllowSHA1Auth {
		// Only with SignatureAuthAuto (validate refuses the rest): a
		// peer without the notification may still verify method 14.
		sa.log.Warn("ike: the peer did not announce RFC 7427 signatures, but the key has no legacy AUTH method allowed; signing with method 14", "key", fmt.Sprintf("%T", key.Public()))
		return message.AuthDigitalSig
	}
	return m
}

// acceptMethod reports whether the policy accepts the peer's signature
// AUTH method m.
func (c *Config) acceptMethod(m message.AuthMethod) bool {
	switch {
	case m == message.AuthDigitalSig:
		return true
	case c.SignatureAuth == SignatureAuthRFC7427:
		return false
	case m == message.AuthRSASig:
		return c.AllowSHA1Auth
	}
	return ikecrypto.IsLegacyMethod(m)
}

// peerAuth is what the peer said about authentication: in IKE_SA_INIT
// whether it verifies RFC 7427 signatures, and its CERTREQ; and the AUTH
// methods both ends used.
type peerAuth struct {
	sigHash       bool     // SIGNATURE_HASH_ALGORITHMS received
	certRequested bool     // a CERTREQ received (RFC 7296 3.7)
	cas           []caHash // the CAs it named
	local, peer   message.AuthMethod
}

// AuthMethods returns the AUTH methods this side and the peer
// authenticated with (0 before IKE_AUTH completed).
func (sa *IKESA) AuthMethods() (local, peer message.AuthMethod) {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return sa.peerAuth.local, sa.peerAuth.peer
}
