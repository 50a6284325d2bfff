package ike

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/espy-dpi/espy/ike/ikecrypto"
	"github.com/espy-dpi/espy/ike/message"
)

// maxPeerCerts bounds the CERT payloads taken from one message.
const maxPeerCerts = 8

// signatureHashNotify announces the RFC 7427 hash algorithms we verify;
// peers use the Digital Signature method only if both sides sent it.
func signatureHashNotify() *message.Notify {
	var d []byte
	for _, h := range ikecrypto.SignatureHashAlgorithms {
		d = binary.BigEndian.AppendUint16(d, h)
	}
	return &message.Notify{Kind: message.SIGNATURE_HASH_ALGORITHMS, Data: d}
}

// authPayloads returns this side's AUTH payload, preceded by its CERT
// payloads when it authenticates with a certificate. idBody is the body of
// the ID payload we send and signedFirst our first IKE_SA_INIT message.
func (sa *IKESA) authPayloadsLocked(signedFirst, peerNonce, skp, idBody []byte) ([]message.Payload, *message.Auth, error) {
	c := sa.cfg
	octets := ikecrypto.SignedOctets(sa.prf, signedFirst, peerNonce, skp, idBody)
	if len(c.chains) == 0 {
		sa.peerAuth.local = message.AuthSharedKeyMIC
		return nil, &message.Auth{Method: message.AuthSharedKeyMIC, Data: ikecrypto.PSKAuth(sa.prf, c.PSK, octets)}, nil
	}
	ch := c.chooseChain(sa.peerAuth.cas)
	method := sa.signMethodLocked(ch.key)
	var data []byte
	var err error
	if method == message.AuthDigitalSig {
		var scheme *ikecrypto.SignatureScheme
		if scheme, err = ikecrypto.DefaultScheme(ch.key.Public()); err != nil {
			return nil, nil, err
		}
		data, err = ikecrypto.SignAuth(ch.key, scheme, octets, sa.cfg.Rand)
	} else {
		data, err = ikecrypto.SignLegacy(ch.key, method, octets, sa.cfg.Rand)
	}
	if err != nil {
		return nil, nil, err
	}
	sa.peerAuth.local = method
	var certs []message.Payload
	if c.SendCert == CertSendAlways || c.SendCert == CertSendIfAsked && sa.peerAuth.certRequested {
		// Leaf first, then the intermediates (RFC 7296 3.6).
		for _, cert := range ch.send {
			certs = append(certs, &message.Cert{Encoding: message.CertX509Signature, Data: cert.Raw})
		}
	}
	return certs, &message.Auth{Method: method, Data: data}, nil
}

// verifyPeerLocked checks the peer's AUTH payload (and, for signatures, its
// certificate chain and that the certificate names the identity it
// claims). signedFirst is the peer's first IKE_SA_INIT message.
func (sa *IKESA) verifyPeerLocked(ps []message.Payload, id *message.ID, auth *message.Auth, signedFirst, ourNonce, skp []byte) error {
	c := sa.cfg
	octets := ikecrypto.SignedOctets(sa.prf, signedFirst, ourNonce, skp, id.Body())
	if c.rootPool == nil {
		if auth.Method != message.AuthSharedKeyMIC {
			return fmt.Errorf("%w: peer used auth method %d, we expect a pre-shared key", ErrAuthentication, auth.Method)
		}
		if !ikecrypto.VerifyPSKAuth(sa.prf, c.PSK, octets, auth.Data) {
			return fmt.Errorf("%w: pre-shared key AUTH does not verify", ErrAuthentication)
		}
		sa.peerAuth.peer = auth.Method
		return nil
	}
	if !c.acceptMethod(auth.Method) {
		why := "a signature method this policy accepts"
		if auth.Method == message.AuthRSASig {
			why = "no RSA with SHA-1 (method 1) without AllowSHA1Auth"
		}
		return fmt.Errorf("%w: peer used auth method %d, we expect %s", ErrAuthentication, auth.Method, why)
	}
	var chain []*x509.Certificate
	for _, p := range ps {
		cp, ok := p.(*message.Cert)
		if !ok {
			continue
		}
		if cp.Encoding != message.CertX509Signature {
			return fmt.Errorf("%w: certificate encoding %d", ErrAuthentication, cp.Encoding)
		}
		if len(chain) == maxPeerCerts {
			return fmt.Errorf("%w: more than %d certificates", ErrAuthentication, maxPeerCerts)
		}
		cert, err := x509.ParseCertificate(cp.Data)
		if err != nil {
			return fmt.Errorf("%w: peer certificate: %v", ErrAuthentication, err)
		}
		chain = append(chain, cert)
	}
	if len(chain) == 0 {
		return fmt.Errorf("%w: peer sent no certificate", ErrAuthentication)
	}
	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	leaf := chain[0]
	_, err := leaf.Verify(x509.VerifyOptions{Roots: c.rootPool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("%w: peer certificate: %v", ErrAuthentication, err)
	}
	if err := certNames(leaf, id); err != nil {
		return err
	}
	if auth.Method == message.AuthDigitalSig {
		_, err = ikecrypto.VerifyAuth(leaf.PublicKey, auth.Data, octets)
	} else {
		err = ikecrypto.VerifyLegacy(leaf.PublicKey, auth.Method, auth.Data, octets)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrAuthentication, err)
	}
	sa.peerAuth.peer = auth.Method
	return nil
}

// certNames checks that the certificate covers the identity of the ID
// payload (RFC 7296 3.5 leaves the binding to policy; this is the usual
// one: SAN entries, or the exact subject DN).
func certNames(cert *x509.Certificate, id *message.ID) error {
	switch id.IDType {
	case message.IDFQDN:
		if err := cert.VerifyHostname(string(id.Data)); err == nil {
			return nil
		}
	case message.IDRFC822Addr:
		for _, e := range cert.EmailAddresses {
			if e == string(id.Data) {
				return nil
			}
		}
	case message.IDIPv4Addr, message.IDIPv6Addr:
		for _, ip := range cert.IPAddresses {
			if ip.Equal(net.IP(id.Data)) {
				return nil
			}
		}
	case message.IDDERASN1DN:
		if bytes.Equal(cert.RawSubject, id.Data) {
			return nil
		}
	}
	return fmt.Errorf("%w: certificate does not name identity %v", ErrAuthentication, Identity{Type: id.IDType, Data: id.Data})
}

// errNoAuth is a sentinel for configurations that cannot authenticate.
var errNoAuth = errors.New("neither a pre-shared key nor a certificate and key")

// certReqPayload returns the CERTREQ asking for a certificate from cfg's
// root CAs (RFC 7296 3.7: SHA-1 hashes of their SubjectPublicKeyInfo), or
// nil when cfg expects a PSK.
func certReqPayload(cfg *Config) message.Payload {
	if len(cfg.certReq) == 0 {
		return nil
	}
	return &message.CertReq{Encoding: message.CertX509Signature, Authority: cfg.certReq}
}
