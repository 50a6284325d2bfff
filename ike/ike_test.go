package ike

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// recorder is an SARegistrar that remembers what it was told.
type recorder struct {
	mu   sync.Mutex
	sas  map[uint32]SAInfo
	fail bool
}

func (r *recorder) RegisterSA(i SAInfo) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("flow cache full")
	}
	if r.sas == nil {
		r.sas = map[uint32]SAInfo{}
	}
	r.sas[i.SPI] = i
	return nil
}

func (r *recorder) UnregisterSA(i SAInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.sas, i.SPI)
}

func (r *recorder) get(spi uint32) (SAInfo, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, ok := r.sas[spi]
	return i, ok
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sas)
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("IKE_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func listen(t testing.TB, lc ListenConfig) *Endpoint {
	t.Helper()
	lc.Addr = loopback
	lc.Logger = testLogger(t)
	e, err := Listen(lc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

var fastRetransmit = Retransmit{Timeout: 100 * time.Millisecond, Base: 1.8, Tries: 5}

func configs(ike, esp string, initReg, respReg SARegistrar) (ini, resp *Config) {
	ini = &Config{
		LocalID: FQDN("a.lab.example"), RemoteID: FQDN("b.lab.example"), PSK: []byte("espy-test-psk-not-a-secret"),
		IKE: []Proposal{MustParseProposal(ike, true)}, ESP: []Proposal{MustParseProposal(esp, false)},
		LocalTS:    []message.Selector{PrefixSelector(netip.MustParsePrefix("198.51.100.0/24"))},
		RemoteTS:   []message.Selector{PrefixSelector(netip.MustParsePrefix("203.0.113.0/24"))},
		Retransmit: fastRetransmit, Registrar: initReg,
	}
	resp = &Config{
		LocalID: FQDN("b.lab.example"), RemoteID: FQDN("a.lab.example"), PSK: []byte("espy-test-psk-not-a-secret"),
		IKE: []Proposal{MustParseProposal(ike, true)}, ESP: []Proposal{MustParseProposal(esp, false)},
		LocalTS:    []message.Selector{PrefixSelector(netip.MustParsePrefix("203.0.113.0/24"))},
		RemoteTS:   []message.Selector{PrefixSelector(netip.MustParsePrefix("198.51.100.0/24"))},
		Retransmit: fastRetransmit, Registrar: respReg,
	}
	return ini, resp
}

// pair is an initiator and a responder endpoint on loopback.
type pair struct {
	ini, resp       *Endpoint
	iniReg, respReg *recorder
	iniCfg, respCfg *Config
	nat             bool // a NAT sits between them
}

func newPair(t *testing.T, ike, esp string, lc ListenConfig) *pair {
	p := &pair{iniReg: &recorder{}, respReg: &recorder{}}
	p.ini = listen(t, ListenConfig{})
	p.resp = listen(t, lc)
	p.iniCfg, p.respCfg = configs(ike, esp, p.iniReg, p.respReg)
	p.iniCfg.Logger, p.respCfg.Logger = testLogger(t), testLogger(t)
	_, natt := p.resp.Addrs()
	p.iniCfg.RemoteNATPort = natt.Port()
	if err := p.resp.Respond(p.respCfg); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pair) initiate(t *testing.T) (*IKESA, error) {
	ike, _ := p.resp.Addrs()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return p.ini.Initiate(ctx, p.iniCfg, ike)
}

// responderSA waits for the responder's view of the IKE SA.
func (p *pair) responderSA(t *testing.T, spiI uint64) *IKESA {
	t.Helper()
	for i := 0; i < 200; i++ {
		for _, sa := range p.resp.IKESAs() {
			if a, _ := sa.SPIs(); a == spiI {
				return sa
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("responder has no established IKE SA")
	return nil
}

// checkEstablished compares both ends of an IKE SA and its Child SA, and
// what each reported to its registrar.
func checkEstablished(t *testing.T, p *pair, isa *IKESA) (ichild, rchild *ChildSA) {
	t.Helper()
	spiI, spiR := isa.SPIs()
	rsa := p.responderSA(t, spiI)
	if a, b := rsa.SPIs(); a != spiI || b != spiR {
		t.Fatalf("SPIs differ: %x/%x vs %x/%x", spiI, spiR, a, b)
	}
	ik, rk := isa.Keys(), rsa.Keys()
	for name, pair := range map[string][2][]byte{"SK_d": {ik.SKd, rk.SKd}, "SK_ei": {ik.SKei, rk.SKei}, "SK_er": {ik.SKer, rk.SKer},
		"SK_ai": {ik.SKai, rk.SKai}, "SK_ar": {ik.SKar, rk.SKar}, "SK_pi": {ik.SKpi, rk.SKpi}, "SK_pr": {ik.SKpr, rk.SKpr}} {
		if !bytes.Equal(pair[0], pair[1]) {
			t.Fatalf("%s differs", name)
		}
	}
	if isa.Suite() != rsa.Suite() {
		t.Fatalf("IKE suites differ: %v vs %v", isa.Suite(), rsa.Suite())
	}
	if !isa.PeerID().equal(FQDN("b.lab.example")) || !rsa.PeerID().equal(FQDN("a.lab.example")) {
		t.Fatalf("peer IDs %v, %v", isa.PeerID(), rsa.PeerID())
	}
	ic, rc := isa.Children(), rsa.Children()
	if len(ic) != 1 || len(rc) != 1 {
		t.Fatalf("children: initiator %d, responder %d", len(ic), len(rc))
	}
	i, r := ic[0], rc[0]
	if i.InSPI != r.OutSPI || i.OutSPI != r.InSPI || i.InSPI == i.OutSPI {
		t.Fatalf("ESP SPIs: initiator in %x out %x, responder in %x out %x", i.InSPI, i.OutSPI, r.InSPI, r.OutSPI)
	}
	if i.Suite != r.Suite || i.Encap != r.Encap || i.Mode != r.Mode {
		t.Fatalf("Child SA parameters differ: %+v vs %+v", i, r)
	}
	for name, pair := range map[string][2][]byte{"encr i->r": {i.Keys.EncrI, r.Keys.EncrI}, "integ i->r": {i.Keys.IntegI, r.Keys.IntegI},
		"encr r->i": {i.Keys.EncrR, r.Keys.EncrR}, "integ r->i": {i.Keys.IntegR, r.Keys.IntegR}} {
		if !bytes.Equal(pair[0], pair[1]) {
			t.Fatalf("Child SA key %s differs", name)
		}
	}
	if bytes.Equal(i.Keys.EncrI, i.Keys.EncrR) && len(i.Keys.EncrI) > 0 {
		t.Fatal("both directions share a key")
	}
	// Each side registered both directions, and the two views of one
	// direction agree.
	for _, c := range []struct {
		reg   *recorder
		child *ChildSA
	}{{p.iniReg, i}, {p.respReg, r}} {
		out, ok1 := c.reg.get(c.child.OutSPI)
		in, ok2 := c.reg.get(c.child.InSPI)
		if !ok1 || !ok2 || out.Inbound || !in.Inbound {
			t.Fatalf("registrar: out %v %+v, in %v %+v", ok1, out, ok2, in)
		}
		if out.Src != in.Dst || out.Dst != in.Src || out.SrcPort != in.DstPort || out.DstPort != in.SrcPort {
			t.Fatalf("registrar directions are not mirrors: %+v / %+v", out, in)
		}
	}
	iOut, _ := p.iniReg.get(i.OutSPI)
	rIn, _ := p.respReg.get(r.InSPI)
	iOut.Inbound, iOut.LocalTS, iOut.RemoteTS = true, nil, nil
	rIn.LocalTS, rIn.RemoteTS = nil, nil
	if p.nat {
		// Each side sees the other's ports as translated.
		iOut.SrcPort, iOut.DstPort, rIn.SrcPort, rIn.DstPort = 0, 0, 0, 0
	}
	if fmt.Sprint(iOut) != fmt.Sprint(rIn) {
		t.Fatalf("initiator outbound and responder inbound differ:\n%+v\n%+v", iOut, rIn)
	}
	return i, r
}

func TestEstablishSuites(t *testing.T) {
	ikeSuites := []string{"aes128-sha256", "aes256ctr-sha256", "aes256gcm16-prfsha256", "chacha20poly1305-prfsha256"}
	groups := []string{"modp2048", "ecp256", "ecp384", "x25519"}
	esps := []struct {
		proposal    string
		null        bool
		iv, icv     int
		encr, integ uint16
	}{
		{"null-sha256", true, 0, 16, message.ENCR_NULL, message.AUTH_HMAC_SHA2_256_128},
		{"aes128gmac", true, 8, 16, message.ENCR_NULL_AUTH_AES_GMAC, message.AUTH_NONE},
		{"aes128gcm16", false, 8, 16, message.ENCR_AES_GCM_16, message.AUTH_NONE},
		{"aes256-sha512", false, 16, 32, message.ENCR_AES_CBC, message.AUTH_HMAC_SHA2_512_256},
		{"null-sha1", true, 0, 12, message.ENCR_NULL, message.AUTH_HMAC_SHA1_96},
		{"chacha20poly1305", false, 8, 16, message.ENCR_CHACHA20_POLY1305, message.AUTH_NONE},
		{"aes128ctr-sha384", false, 8, 24, message.ENCR_AES_CTR, message.AUTH_HMAC_SHA2_384_192},
		{"null-aesxcbc", true, 0, 12, message.ENCR_NULL, message.AUTH_AES_XCBC_96},
		{"aes256ccm12", false, 8, 12, message.ENCR_AES_CCM_12, message.AUTH_NONE},
	}
	n := 0
	for _, s := range ikeSuites {
		for _, g := range groups {
			esp := esps[n%len(esps)]
			n++
			ike := s + "-" + g
			t.Run(ike+"/"+esp.proposal, func(t *testing.T) {
				p := newPair(t, ike, esp.proposal, ListenConfig{})
				sa, err := p.initiate(t)
				if err != nil {
					t.Fatal(err)
				}
				i, _ := checkEstablished(t, p, sa)
				info, _ := p.iniReg.get(i.OutSPI)
				if info.Null != esp.null || info.IVLen != esp.iv || info.ICVLen != esp.icv || info.EncrID != esp.encr || info.IntegID != esp.integ {
					t.Fatalf("registered %+v, want null=%v iv=%d icv=%d encr=%d integ=%d", info, esp.null, esp.iv, esp.icv, esp.encr, esp.integ)
				}
				if info.Encap != EncapNone || info.Mode != ModeTunnel {
					t.Fatalf("encap %v mode %v on loopback", info.Encap, info.Mode)
				}
				if got := sa.Suite().DH; got != dhNames[g] {
					t.Fatalf("group %d, want %d", got, dhNames[g])
				}
				// Tearing down unregisters on both sides.
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := sa.Delete(ctx); err != nil {
					t.Fatalf("delete: %v", err)
				}
				waitFor(t, func() bool {
					p.ini.mu.Lock()
					defer p.ini.mu.Unlock()
					p.resp.mu.Lock()
					defer p.resp.mu.Unlock()
					return p.iniReg.len() == 0 && p.respReg.len() == 0 && len(p.ini.inSPIs) == 0 && len(p.resp.inSPIs) == 0
				})
			})
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	// Generous: CI machines are shared and slow.
	for i := 0; i < 2000; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("condition not reached")
}

func TestCookie(t *testing.T) {
	p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{AlwaysCookie: true})
	// The Established callbacks fire once on each side.
	ch := make(chan *IKESA, 4)
	p.iniCfg.Established = func(sa *IKESA) { ch <- sa }
	p.respCfg.Established = func(sa *IKESA) { ch <- sa }
	if err := p.resp.Respond(p.respCfg); err != nil {
		t.Fatal(err)
	}
	sa, err := p.initiate(t)
	if err != nil {
		t.Fatal(err)
	}
	checkEstablished(t, p, sa)
	for i := 0; i < 2; i++ {
		select {
		case got := <-ch:
			if a, _ := got.SPIs(); a != func() uint64 { s, _ := sa.SPIs(); return s }() || len(got.Children()) != 1 {
				t.Fatalf("Established for %x with %d children", a, len(got.Children()))
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Established not called on both sides")
		}
	}
}

func TestCookieJar(t *testing.T) {
	j := newCookieJar()
	now := time.Now()
	j.now = func() time.Time { return now }
	ni := []byte("0123456789abcdef")
	ip := netip.MustParseAddr("192.0.2.1")
	c := j.make(ni, ip, 7)
	if !j.valid(c, ni, ip, 7) {
		t.Fatal("fresh cookie rejected")
	}
	for _, bad := range []struct {
		ni  []byte
		ip  netip.Addr
		spi uint64
	}{{[]byte("0123456789abcdeX"), ip, 7}, {ni, netip.MustParseAddr("192.0.2.2"), 7}, {ni, ip, 8}} {
		if j.valid(c, bad.ni, bad.ip, bad.spi) {
			t.Fatalf("cookie valid for %+v", bad)
		}
	}
	now = now.Add(cookieRotate)
	if !j.valid(c, ni, ip, 7) {
		t.Fatal("cookie of the previous secret rejected")
	}
	now = now.Add(cookieRotate)
	if j.valid(c, ni, ip, 7) {
		t.Fatal("cookie two secrets old accepted")
	}
}

func TestInvalidKE(t *testing.T) {
	p := newPair(t, "aes128gcm16-prfsha256-ecp256", "aes128gcm16", ListenConfig{})
	// The initiator sends its KE for X25519 first; the responder only
	// takes P-256 and answers INVALID_KE_PAYLOAD.
	p.iniCfg.IKE = []Proposal{MustParseProposal("aes128gcm16-prfsha256-x25519-ecp256", true)}
	sa, err := p.initiate(t)
	if err != nil {
		t.Fatal(err)
	}
	checkEstablished(t, p, sa)
	if g := sa.Suite().DH; g != message.DH_ECP256 {
		t.Fatalf("group %d, want 19", g)
	}
}

func TestForceEncap(t *testing.T) {
	p := newPair(t, "aes256gcm16-prfsha384-ecp384", "null-sha256", ListenConfig{})
	p.iniCfg.ForceEncap = true
	sa, err := p.initiate(t)
	if err != nil {
		t.Fatal(err)
	}
	i, _ := checkEstablished(t, p, sa)
	_, rnatt := p.resp.Addrs()
	_, inatt := p.ini.Addrs()
	if _, remote, natt := sa.Addrs(); !natt || remote.Port() != rnatt.Port() {
		t.Fatalf("IKE did not move to the NAT-T port: %v %v", remote, natt)
	}
	info, _ := p.iniReg.get(i.OutSPI)
	if info.Encap != EncapUDP || info.SrcPort != inatt.Port() || info.DstPort != rnatt.Port() || !info.Null {
		t.Fatalf("registered %+v, want UDP encapsulation %d -> %d", info, inatt.Port(), rnatt.Port())
	}
}

func TestFailures(t *testing.T) {
	t.Run("wrong PSK", func(t *testing.T) {
		p := newPair(t, "aes128-sha256-x25519", "null-sha256", ListenConfig{})
		p.iniCfg.PSK = []byte("not the key")
		_, err := p.initiate(t)
		var ne *NotifyError
		if !errors.As(err, &ne) || ne.Type != message.AUTHENTICATION_FAILED {
			t.Fatalf("got %v, want AUTHENTICATION_FAILED", err)
		}
		if p.respReg.len() != 0 || p.iniReg.len() != 0 {
			t.Fatal("SAs registered after failed authentication")
		}
	})
	t.Run("responder not who we expect", func(t *testing.T) {
		p := newPair(t, "aes128-sha256-x25519", "null-sha256", ListenConfig{})
		p.iniCfg.RemoteID = FQDN("c.lab.example")
		_, err := p.initiate(t)
		if !errors.Is(err, ErrAuthentication) {
			t.Fatalf("got %v, want ErrAuthentication", err)
		}
		// The initiator deletes the IKE SA it could not authenticate, so
		// the responder drops its Child SA again.
		waitFor(t, func() bool { return p.respReg.len() == 0 && len(p.resp.IKESAs()) == 0 })
	})
	t.Run("no IKE proposal", func(t *testing.T) {
		p := newPair(t, "aes256-sha384-ecp384", "null-sha256", ListenConfig{})
		p.iniCfg.IKE = []Proposal{MustParseProposal("chacha20poly1305-prfsha256-x25519", true)}
		_, err := p.initiate(t)
		var ne *NotifyError
		if !errors.As(err, &ne) || ne.Type != message.NO_PROPOSAL_CHOSEN {
			t.Fatalf("got %v, want NO_PROPOSAL_CHOSEN", err)
		}
	})
	t.Run("no ESP proposal", func(t *testing.T) {
		p := newPair(t, "aes128gcm16-prfsha256-x25519", "aes256gcm16", ListenConfig{})
		p.iniCfg.ESP = []Proposal{MustParseProposal("null-sha256", false)}
		sa, err := p.initiate(t)
		var ne *NotifyError
		if sa == nil || !errors.As(err, &ne) || ne.Type != message.NO_PROPOSAL_CHOSEN {
			t.Fatalf("got %v, %v; want the IKE SA and NO_PROPOSAL_CHOSEN", sa, err)
		}
		if len(sa.Children()) != 0 || p.iniReg.len() != 0 || p.respReg.len() != 0 {
			t.Fatal("Child SA registered although refused")
		}
	})
	t.Run("disjoint traffic selectors", func(t *testing.T) {
		p := newPair(t, "aes128gcm16-prfsha256-x25519", "aes256gcm16", ListenConfig{})
		p.iniCfg.RemoteTS = []message.Selector{PrefixSelector(netip.MustParsePrefix("192.0.2.0/24"))}
		_, err := p.initiate(t)
		var ne *NotifyError
		if !errors.As(err, &ne) || ne.Type != message.TS_UNACCEPTABLE {
			t.Fatalf("got %v, want TS_UNACCEPTABLE", err)
		}
	})
	t.Run("registrar refuses", func(t *testing.T) {
		p := newPair(t, "aes128gcm16-prfsha256-x25519", "aes256gcm16", ListenConfig{})
		p.respReg.mu.Lock()
		p.respReg.fail = true
		p.respReg.mu.Unlock()
		_, err := p.initiate(t)
		var ne *NotifyError
		if !errors.As(err, &ne) || ne.Type != message.TEMPORARY_FAILURE {
			t.Fatalf("got %v, want TEMPORARY_FAILURE", err)
		}
	})
	t.Run("initiator's registrar refuses", func(t *testing.T) {
		p := newPair(t, "aes128gcm16-prfsha256-x25519", "aes256gcm16", ListenConfig{})
		p.iniReg.mu.Lock()
		p.iniReg.fail = true
		p.iniReg.mu.Unlock()
		sa, err := p.initiate(t)
		if sa == nil || err == nil {
			t.Fatalf("got %v, %v; want the IKE SA and an error", sa, err)
		}
		// The responder had installed the Child SA; the initiator deletes it.
		waitFor(t, func() bool {
			return p.respReg.len() == 0 && len(p.responderSA(t, func() uint64 { s, _ := sa.SPIs(); return s }()).Children()) == 0
		})
	})
	t.Run("weak policy", func(t *testing.T) {
		for _, c := range []struct{ ike, esp string }{
			{"aes128-sha256-modp1024", "aes128gcm16"},
			{"aes128-md5-x25519", "aes128gcm16"},
			{"aes128gcm16-prfsha256-x25519", "null"},
			{"aes128gcm16-prfsha256-x25519", "aes128-md5"},
			{"null-sha256-prfsha256-x25519", "aes128gcm16"},
			{"aes128-aesxcbc-prfsha256-x25519", "aes128gcm16"},
			{"aes128ccm16-prfsha256-x25519", "aes128gcm16"},
		} {
			ini, _ := configs(c.ike, c.esp, nil, nil)
			e := listen(t, ListenConfig{})
			if _, err := e.Initiate(context.Background(), ini, netip.AddrPortFrom(loopback, 9)); !errors.Is(err, ErrConfig) {
				t.Fatalf("%s / %s: %v, want ErrConfig", c.ike, c.esp, err)
			}
		}
	})
}

// TestRetransmitTimeout checks the schedule against a silent peer: the
// request goes out Tries+1 times and the exchange gives up after the
// summed intervals.
func TestRetransmitTimeout(t *testing.T) {
	sink, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	var got atomic.Int32
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := sink.ReadFromUDP(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	ini, _ := configs("aes128gcm16-prfsha256-x25519", "null-sha256", nil, nil)
	ini.Retransmit = Retransmit{Timeout: 20 * time.Millisecond, Base: 2, Tries: 3}
	e := listen(t, ListenConfig{})
	start := time.Now()
	_, err = e.Initiate(context.Background(), ini, sink.LocalAddr().(*net.UDPAddr).AddrPort())
	took := time.Since(start)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	want := ini.Retransmit.Total() // 20+40+80+160 ms
	if took < want || took > want+2*time.Second {
		t.Fatalf("gave up after %v, schedule says %v", took, want)
	}
	waitFor(t, func() bool { return got.Load() == 4 })
	if DefaultRetransmit.Total() < 160*time.Second || DefaultRetransmit.Total() > 170*time.Second {
		t.Fatalf("default schedule totals %v, strongSwan's is about 165 s", DefaultRetransmit.Total())
	}
}
