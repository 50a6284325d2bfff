package ike

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

// newCA makes a CA with a fresh key of kind "ecdsa" or "rsa", self-signed
// or, with parent, an intermediate under it.
func newCA(t testing.TB, name, kind string, parent *testPKI) *testPKI {
	t.Helper()
	var key crypto.Signer
	var err error
	if kind == "rsa" {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{Organization: []string{"espy test"}, CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	issuer, issuerKey := tmpl, key
	if parent != nil {
		issuer, issuerKey = parent.ca, parent.caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return &testPKI{ca: ca, caKey: key}
}

func spkiHash(c *x509.Certificate) caHash { return sha1.Sum(c.RawSubjectPublicKeyInfo) }

// twoChains is a host with two chains from independent CAs: an RSA leaf
// under an RSA root, and an ECDSA leaf under an intermediate of an ECDSA
// root.
type twoChains struct {
	rsaRoot, ecRoot, ecInter *testPKI
	rsaChain, ecChain        CertChain
}

func newTwoChains(t *testing.T, name string) *twoChains {
	t.Helper()
	h := &twoChains{rsaRoot: newCA(t, "RSA root", "rsa", nil), ecRoot: newCA(t, "ECDSA root", "ecdsa", nil)}
	h.ecInter = newCA(t, "ECDSA intermediate", "ecdsa", h.ecRoot)
	rc, rk := h.rsaRoot.leaf(t, name, "rsa")
	ec, ek := h.ecInter.leaf(t, name, "ecdsa")
	h.rsaChain = CertChain{Certificates: []*x509.Certificate{rc}, PrivateKey: rk}
	h.ecChain = CertChain{Certificates: []*x509.Certificate{ec, h.ecInter.ca}, PrivateKey: ek}
	return h
}

// TestChooseChain picks a chain by the CAs a CERTREQ names: the root that
// issued the chain's last certificate (found among RootCAs, or ending the
// chain), or an intermediate in it; the default chain without a match or
// without CAs.
func TestChooseChain(t *testing.T) {
	h := newTwoChains(t, "a.lab.example")
	unknown := newCA(t, "unknown", "ecdsa", nil)
	for _, withRoot := range []bool{false, true} {
		cfg, _ := configs("aes128gcm16-prfsha256-x25519", "null-sha256", nil, nil)
		cfg.Certificates, cfg.PrivateKey = h.rsaChain.Certificates, h.rsaChain.PrivateKey
		ec := h.ecChain
		if withRoot {
			// The root ends the chain instead of being a trusted CA.
			ec.Certificates = append(ec.Certificates[:2:2], h.ecRoot.ca)
			cfg.RootCAs = []*x509.Certificate{h.rsaRoot.ca}
		} else {
			cfg.RootCAs = []*x509.Certificate{h.rsaRoot.ca, h.ecRoot.ca}
		}
		cfg.Chains = []CertChain{ec}
		vc, err := cfg.validate()
		if err != nil {
			t.Fatal(err)
		}
		if n := len(vc.chains[1].send); n != 2 {
			t.Fatalf("with root %v: the ECDSA chain sends %d certificates, want leaf and intermediate", withRoot, n)
		}
		for _, c := range []struct {
			name string
			req  []caHash
			want *x509.Certificate
		}{
			{"no CERTREQ CAs", nil, h.rsaChain.Certificates[0]},
			{"RSA root", []caHash{spkiHash(h.rsaRoot.ca)}, h.rsaChain.Certificates[0]},
			{"ECDSA root", []caHash{spkiHash(h.ecRoot.ca)}, h.ecChain.Certificates[0]},
			{"ECDSA intermediate", []caHash{spkiHash(h.ecInter.ca)}, h.ecChain.Certificates[0]},
			{"unknown CA", []caHash{spkiHash(unknown.ca)}, h.rsaChain.Certificates[0]},
			{"unknown, then ECDSA root", []caHash{spkiHash(unknown.ca), spkiHash(h.ecRoot.ca)}, h.ecChain.Certificates[0]},
		} {
			if got := vc.chooseChain(c.req).send[0]; got != c.want {
				t.Errorf("with root %v, %s: chose %q", withRoot, c.name, got.Subject)
			}
		}
	}
}

// TestPeerCertReq reads CA hashes from CERTREQ payloads: only X.509
// signature ones, only whole lists of SHA-1 hashes, at most maxCertReqCAs.
func TestPeerCertReq(t *testing.T) {
	h1, h2 := caHash{1}, caHash{2}
	many := make([]byte, 0, (maxCertReqCAs+5)*sha1.Size)
	for i := 0; i < maxCertReqCAs+5; i++ {
		many = append(many, h1[:]...)
	}
	for _, c := range []struct {
		name  string
		ps    []message.Payload
		asked bool
		n     int
	}{
		{"none", []message.Payload{&message.Nonce{Data: []byte{1}}}, false, 0},
		{"empty", []message.Payload{&message.CertReq{Encoding: message.CertX509Signature}}, true, 0},
		{"two", []message.Payload{&message.CertReq{Encoding: message.CertX509Signature, Authority: append(h1[:], h2[:]...)}}, true, 2},
		{"two payloads", []message.Payload{&message.CertReq{Encoding: message.CertX509Signature, Authority: h1[:]}, &message.CertReq{Encoding: message.CertX509Signature, Authority: h2[:]}}, true, 2},
		{"not a hash list", []message.Payload{&message.CertReq{Encoding: message.CertX509Signature, Authority: h1[:19]}}, true, 0},
		{"other encoding", []message.Payload{&message.CertReq{Encoding: message.CertEncoding(12), Authority: h1[:]}}, true, 0},
		{"too many", []message.Payload{&message.CertReq{Encoding: message.CertX509Signature, Authority: many}}, true, maxCertReqCAs},
	} {
		asked, cas := peerCertReq(c.ps)
		if asked != c.asked || len(cas) != c.n {
			t.Errorf("%s: asked %v, %d CAs; want %v, %d", c.name, asked, len(cas), c.asked, c.n)
		}
	}
}

// TestCertReqChoosesChain has a host with an RSA and an ECDSA chain from
// independent CAs authenticate, as initiator and as responder, to peers
// that each trust only one of the CAs and name it in their CERTREQ: the
// host must send (and sign with) the matching chain each time.
func TestCertReqChoosesChain(t *testing.T) {
	h := newTwoChains(t, "a.lab.example")
	peerPKI := newTestPKI(t)
	for _, role := range []string{"initiator", "responder"} {
		for _, trust := range []*testPKI{h.rsaRoot, h.ecRoot, h.ecInter} {
			t.Run(role+"/"+trust.ca.Subject.CommonName, func(t *testing.T) {
				p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
				host, peer := p.iniCfg, p.respCfg
				if role == "responder" {
					host, peer = p.respCfg, p.iniCfg
					host.LocalID, peer.LocalID = peer.LocalID, host.LocalID
					host.RemoteID, peer.RemoteID = peer.RemoteID, host.RemoteID
				}
				host.PSK, peer.PSK = nil, nil
				// Both chains end with their root: the host need not
				// trust its own CAs.
				host.Certificates, host.PrivateKey = append(h.rsaChain.Certificates[:1:1], h.rsaRoot.ca), h.rsaChain.PrivateKey
				host.Chains = []CertChain{{Certificates: append(h.ecChain.Certificates[:2:2], h.ecRoot.ca), PrivateKey: h.ecChain.PrivateKey}}
				host.RootCAs = []*x509.Certificate{peerPKI.ca}
				pc, pk := peerPKI.leaf(t, string(peer.LocalID.Data), "ecdsa")
				peer.Certificates, peer.PrivateKey = []*x509.Certificate{pc}, pk
				peer.RootCAs = []*x509.Certificate{trust.ca}
				if err := p.resp.Respond(p.respCfg); err != nil {
					t.Fatal(err)
				}
				sa, err := p.initiate(t)
				if err != nil {
					t.Fatal(err)
				}
				spiI, _ := sa.SPIs()
				rsa := p.responderSA(t, spiI)
				if !sa.PeerID().equal(p.iniCfg.RemoteID) || !rsa.PeerID().equal(p.iniCfg.LocalID) || len(sa.Children()) != 1 {
					t.Fatalf("peer IDs %v, %v", sa.PeerID(), rsa.PeerID())
				}
			})
		}
	}
	// The default chain goes to a peer whose CA we do not have.
	t.Run("no match", func(t *testing.T) {
		p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
		p.iniCfg.Certificates, p.iniCfg.PrivateKey = h.ecChain.Certificates, h.ecChain.PrivateKey
		p.iniCfg.Chains = []CertChain{h.rsaChain}
		p.respCfg.RootCAs = []*x509.Certificate{newTestPKI(t).ca}
		if err := p.resp.Respond(p.respCfg); err != nil {
			t.Fatal(err)
		}
		var ne *NotifyError
		if _, err := p.initiate(t); !errors.As(err, &ne) || ne.Type != message.AUTHENTICATION_FAILED {
			t.Fatalf("got %v, want AUTHENTICATION_FAILED", err)
		}
	})
}

// TestChainConfig checks the configuration errors of certificate chains.
func TestChainConfig(t *testing.T) {
	h := newTwoChains(t, "a.lab.example")
	_, ed := newTestPKI(t).leaf(t, "a.lab.example", "ed25519")
	for _, c := range []struct {
		name string
		set  func(*Config)
	}{
		{"key of another certificate", func(c *Config) {
			c.Certificates, c.PrivateKey = h.rsaChain.Certificates, h.ecChain.PrivateKey
		}},
		{"chain without certificates", func(c *Config) { c.Chains = []CertChain{{PrivateKey: h.ecChain.PrivateKey}} }},
		{"chain without key", func(c *Config) { c.Chains = []CertChain{{Certificates: h.ecChain.Certificates}} }},
		{"legacy RSA without SHA-1", func(c *Config) {
			c.Certificates, c.PrivateKey, c.SignatureAuth = h.rsaChain.Certificates, h.rsaChain.PrivateKey, SignatureAuthLegacy
		}},
		{"legacy Ed25519", func(c *Config) {
			cert, _ := newTestPKI(t).leaf(t, "a.lab.example", "ed25519")
			c.Certificates, c.PrivateKey, c.SignatureAuth = []*x509.Certificate{cert}, ed, SignatureAuthLegacy
		}},
		{"unknown policy", func(c *Config) { c.SignatureAuth = SignatureAuthLegacy + 1 }},
	} {
		cfg, _ := configs("aes128gcm16-prfsha256-x25519", "null-sha256", nil, nil)
		c.set(cfg)
		if _, err := cfg.validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", c.name, err)
		}
	}
	cfg, _ := configs("aes128gcm16-prfsha256-x25519", "null-sha256", nil, nil)
	cfg.Certificates, cfg.PrivateKey, cfg.SignatureAuth, cfg.AllowSHA1Auth = h.rsaChain.Certificates, h.rsaChain.PrivateKey, SignatureAuthLegacy, true
	if _, err := cfg.validate(); err != nil {
		t.Errorf("legacy RSA with SHA-1 allowed: %v", err)
	}
}
