package ike

import (
	"crypto"
	"crypto/sha1"
	"crypto/x509"
	"fmt"

	"github.com/espy-dpi/espy/ike/ikecrypto"
	"github.com/espy-dpi/espy/ike/message"
)

// CertChain is one certificate chain of ours with its private key.
type CertChain struct {
	// Certificates are the leaf first, then the intermediates; a
	// self-signed root may end the list (it names the CA for CERTREQ
	// matching and is not sent).
	Certificates []*x509.Certificate
	PrivateKey   crypto.Signer
}

// maxCertReqCAs bounds the CA hashes taken from the peer's CERTREQ
// payloads; strongSwan names every CA it trusts, rarely more than a few.
const maxCertReqCAs = 64

// caHash is the SHA-1 hash of a CA's SubjectPublicKeyInfo, which names it
// in CERTREQ payloads (RFC 7296 3.7).
type caHash [sha1.Size]byte

// localChain is a validated CertChain: what we send and the CAs it chains
// to.
type localChain struct {
	send []*x509.Certificate // leaf, intermediates
	key  crypto.Signer
	cas  []caHash // every CA certificate in the chain, and the RootCAs entry that issued its last one
}

// prepareChain checks ch (the key signs for the leaf, espy can sign with
// it) and works out which CAs it chains to.
func (c *Config) prepareChain(ch CertChain) (localChain, error) {
	if len(ch.Certificates) == 0 {
		return localChain{}, fmt.Errorf("%w: certificate chain without certificates", ErrConfig)
	}
	if ch.PrivateKey == nil {
		return localChain{}, fmt.Errorf("%w: certificate without private key", ErrConfig)
	}
	if _, err := ikecrypto.DefaultScheme(ch.PrivateKey.Public()); err != nil {
		return localChain{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	leaf := ch.Certificates[0]
	if k, ok := ch.PrivateKey.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(leaf.PublicKey) {
		return localChain{}, fmt.Errorf("%w: private key does not belong to certificate %q", ErrConfig, leaf.Subject)
	}
	if c.SignatureAuth == SignatureAuthLegacy {
		m, err := ikecrypto.LegacyMethod(leaf.PublicKey)
		if err != nil {
			return localChain{}, fmt.Errorf("%w: SignatureAuthLegacy: %w", ErrConfig, err)
		}
		if m == message.AuthRSASig && !c.AllowSHA1Auth {
			return localChain{}, fmt.Errorf("%w: SignatureAuthLegacy with an RSA key signs with SHA-1 and needs AllowSHA1Auth", ErrConfig)
		}
	}
	lc := localChain{key: ch.PrivateKey}
	for i, cert := range ch.Certificates {
		selfSigned := i > 0 && cert.CheckSignatureFrom(cert) == nil
		if !selfSigned {
			lc.send = append(lc.send, cert)
		}
		if i > 0 {
			lc.cas = append(lc.cas, sha1.Sum(cert.RawSubjectPublicKeyInfo))
		}
	}
	last := ch.Certificates[len(ch.Certificates)-1]
	for _, root := range c.RootCAs {
		if last.CheckSignatureFrom(root) == nil {
			lc.cas = append(lc.cas, sha1.Sum(root.RawSubjectPublicKeyInfo))
		}
	}
	return lc, nil
}

// validateAuth checks the credentials and prepares the chains, the pool
// of RootCAs and our CERTREQ.
func (c *Config) validateAuth() error {
	c.chains = nil
	all := c.Chains
	if len(c.Certificates) > 0 {
		all = append([]CertChain{{Certificates: c.Certificates, PrivateKey: c.PrivateKey}}, all...)
	}
	if len(all) == 0 && len(c.PSK) == 0 {
		return fmt.Errorf("%w: %w", ErrConfig, errNoAuth)
	}
	if len(c.RootCAs) == 0 && len(c.PSK) == 0 {
		return fmt.Errorf("%w: no pre-shared key to verify the peer and no RootCAs", ErrConfig)
	}
	if c.SignatureAuth > SignatureAuthLegacy {
		return fmt.Errorf("%w: signature AUTH policy %d", ErrConfig, c.SignatureAuth)
	}
	c.rootPool, c.certReq = nil, nil
	if len(c.RootCAs) > 0 {
		c.rootPool = x509.NewCertPool()
		for _, ca := range c.RootCAs {
			c.rootPool.AddCert(ca)
			h := sha1.Sum(ca.RawSubjectPublicKeyInfo)
			c.certReq = append(c.certReq, h[:]...)
		}
	}
	for i, ch := range all {
		lc, err := c.prepareChain(ch)
		if err != nil {
			return fmt.Errorf("certificate chain %d: %w", i+1, err)
		}
		c.chains = append(c.chains, lc)
	}
	return nil
}

// peerCertReq collects the peer's CERTREQ payloads for X.509 signature
// certificates: whether it sent one, and the CAs they name (at most
// maxCertReqCAs; a CA field that is not a list of SHA-1 hashes names
// none, as strongSwan's empty CERTREQ does).
func peerCertReq(ps []message.Payload) (asked bool, cas []caHash) {
	for _, p := range ps {
		cr, ok := p.(*message.CertReq)
		if !ok {
			continue
		}
		asked = true
		if cr.Encoding != message.CertX509Signature || len(cr.Authority)%sha1.Size != 0 {
			continue
		}
		for a := cr.Authority; len(a) > 0 && len(cas) < maxCertReqCAs; a = a[sha1.Size:] {
			cas = append(cas, caHash(a[:sha1.Size]))
		}
	}
	return asked, cas
}

// chooseChain returns the chain to authenticate with: the first that
// chains to a CA the peer's CERTREQ names (RFC 7296 2.15: the peer can
// verify only those), else the first configured one.
func (c *Config) chooseChain(requested []caHash) *localChain {
	for i := range c.chains {
		for _, have := range c.chains[i].cas {
			for _, want := range requested {
				if have == want {
					return &c.chains[i]
				}
			}
		}
	}
	return &c.chains[0]
}
