package ike

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/ikecrypto"
	"github.com/espy-dpi/espy/ike/message"
)

var (
	sigPKIOnce sync.Once
	sigPKI     *testPKI
	sigLeaves  map[string]leafKey
)

type leafKey struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// sigLeaf returns a leaf for name with a key of kind "rsa", "p256",
// "p384", "p521" or "ed25519", from one CA per test binary (RSA keys are
// slow to make).
func sigLeaf(t *testing.T, name, kind string) leafKey {
	sigPKIOnce.Do(func() {
		sigPKI, sigLeaves = newTestPKI(t), map[string]leafKey{}
	})
	if l, ok := sigLeaves[name+kind]; ok {
		return l
	}
	var l leafKey
	switch kind {
	case "rsa", "ed25519":
		l.cert, l.key = sigPKI.leaf(t, name, kind)
	default:
		curve := map[string]elliptic.Curve{"p256": elliptic.P256(), "p384": elliptic.P384(), "p521": elliptic.P521()}[kind]
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, sigPKI.ca, k.Public(), sigPKI.caKey)
		if err != nil {
			t.Fatal(err)
		}
		l.cert, _ = x509.ParseCertificate(der)
		l.key = k
	}
	sigLeaves[name+kind] = l
	return l
}

// TestSignatureAuthMethods runs IKE_AUTH between two espy ends with
// certificates of each key kind under each signature policy, and checks
// which AUTH method each end signed with (IKESA.AuthMethods on both
// sides) or that the responder refused.
func TestSignatureAuthMethods(t *testing.T) {
	const (
		ok     = iota
		refuse // AUTHENTICATION_FAILED from the responder
	)
	for _, c := range []struct {
		name           string
		kind           string
		ini, resp      SignatureAuth
		iniSHA1, rSHA1 bool
		wantI, wantR   message.AuthMethod
		want           int
	}{
		{"ECDSA P-256 legacy", "p256", SignatureAuthLegacy, SignatureAuthAuto, false, false, 9, 14, ok},
		{"ECDSA P-384 legacy", "p384", SignatureAuthLegacy, SignatureAuthLegacy, false, false, 10, 10, ok},
		{"ECDSA P-521 legacy", "p521", SignatureAuthLegacy, SignatureAuthAuto, false, false, 11, 14, ok},
		{"RSA legacy with SHA-1", "rsa", SignatureAuthLegacy, SignatureAuthLegacy, true, true, 1, 1, ok},
		{"RSA auto", "rsa", SignatureAuthAuto, SignatureAuthAuto, true, true, 14, 14, ok},
		{"Ed25519 auto", "ed25519", SignatureAuthAuto, SignatureAuthAuto, false, false, 14, 14, ok},
		{"RFC 7427 only refuses ECDSA legacy", "p256", SignatureAuthLegacy, SignatureAuthRFC7427, false, false, 0, 0, refuse},
		{"SHA-1 not allowed by the responder", "rsa", SignatureAuthLegacy, SignatureAuthAuto, true, false, 0, 0, refuse},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
			a, b := sigLeaf(t, "a.lab.example", c.kind), sigLeaf(t, "b.lab.example", c.kind)
			p.iniCfg.PSK, p.respCfg.PSK = nil, nil
			p.iniCfg.Certificates, p.iniCfg.PrivateKey, p.iniCfg.RootCAs = []*x509.Certificate{a.cert}, a.key, []*x509.Certificate{sigPKI.ca}
			p.respCfg.Certificates, p.respCfg.PrivateKey, p.respCfg.RootCAs = []*x509.Certificate{b.cert}, b.key, []*x509.Certificate{sigPKI.ca}
			p.iniCfg.SignatureAuth, p.respCfg.SignatureAuth = c.ini, c.resp
			p.iniCfg.AllowSHA1Auth, p.respCfg.AllowSHA1Auth = c.iniSHA1, c.rSHA1
			if err := p.resp.Respond(p.respCfg); err != nil {
				t.Fatal(err)
			}
			sa, err := p.initiate(t)
			if c.want == refuse {
				var ne *NotifyError
				if !errors.As(err, &ne) || ne.Type != message.AUTHENTICATION_FAILED {
					t.Fatalf("got %v, want AUTHENTICATION_FAILED", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rsa := p.responderSA(t, func() uint64 { a, _ := sa.SPIs(); return a }())
			if l, r := sa.AuthMethods(); l != c.wantI || r != c.wantR {
				t.Fatalf("initiator signed with %d, responder with %d; want %d, %d", l, r, c.wantI, c.wantR)
			}
			if l, r := rsa.AuthMethods(); l != c.wantR || r != c.wantI {
				t.Fatalf("responder's view: it signed with %d, the initiator with %d", l, r)
			}
		})
	}
}

// TestSignatureAuthFollowsPeer checks SignatureAuthAuto's choice by what
// the peer announced in IKE_SA_INIT: method 14 after
// SIGNATURE_HASH_ALGORITHMS, the key's legacy method without it (RSA's
// only with AllowSHA1Auth, Ed25519 has none).
func TestSignatureAuthFollowsPeer(t *testing.T) {
	for _, c := range []struct {
		kind    string
		sha1    bool
		sigHash bool
		want    message.AuthMethod
	}{
		{"p256", false, true, 14}, {"p256", false, false, 9}, {"p384", false, false, 10}, {"p521", false, false, 11},
		{"rsa", true, false, 1}, {"rsa", false, false, 14}, {"rsa", true, true, 14}, {"ed25519", false, false, 14},
	} {
		l := sigLeaf(t, "a.lab.example", c.kind)
		cfg, _ := configs("aes128gcm16-prfsha256-x25519", "null-sha256", nil, nil)
		cfg.Certificates, cfg.PrivateKey, cfg.AllowSHA1Auth = []*x509.Certificate{l.cert}, l.key, c.sha1
		vc, err := cfg.validate()
		if err != nil {
			t.Fatal(err)
		}
		prf, _ := ikecrypto.LookupPRF(message.PRF_HMAC_SHA2_256)
		sa := newSA(nil, vc, true)
		sa.prf, sa.peerAuth.sigHash = prf, c.sigHash
		_, auth, err := sa.authPayloadsLocked([]byte("first"), make([]byte, 32), make([]byte, 32), []byte("id"))
		if err != nil {
			t.Fatal(err)
		}
		if auth.Method != c.want {
			t.Errorf("%s, SHA-1 %v, peer announced RFC 7427 %v: method %d, want %d", c.kind, c.sha1, c.sigHash, auth.Method, c.want)
		}
	}
}
