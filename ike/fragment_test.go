package ike

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/ikecrypto"
	"github.com/espy-dpi/espy/ike/message"
)

// fragChainPKI is a root CA, an intermediate CA and two RSA-4096 leaves
// issued by the intermediate: IKE_AUTH messages that carry such a chain
// are several kilobytes, too large for one 1280-byte datagram.
type fragChainPKI struct {
	root, inter *x509.Certificate
	a, b        *x509.Certificate // a.lab.example, b.lab.example
	aKey, bKey  crypto.Signer
}

var (
	fragChainOnce sync.Once
	fragChain     *fragChainPKI
	fragChainErr  error
)

// fragPKI returns the certificates, made once per test binary.
func fragPKI(t testing.TB) *fragChainPKI {
	t.Helper()
	fragChainOnce.Do(func() { fragChain, fragChainErr = newFragChainPKI() })
	if fragChainErr != nil {
		t.Fatal(fragChainErr)
	}
	return fragChain
}

func newFragChainPKI() (*fragChainPKI, error) {
	now := time.Now()
	issue := func(tmpl, parent *x509.Certificate, pub any, key crypto.Signer) (*x509.Certificate, error) {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
		if err != nil {
			return nil, err
		}
		return x509.ParseCertificate(der)
	}
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ca := func(serial int64, name string) *x509.Certificate {
		return &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{Organization: []string{"espy test"}, CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
	}
	p := &fragChainPKI{}
	rt := ca(1, "espy fragmentation root")
	if p.root, err = issue(rt, rt, rootKey.Public(), rootKey); err != nil {
		return nil, err
	}
	interKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	if p.inter, err = issue(ca(2, "espy fragmentation intermediate"), p.root, interKey.Public(), rootKey); err != nil {
		return nil, err
	}
	// One RSA-4096 key, made once and kept in testdata (generating one
	// takes from one to tens of seconds on a busy CI machine), for both
	// leaves: what matters here is the size of certificates and
	// signatures. The certificates are made afresh.
	leafKey, err := loadFragTestKey("testdata/rsa4096-test-key.pem")
	if err != nil {
		return nil, err
	}
	if k, ok := leafKey.Public().(*rsa.PublicKey); !ok || k.N.BitLen() != 4096 {
		return nil, fmt.Errorf("test key is %T, not RSA-4096", leafKey.Public())
	}
	leaf := func(serial int64, name string) (*x509.Certificate, crypto.Signer, error) {
		key := leafKey
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{Organization: []string{"espy test"}, CommonName: name},
			DNSNames: []string{name, "frag-" + name}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		c, err := issue(tmpl, p.inter, key.Public(), interKey)
		return c, key, err
	}
	if p.a, p.aKey, err = leaf(3, "a.lab.example"); err != nil {
		return nil, err
	}
	if p.b, p.bKey, err = leaf(4, "b.lab.example"); err != nil {
		return nil, err
	}
	return p, nil
}

// loadFragTestKey reads a PKCS #8 private key in PEM.
func loadFragTestKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: %T is not a signer", path, k)
	}
	return s, nil
}

// useChain makes both ends of p authenticate with the RSA-4096 leaf and
// the intermediate, trusting only the root, with fragments of at most
// size bytes.
func (pk *fragChainPKI) useChain(t *testing.T, p *pair, size int) {
	t.Helper()
	p.iniCfg.PSK, p.respCfg.PSK = nil, nil
	p.iniCfg.Certificates, p.iniCfg.PrivateKey = []*x509.Certificate{pk.a, pk.inter}, pk.aKey
	p.respCfg.Certificates, p.respCfg.PrivateKey = []*x509.Certificate{pk.b, pk.inter}, pk.bKey
	p.iniCfg.RootCAs, p.respCfg.RootCAs = []*x509.Certificate{pk.root}, []*x509.Certificate{pk.root}
	p.iniCfg.FragmentSize, p.respCfg.FragmentSize = size, size
	if err := p.resp.Respond(p.respCfg); err != nil {
		t.Fatal(err)
	}
}

// fragPrivateNotify is a status notify from the private-use range, ignored by
// the receiver: a way to make an INFORMATIONAL request of any size.
const fragPrivateNotify message.NotifyType = 40969

func fragBigInformational(n int) []message.Payload {
	return []message.Payload{&message.Notify{Kind: fragPrivateNotify, Data: bytes.Repeat([]byte{0xa5}, n)}}
}

// TestFragmentationLoopback runs IKE_AUTH with RSA-4096 chains through
// 576-byte fragments both ways, then fragmented INFORMATIONAL requests in
// either direction, before and after an IKE SA rekey, and a Child SA
// rekey; the counters show that fragments were sent and reassembled by
// each end. With ForceEncap IKE runs on the NAT-T port, behind the
// non-ESP marker.
func TestFragmentationLoopback(t *testing.T) {
	pk := fragPKI(t)
	for _, c := range []struct {
		suite string
		natt  bool
	}{{"aes128gcm16-prfsha256-x25519", false}, {"aes256-sha256-modp2048", false}, {"chacha20poly1305-prfsha256-ecp256", true}} {
		t.Run(fmt.Sprintf("%s/natt=%v", c.suite, c.natt), func(t *testing.T) {
			p := newPair(t, c.suite, "null-sha256", ListenConfig{})
			p.iniCfg.ForceEncap = c.natt
			pk.useChain(t, p, MinFragmentSize)
			isa, err := p.initiate(t)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, natt := isa.Addrs(); natt != c.natt {
				t.Fatalf("IKE on the NAT-T port: %v", natt)
			}
			checkEstablished(t, p, isa)
			rsa := p.responderSA(t, fragSPIi(isa))
			if !isa.Fragmentation() || !rsa.Fragmentation() {
				t.Fatal("fragmentation not negotiated")
			}
			is, rs := p.ini.FragmentStats(), p.resp.FragmentStats()
			// IKE_AUTH with two certificates and a 512-byte signature
			// needs at least 5 fragments of 576 bytes each way.
			if is.Sent < 5 || rs.Sent < 5 || is.Reassembled != 1 || rs.Reassembled != 1 {
				t.Fatalf("after IKE_AUTH: initiator %+v, responder %+v", is, rs)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			exchangeBoth := func(stage string) {
				t.Helper()
				is0, rs0 := p.ini.FragmentStats(), p.resp.FragmentStats()
				if _, err := isa.request(ctx, message.INFORMATIONAL, fragBigInformational(3000)); err != nil {
					t.Fatalf("%s: initiator's request: %v", stage, err)
				}
				if _, err := rsa.request(ctx, message.INFORMATIONAL, fragBigInformational(3000)); err != nil {
					t.Fatalf("%s: responder's request: %v", stage, err)
				}
				is1, rs1 := p.ini.FragmentStats(), p.resp.FragmentStats()
				if is1.Sent-is0.Sent < 6 || rs1.Sent-rs0.Sent < 6 || is1.Reassembled != is0.Reassembled+1 || rs1.Reassembled != rs0.Reassembled+1 {
					t.Fatalf("%s: initiator %+v → %+v, responder %+v → %+v", stage, is0, is1, rs0, rs1)
				}
			}
			exchangeBoth("established")
			if err := isa.RekeyIKE(ctx); err != nil {
				t.Fatal(err)
			}
			exchangeBoth("after IKE SA rekey")
			if _, err := rsa.RekeyChild(ctx, rsa.Children()[0]); err != nil {
				t.Fatal(err)
			}
			if err := isa.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			for _, e := range []*Endpoint{p.ini, p.resp} {
				if st := e.FragmentStats(); st.BadICV != 0 || st.OverLimit != 0 || st.Expired != 0 {
					t.Errorf("unexpected drops: %+v", st)
				}
				if n := e.ReassemblyBytes(); n != 0 {
					t.Errorf("%d bytes still held for reassembly", n)
				}
			}
		})
	}
}

func fragSPIi(sa *IKESA) uint64 { i, _ := sa.SPIs(); return i }

// TestFragmentationNotNegotiated checks that a side with
// DisableFragmentation makes both send whole messages (loopback carries
// them), and that the certificate chain is then sent only when asked.
func TestFragmentationNotNegotiated(t *testing.T) {
	pk := fragPKI(t)
	for _, off := range []string{"initiator", "responder"} {
		t.Run(off, func(t *testing.T) {
			p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
			p.iniCfg.DisableFragmentation = off == "initiator"
			p.respCfg.DisableFragmentation = off == "responder"
			pk.useChain(t, p, MinFragmentSize)
			isa, err := p.initiate(t)
			if err != nil {
				t.Fatal(err)
			}
			checkEstablished(t, p, isa)
			if isa.Fragmentation() {
				t.Fatal("fragmentation negotiated")
			}
			if is, rs := p.ini.FragmentStats(), p.resp.FragmentStats(); is != (FragmentStats{}) || rs != (FragmentStats{}) {
				t.Fatalf("fragment counters %+v, %+v", is, rs)
			}
		})
	}
}

// TestCertPolicy checks which CERT payloads each Config.SendCert policy
// puts before AUTH, with and without a CERTREQ from the peer: leaf first,
// then the intermediate.
func TestCertPolicy(t *testing.T) {
	pk := fragPKI(t)
	for _, c := range []struct {
		policy CertPolicy
		asked  bool
		want   int
	}{
		{CertSendIfAsked, true, 2}, {CertSendIfAsked, false, 0},
		{CertSendAlways, false, 2}, {CertSendAlways, true, 2},
		{CertSendNever, true, 0},
	} {
		cfg, _ := configs("aes128gcm16-prfsha256-x25519", "null-sha256", nil, nil)
		cfg.Certificates, cfg.PrivateKey, cfg.SendCert = []*x509.Certificate{pk.a, pk.inter}, pk.aKey, c.policy
		vc, err := cfg.validate()
		if err != nil {
			t.Fatal(err)
		}
		prf, _ := ikecrypto.LookupPRF(message.PRF_HMAC_SHA2_256)
		sa := newSA(nil, vc, true)
		sa.prf, sa.peerAuth.certRequested, sa.peerAuth.sigHash = prf, c.asked, true
		certs, auth, err := sa.authPayloadsLocked([]byte("first"), make([]byte, 32), make([]byte, 32), []byte("id"))
		if err != nil {
			t.Fatal(err)
		}
		if len(certs) != c.want || auth.Method != message.AuthDigitalSig {
			t.Fatalf("policy %d, asked %v: %d CERT payloads, want %d", c.policy, c.asked, len(certs), c.want)
		}
		if c.want == 2 && !bytes.Equal(certs[0].(*message.Cert).Data, pk.a.Raw) {
			t.Fatal("leaf is not the first CERT payload")
		}
	}
	cfg, _ := configs("aes128gcm16-prfsha256-x25519", "null-sha256", nil, nil)
	cfg.SendCert = 7
	if _, err := cfg.validate(); err == nil {
		t.Fatal("bad certificate policy accepted")
	}
	cfg.SendCert, cfg.FragmentSize = CertSendAlways, 100
	if _, err := cfg.validate(); err == nil {
		t.Fatal("100-byte fragments accepted")
	}
}

// TestCertSendNever checks that CertSendNever keeps the chain back even
// from a peer that asks for it, which then cannot authenticate us.
func TestCertSendNever(t *testing.T) {
	pk := fragPKI(t)
	p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
	pk.useChain(t, p, DefaultFragmentSize)
	p.iniCfg.SendCert = CertSendNever
	_, err := p.initiate(t)
	var ne *NotifyError
	if !errors.As(err, &ne) || ne.Type != message.AUTHENTICATION_FAILED {
		t.Fatalf("got %v, want AUTHENTICATION_FAILED", err)
	}
}

// TestMaxIKELen checks the per-datagram overhead taken off the fragment
// size.
func TestMaxIKELen(t *testing.T) {
	for _, c := range []struct {
		addr string
		natt bool
		want int
	}{
		{"192.0.2.1", false, 1280 - 28}, {"192.0.2.1", true, 1280 - 32},
		{"2001:db8::1", false, 1280 - 48}, {"2001:db8::1", true, 1280 - 52},
	} {
		if got := maxIKELen(1280, netip.MustParseAddr(c.addr), c.natt); got != c.want {
			t.Errorf("%s natt=%v: %d, want %d", c.addr, c.natt, got, c.want)
		}
	}
}

// TestFragmentedAndWholeForms sends one request both whole and in
// fragments, in either order: the responder processes it once, answers
// fragment 1 of an answered request with the stored response, frees a
// partial reassembly as soon as the whole form is answered, and ignores
// the fragments that come after.
func TestFragmentedAndWholeForms(t *testing.T) {
	p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
	p.iniCfg.FragmentSize, p.respCfg.FragmentSize = MinFragmentSize, MinFragmentSize
	if err := p.resp.Respond(p.respCfg); err != nil {
		t.Fatal(err)
	}
	isa, err := p.initiate(t)
	if err != nil {
		t.Fatal(err)
	}
	rsa := p.responderSA(t, fragSPIi(isa))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// forms returns the next request ID and the request whole and in
	// fragments.
	forms := func() (uint32, []byte, [][]byte) {
		isa.mu.Lock()
		defer isa.mu.Unlock()
		id := isa.nextReqID
		isa.nextReqID++
		ps := fragBigInformational(1500)
		whole, err := isa.seal(message.INFORMATIONAL, false, id, ps)
		if err != nil {
			t.Fatal(err)
		}
		frags, err := isa.sealOut(message.INFORMATIONAL, false, id, ps)
		if err != nil || len(frags) < 3 {
			t.Fatalf("%d fragments: %v", len(frags), err)
		}
		return id, whole, frags
	}
	peerReqID := func() uint32 {
		rsa.mu.Lock()
		defer rsa.mu.Unlock()
		return rsa.peerReqID
	}

	// Whole first: fragment 1 afterwards brings the stored answer back,
	// nothing is reassembled.
	id, whole, frags := forms()
	if _, err := isa.exchangeAll(ctx, [][]byte{whole}, message.INFORMATIONAL, id); err != nil {
		t.Fatal(err)
	}
	if _, err := isa.exchangeAll(ctx, frags, message.INFORMATIONAL, id); err != nil {
		t.Fatalf("no answer to the fragmented retransmission: %v", err)
	}
	if st := p.resp.FragmentStats(); st.Reassembled != 0 || peerReqID() != id+1 {
		t.Fatalf("responder counters %+v, next request ID %d", st, peerReqID())
	}

	// Fragments but the last, then the whole: the partial reassembly
	// is freed when the whole is answered; the last fragment then
	// completes nothing.
	id, whole, frags = forms()
	for _, f := range frags[:len(frags)-1] {
		isa.ep.send(f, p.fragRespAddr(), false)
	}
	waitFor(t, func() bool { return p.resp.ReassemblyBytes() > 0 })
	if _, err := isa.exchangeAll(ctx, [][]byte{whole}, message.INFORMATIONAL, id); err != nil {
		t.Fatal(err)
	}
	if n := p.resp.ReassemblyBytes(); n != 0 {
		t.Fatalf("%d bytes still held after the whole request was answered", n)
	}
	dropped := p.resp.FragmentStats().Dropped
	isa.ep.send(frags[len(frags)-1], p.fragRespAddr(), false)
	waitFor(t, func() bool { return p.resp.FragmentStats().Dropped == dropped+1 })
	if st := p.resp.FragmentStats(); st.Reassembled != 0 || peerReqID() != id+1 {
		t.Fatalf("responder counters %+v, next request ID %d", st, peerReqID())
	}
	if err := isa.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func (p *pair) fragRespAddr() netip.AddrPort { a, _ := p.resp.Addrs(); return a }
