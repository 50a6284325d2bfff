package ike

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

// eventRecorder is a recorder that also logs the order of calls:
// "+spi" for RegisterSA, "-spi" for UnregisterSA.
type eventRecorder struct {
	recorder
	emu    sync.Mutex
	events []string
}

func (r *eventRecorder) RegisterSA(i SAInfo) error {
	if err := r.recorder.RegisterSA(i); err != nil {
		return err
	}
	r.emu.Lock()
	r.events = append(r.events, fmt.Sprintf("+%08x", i.SPI))
	r.emu.Unlock()
	return nil
}

func (r *eventRecorder) UnregisterSA(i SAInfo) {
	r.recorder.UnregisterSA(i)
	r.emu.Lock()
	r.events = append(r.events, fmt.Sprintf("-%08x", i.SPI))
	r.emu.Unlock()
}

func (r *eventRecorder) log() []string {
	r.emu.Lock()
	defer r.emu.Unlock()
	return slices.Clone(r.events)
}

// rekeyPair is a pair whose registrars log event order.
type rekeyPair struct {
	*pair
	iniEv, respEv *eventRecorder
}

func newRekeyPair(t *testing.T, iniESP, respESP string) *rekeyPair {
	t.Helper()
	rp := &rekeyPair{pair: newPair(t, "aes128gcm16-prfsha256-x25519", iniESP, ListenConfig{}), iniEv: &eventRecorder{}, respEv: &eventRecorder{}}
	rp.iniCfg.Registrar, rp.respCfg.Registrar = rp.iniEv, rp.respEv
	rp.respCfg.ESP = []Proposal{MustParseProposal(respESP, false)}
	// Generous retransmissions: the machine may be loaded.
	rp.iniCfg.Retransmit = Retransmit{Timeout: 200 * time.Millisecond, Base: 1.5, Tries: 8}
	rp.respCfg.Retransmit = rp.iniCfg.Retransmit
	if err := rp.resp.Respond(rp.respCfg); err != nil {
		t.Fatal(err)
	}
	// checkEstablished looks at pair's recorders.
	rp.iniReg, rp.respReg = &rp.iniEv.recorder, &rp.respEv.recorder
	return rp
}

// establish brings up the IKE SA and returns both ends and their Child SAs.
func (rp *rekeyPair) establish(t *testing.T) (isa, rsa *IKESA, ic, rc *ChildSA) {
	t.Helper()
	isa, err := rp.initiate(t)
	if err != nil {
		t.Fatal(err)
	}
	ic, rc = checkEstablished(t, rp.pair, isa)
	spiI, _ := isa.SPIs()
	return isa, rp.responderSA(t, spiI), ic, rc
}

// waitChildren waits until both IKE SAs carry exactly one Child SA other
// than the old ones and returns them.
func waitChildren(t *testing.T, isa, rsa *IKESA, oldI, oldR *ChildSA) (ic, rc *ChildSA) {
	t.Helper()
	waitFor(t, func() bool {
		a, b := isa.Children(), rsa.Children()
		return len(a) == 1 && len(b) == 1 && a[0] != oldI && b[0] != oldR
	})
	return isa.Children()[0], rsa.Children()[0]
}

// checkRekeyed checks a completed rekey: the new Child SA is the only one
// on each side, its keys and registrations match (checkEstablished), the
// traffic selectors are the old ones, the old SPIs are gone from the
// registrars and each registrar saw the new SA registered before the old
// one was unregistered.
func checkRekeyed(t *testing.T, rp *rekeyPair, isa *IKESA, oldI, oldR *ChildSA, pfs uint16) (ic, rc *ChildSA) {
	t.Helper()
	waitChildren(t, isa, rp.responderSA(t, func() uint64 { a, _ := isa.SPIs(); return a }()), oldI, oldR)
	ic, rc = checkEstablished(t, rp.pair, isa)
	if ic.InSPI == oldI.InSPI || ic.OutSPI == oldI.OutSPI {
		t.Fatalf("new SPIs %08x/%08x reuse the old %08x/%08x", ic.InSPI, ic.OutSPI, oldI.InSPI, oldI.OutSPI)
	}
	if ic.Initiated == rc.Initiated {
		t.Fatal("both sides claim the same role in the rekey exchange")
	}
	if ic.Suite.DH != pfs || rc.Suite.DH != pfs {
		t.Fatalf("PFS group %d/%d, want %d", ic.Suite.DH, rc.Suite.DH, pfs)
	}
	if string(ic.Keys.EncrI) == string(oldI.Keys.EncrI) && len(ic.Keys.EncrI) > 0 || string(ic.Keys.IntegI) == string(oldI.Keys.IntegI) && len(ic.Keys.IntegI) > 0 {
		t.Fatal("new Child SA has the old keys")
	}
	for _, c := range []struct {
		name     string
		old, new *ChildSA
		ev       *eventRecorder
	}{{"initiator", oldI, ic, rp.iniEv}, {"responder", oldR, rc, rp.respEv}} {
		if fmt.Sprint(c.old.LocalTS, c.old.RemoteTS) != fmt.Sprint(c.new.LocalTS, c.new.RemoteTS) {
			t.Fatalf("%s: selectors changed from %v/%v to %v/%v", c.name, c.old.LocalTS, c.old.RemoteTS, c.new.LocalTS, c.new.RemoteTS)
		}
		if c.old.Mode != c.new.Mode {
			t.Fatalf("%s: mode changed", c.name)
		}
		if n := c.ev.len(); n != 2 {
			t.Fatalf("%s: %d SAs registered, want 2", c.name, n)
		}
		unregistered := func() bool {
			ev := c.ev.log()
			return slices.Contains(ev, fmt.Sprintf("-%08x", c.old.OutSPI)) && slices.Contains(ev, fmt.Sprintf("-%08x", c.old.InSPI))
		}
		waitFor(t, unregistered)
		ev := c.ev.log()
		idx := func(e string) int { return slices.Index(ev, e) }
		regOut, regIn := idx(fmt.Sprintf("+%08x", c.new.OutSPI)), idx(fmt.Sprintf("+%08x", c.new.InSPI))
		unOut, unIn := idx(fmt.Sprintf("-%08x", c.old.OutSPI)), idx(fmt.Sprintf("-%08x", c.old.InSPI))
		if regOut < 0 || regIn < 0 || unOut < 0 || unIn < 0 || max(regOut, regIn) > min(unOut, unIn) {
			t.Fatalf("%s: registrar events %v: want the new SA %08x/%08x registered before the old %08x/%08x is unregistered",
				c.name, ev, c.new.OutSPI, c.new.InSPI, c.old.OutSPI, c.old.InSPI)
		}
	}
	return ic, rc
}

// TestRekeyChild rekeys the Child SA from either end, with and without
// PFS, twice in a row.
func TestRekeyChild(t *testing.T) {
	for _, tc := range []struct {
		name             string
		iniESP, respESP  string
		byResponder      bool
		pfs              uint16
		transport, encap bool
		iniExtra         string // a second ESP proposal of the initiator
	}{
		// The rekeyer offers PFS first; the peer takes the proposal without.
		{name: "pfs-declined", iniESP: "aes128gcm16-x25519", iniExtra: "aes256gcm16", respESP: "aes256gcm16"},
		{name: "initiator", iniESP: "null-sha256", respESP: "null-sha256"},
		{name: "responder", iniESP: "null-sha256", respESP: "null-sha256", byResponder: true},
		{name: "initiator-pfs", iniESP: "aes128gcm16-x25519", respESP: "aes128gcm16-x25519", pfs: message.DH_CURVE25519},
		{name: "responder-pfs-modp", iniESP: "aes256-sha256-modp2048", respESP: "aes256-sha256-modp2048", byResponder: true, pfs: message.DH_MODP2048},
		// The rekeyer's KE is for ecp256; the peer wants curve25519.
		{name: "initiator-pfs-invalid-ke", iniESP: "aes128gcm16-ecp256-x25519", respESP: "aes128gcm16-x25519", pfs: message.DH_CURVE25519},
		{name: "responder-pfs-invalid-ke", iniESP: "aes128gcm16-x25519", respESP: "aes128gcm16-ecp256-x25519", byResponder: true, pfs: message.DH_CURVE25519},
		{name: "transport-encap", iniESP: "null-sha1", respESP: "null-sha1", transport: true, encap: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp := newRekeyPair(t, tc.iniESP, tc.respESP)
			if tc.iniExtra != "" {
				rp.iniCfg.ESP = append(rp.iniCfg.ESP, MustParseProposal(tc.iniExtra, false))
			}
			if tc.transport || tc.encap {
				rp.iniCfg.ForceEncap = tc.encap
				if tc.transport {
					rp.iniCfg.Mode, rp.respCfg.Mode = ModeTransport, ModeTransport
					rp.iniCfg.LocalTS, rp.iniCfg.RemoteTS, rp.respCfg.LocalTS, rp.respCfg.RemoteTS = nil, nil, nil, nil
				}
				if err := rp.resp.Respond(rp.respCfg); err != nil {
					t.Fatal(err)
				}
			}
			isa, rsa, oldI, oldR := rp.establish(t)
			for round := range 2 {
				rekeyer, old := isa, oldI
				if tc.byResponder {
					rekeyer, old = rsa, oldR
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				nc, err := rekeyer.RekeyChild(ctx, old)
				cancel()
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				ic, rc := checkRekeyed(t, rp, isa, oldI, oldR, tc.pfs)
				if tc.byResponder && nc != rc || !tc.byResponder && nc != ic {
					t.Fatal("RekeyChild did not return the new Child SA")
				}
				if !nc.Initiated {
					t.Fatal("the rekeyer's new Child SA is not marked as initiated by it")
				}
				if tc.encap && ic.Encap != EncapUDP {
					t.Fatal("rekeyed SA lost UDP encapsulation")
				}
				if _, err := rekeyer.RekeyChild(context.Background(), old); err != ErrNoChild {
					t.Fatalf("rekeying the deleted SA again: %v, want ErrNoChild", err)
				}
				oldI, oldR = ic, rc
				rp.iniEv.emu.Lock()
				rp.iniEv.events = nil
				rp.iniEv.emu.Unlock()
				rp.respEv.emu.Lock()
				rp.respEv.events = nil
				rp.respEv.emu.Unlock()
			}
		})
	}
}

// ikeHeader decodes the IKE header of a datagram, skipping a non-ESP
// marker.
func ikeHeader(pkt []byte) (message.Header, bool) {
	if len(pkt) >= 4 && string(pkt[:4]) == string(nonESPMarker) {
		pkt = pkt[4:]
	}
	h, err := message.DecodeHeader(pkt)
	return h, err == nil
}

// TestRekeyCollision has both ends rekey the same Child SA at once. A
// proxy holds back CREATE_CHILD_SA responses until both requests have
// crossed, so that both exchanges complete and the nonce rule of RFC 7296
// 2.8.1 decides: exactly one new SA per direction remains.
func TestRekeyCollision(t *testing.T) {
	for _, tc := range []struct{ name, esp string }{
		{"no-pfs", "null-sha256"},
		{"pfs", "aes128gcm16-ecp256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp := newRekeyPair(t, tc.esp, tc.esp)
			rp.nat = true
			rike, rnatt := rp.resp.Addrs()
			// Requests are dropped until both sides have sent one (so
			// neither arrives before the other side started its rekey),
			// responses until both sides have answered the other's request
			// (so both exchanges complete and each side has seen the
			// collision before its own answer; once both requests are
			// merely forwarded, a side's workers may still handle its
			// answer first, see TestRekeyCollisionPeerFirst).
			var mu sync.Mutex
			seen, forwarded, answered := map[bool]bool{}, map[bool]bool{}, map[bool]bool{}
			proxyIKE := newNATProxy(t, rike, nil)
			proxyNATT := newNATProxy(t, rnatt, func(fromTarget bool, pkt []byte) bool {
				h, ok := ikeHeader(pkt)
				if !ok || h.Exchange != message.CREATE_CHILD_SA {
					return false
				}
				mu.Lock()
				defer mu.Unlock()
				if !h.IsResponse() {
					seen[fromTarget] = true
					if len(seen) < 2 {
						return true
					}
					forwarded[fromTarget] = true
					return false
				}
				answered[fromTarget] = true
				return len(answered) < 2
			})
			rp.iniCfg.RemoteNATPort = proxyNATT.addr().Port()
			isa, err := rp.ini.Initiate(t.Context(), rp.iniCfg, proxyIKE.addr())
			if err != nil {
				t.Fatal(err)
			}
			oldI, oldR := checkEstablished(t, rp.pair, isa)
			spiI, _ := isa.SPIs()
			rsa := rp.responderSA(t, spiI)

			got, errs := rekeyChildBoth(isa, rsa, oldI, oldR)
			if errs[0] != nil || errs[1] != nil {
				t.Fatalf("rekeys: %v / %v", errs[0], errs[1])
			}
			mu.Lock()
			if len(forwarded) != 2 {
				t.Fatalf("CREATE_CHILD_SA requests forwarded: %v", forwarded)
			}
			mu.Unlock()
			ic, rc := checkRekeyed(t, rp, isa, oldI, oldR, rp.iniCfg.ESP[0].dhOrNone())
			if got[0] != ic || got[1] != rc {
				t.Fatalf("the survivors returned (%p, %p) are not the remaining SAs (%p, %p)", got[0], got[1], ic, rc)
			}
			// Nothing is left registered but the survivor (checkRekeyed
			// counted 2 per side); give late deletes time to arrive.
			time.Sleep(50 * time.Millisecond)
			if len(isa.Children()) != 1 || len(rsa.Children()) != 1 || rp.iniEv.len() != 2 || rp.respEv.len() != 2 {
				t.Fatalf("after the collision: %d/%d children, %d/%d registrations", len(isa.Children()), len(rsa.Children()), rp.iniEv.len(), rp.respEv.len())
			}
		})
	}
}

// TestRekeyCollisionPeerFirst has both ends rekey the same Child SA, but
// the responder's rekey completes before it sees the initiator's request
// (a worker handled its answer first, or the request was delayed): it
// deletes the old SA and then refuses the request for it (TEMPORARY_FAILURE
// while deleting, CHILD_SA_NOT_FOUND once gone, RFC 7296 2.25). The
// initiator answered the responder's rekey meanwhile, so that SA replaced
// the old one, and RekeyChild returns it instead of failing.
func TestRekeyCollisionPeerFirst(t *testing.T) {
	rp := newRekeyPair(t, "aes128gcm16-ecp256", "aes128gcm16-ecp256")
	rp.nat = true
	rike, rnatt := rp.resp.Addrs()
	var mu sync.Mutex
	iniSent, deleteSeen, lateForwarded := false, false, false
	proxyIKE := newNATProxy(t, rike, nil)
	proxyNATT := newNATProxy(t, rnatt, func(fromTarget bool, pkt []byte) bool {
		h, ok := ikeHeader(pkt)
		if !ok || h.IsResponse() {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case h.Exchange == message.INFORMATIONAL && fromTarget:
			deleteSeen = true
		case h.Exchange == message.CREATE_CHILD_SA && fromTarget:
			// The responder's request goes once the initiator's rekey
			// is outstanding, so the initiator sees a collision.
			return !iniSent
		case h.Exchange == message.CREATE_CHILD_SA:
			// The initiator's request is held until the responder has
			// completed its rekey and deletes the old SA.
			iniSent = true
			lateForwarded = deleteSeen
			return !deleteSeen
		}
		return false
	})
	rp.iniCfg.RemoteNATPort = proxyNATT.addr().Port()
	isa, err := rp.ini.Initiate(t.Context(), rp.iniCfg, proxyIKE.addr())
	if err != nil {
		t.Fatal(err)
	}
	oldI, oldR := checkEstablished(t, rp.pair, isa)
	spiI, _ := isa.SPIs()
	rsa := rp.responderSA(t, spiI)
	got, errs := rekeyChildBoth(isa, rsa, oldI, oldR)
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("rekeys: %v / %v", errs[0], errs[1])
	}
	mu.Lock()
	if !lateForwarded {
		t.Fatal("the initiator's request did not arrive after the responder's Delete")
	}
	mu.Unlock()
	ic, rc := checkRekeyed(t, rp, isa, oldI, oldR, rp.iniCfg.ESP[0].dhOrNone())
	if got[0] != ic || got[1] != rc {
		t.Fatalf("the survivors returned (%p, %p) are not the remaining SAs (%p, %p)", got[0], got[1], ic, rc)
	}
	if ic.Initiated || !rc.Initiated {
		t.Fatal("the survivor is not the responder's rekey")
	}
	if len(isa.Children()) != 1 || len(rsa.Children()) != 1 || rp.iniEv.len() != 2 || rp.respEv.len() != 2 {
		t.Fatalf("after the collision: %d/%d children, %d/%d registrations", len(isa.Children()), len(rsa.Children()), rp.iniEv.len(), rp.respEv.len())
	}
	// The survivor carries the IKE SA on.
	if _, err := isa.RekeyChild(t.Context(), ic); err != nil {
		t.Fatal(err)
	}
}

func (p Proposal) dhOrNone() uint16 {
	if len(p.DH) > 0 {
		return p.DH[0]
	}
	return 0
}

// TestRekeyMalformed sends broken CREATE_CHILD_SA requests on an
// established IKE SA: each gets its notify, and the Child SA stays.
func TestRekeyMalformed(t *testing.T) {
	rp := newRekeyPair(t, "aes128gcm16-x25519", "aes128gcm16-x25519")
	isa, rsa, ic, rc := rp.establish(t)
	spi := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	rekeySA := func(s []byte) *message.Notify {
		return &message.Notify{Protocol: message.ProtoESP, SPI: s, Kind: message.REKEY_SA}
	}
	esp := func(s string) *message.SA {
		return saPayload([]Proposal{MustParseProposal(s, false)}, message.ProtoESP, spi(0x1234567))
	}
	nonce := &message.Nonce{Data: make([]byte, 32)}
	ts := []message.Payload{&message.TS{Initiator: true, Selectors: ic.LocalTS}, &message.TS{Selectors: ic.RemoteTS}}
	x25519 := &message.KE{Group: message.DH_CURVE25519, Data: make([]byte, 32)}
	x25519.Data[0] = 9 // the base point: a valid public value
	for _, tc := range []struct {
		name string
		ps   []message.Payload
		want message.NotifyType
		data []byte
	}{
		{"unknown SPI", append([]message.Payload{rekeySA(spi(ic.InSPI ^ 1)), esp("aes128gcm16-x25519"), nonce, x25519}, ts...), message.CHILD_SA_NOT_FOUND, nil},
		{"AH", append([]message.Payload{&message.Notify{Protocol: message.ProtoAH, SPI: spi(ic.InSPI), Kind: message.REKEY_SA}, esp("aes128gcm16-x25519"), nonce, x25519}, ts...), message.CHILD_SA_NOT_FOUND, nil},
		{"short SPI", append([]message.Payload{rekeySA([]byte{1, 2}), esp("aes128gcm16-x25519"), nonce, x25519}, ts...), message.INVALID_SYNTAX, nil},
		{"no nonce", append([]message.Payload{rekeySA(spi(ic.InSPI)), esp("aes128gcm16-x25519"), x25519}, ts...), message.INVALID_SYNTAX, nil},
		{"no SA", append([]message.Payload{rekeySA(spi(ic.InSPI)), nonce, x25519}, ts...), message.INVALID_SYNTAX, nil},
		{"no TS", []message.Payload{rekeySA(spi(ic.InSPI)), esp("aes128gcm16-x25519"), nonce, x25519}, message.INVALID_SYNTAX, nil},
		{"wrong KE group", append([]message.Payload{rekeySA(spi(ic.InSPI)), esp("aes128gcm16-x25519"), nonce, &message.KE{Group: message.DH_ECP256, Data: make([]byte, 64)}}, ts...), message.INVALID_KE_PAYLOAD, []byte{0, 31}},
		{"no KE", append([]message.Payload{rekeySA(spi(ic.InSPI)), esp("aes128gcm16-x25519"), nonce}, ts...), message.INVALID_KE_PAYLOAD, []byte{0, 31}},
		{"bad KE value", append([]message.Payload{rekeySA(spi(ic.InSPI)), esp("aes128gcm16-x25519"), nonce, &message.KE{Group: message.DH_CURVE25519, Data: make([]byte, 32)}}, ts...), message.INVALID_SYNTAX, nil},
		{"no PFS offered", append([]message.Payload{rekeySA(spi(ic.InSPI)), esp("aes128gcm16"), nonce}, ts...), message.NO_PROPOSAL_CHOSEN, nil},
		{"mode change", append([]message.Payload{rekeySA(spi(ic.InSPI)), &message.Notify{Kind: message.USE_TRANSPORT_MODE}, esp("aes128gcm16-x25519"), nonce, x25519}, ts...), message.NO_PROPOSAL_CHOSEN, nil},
		{"foreign selectors", []message.Payload{rekeySA(spi(ic.InSPI)), esp("aes128gcm16-x25519"), nonce, x25519,
			&message.TS{Initiator: true, Selectors: []message.Selector{PrefixSelector(netip.MustParsePrefix("192.0.2.0/24"))}}, ts[1]}, message.TS_UNACCEPTABLE, nil},
		{"new Child SA, foreign selectors", []message.Payload{esp("aes128gcm16-x25519"), nonce, x25519,
			&message.TS{Initiator: true, Selectors: []message.Selector{PrefixSelector(netip.MustParsePrefix("192.0.2.0/24"))}}, ts[1]}, message.TS_UNACCEPTABLE, nil},
		{"new Child SA, transport mode", append([]message.Payload{&message.Notify{Kind: message.USE_TRANSPORT_MODE}, esp("aes128gcm16-x25519"), nonce, x25519}, ts...), message.TS_UNACCEPTABLE, nil},
		{"new Child SA, no KE", append([]message.Payload{esp("aes128gcm16-x25519"), nonce}, ts...), message.INVALID_KE_PAYLOAD, []byte{0, 31}},
		{"IKE rekey zero SPI", []message.Payload{saPayload(rp.iniCfg.IKE, message.ProtoIKE, make([]byte, 8)), nonce, x25519}, message.INVALID_SYNTAX, nil},
		{"IKE rekey no KE", []message.Payload{saPayload(rp.iniCfg.IKE, message.ProtoIKE, spi(1)), nonce}, message.INVALID_SYNTAX, nil},
		{"IKE rekey wrong group", []message.Payload{saPayload(rp.iniCfg.IKE, message.ProtoIKE, append(spi(1), spi(2)...)), nonce,
			&message.KE{Group: message.DH_ECP256, Data: make([]byte, 64)}}, message.INVALID_KE_PAYLOAD, []byte{0, 31}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := isa.request(ctx, message.CREATE_CHILD_SA, tc.ps)
			if err != nil {
				t.Fatal(err)
			}
			n := message.FindNotify(resp, tc.want)
			if n == nil || len(resp) != 1 || string(n.Data) != string(tc.data) {
				t.Fatalf("answered with %v, want only %v %x", resp, tc.want, tc.data)
			}
			if c := rsa.Children(); len(c) != 1 || c[0] != rc || rp.respEv.len() != 2 {
				t.Fatalf("responder has %d Child SAs, %d registrations", len(c), rp.respEv.len())
			}
		})
	}
	// The SA can still be rekeyed after all that.
	if _, err := isa.RekeyChild(t.Context(), ic); err != nil {
		t.Fatal(err)
	}
	checkRekeyed(t, rp, isa, ic, rc, message.DH_CURVE25519)
}

// TestChildRekeyTime lets the initiator rekey its Child SA on its own
// (Config.ChildRekeyTime) a few times; each new SA must match on both
// sides, and deleting the IKE SA leaves nothing registered.
func TestChildRekeyTime(t *testing.T) {
	rp := newRekeyPair(t, "aes128gcm16-x25519", "aes128gcm16-x25519")
	// The hard lifetime well above the rekey time: a loaded machine may
	// take a while to rekey.
	rp.iniCfg.ChildRekeyTime, rp.iniCfg.ChildLifeTime = 200*time.Millisecond, 10*time.Second
	isa, rsa, ic, _ := rp.establish(t)
	seen := map[uint32]bool{ic.InSPI: true}
	waitFor(t, func() bool {
		if c := isa.Children(); len(c) == 1 {
			seen[c[0].InSPI] = true
		}
		return len(seen) >= 4
	})
	// Between rekeys both ends agree on the current SA.
	waitFor(t, func() bool {
		a, b := isa.Children(), rsa.Children()
		return len(a) == 1 && len(b) == 1 && a[0].InSPI == b[0].OutSPI && a[0].OutSPI == b[0].InSPI &&
			string(a[0].Keys.EncrI) == string(b[0].Keys.EncrI) && string(a[0].Keys.EncrR) == string(b[0].Keys.EncrR) && a[0].Suite.DH == message.DH_CURVE25519
	})
	if err := isa.Delete(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return rp.iniEv.len() == 0 && rp.respEv.len() == 0 })
}

// TestRekeyIKE rekeys the IKE SA from either end: both see the same new
// SPIs and keys, the Child SA stays registered, the old SA's retired keys
// go with its Delete, and the new SA carries liveness checks and a Child
// SA rekey (KEYMAT from the new SK_d).
func TestRekeyIKE(t *testing.T) {
	for _, byResponder := range []bool{false, true} {
		t.Run(fmt.Sprintf("by-responder=%v", byResponder), func(t *testing.T) {
			rp := newRekeyPair(t, "null-sha256", "null-sha256")
			isa, rsa, ic, rc := rp.establish(t)
			for round := range 2 {
				oldI, oldR := isa.SPIs()
				oldKeys := isa.Keys()
				rekeyer := isa
				if byResponder {
					rekeyer = rsa
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				if err := rekeyer.RekeyIKE(ctx); err != nil {
					cancel()
					t.Fatalf("round %d: %v", round, err)
				}
				newI, newR := isa.SPIs()
				if newI == oldI || newR == oldR || string(isa.Keys().SKd) == string(oldKeys.SKd) {
					t.Fatal("SPIs or keys unchanged")
				}
				waitFor(t, func() bool { a, b := rsa.SPIs(); return a == newI && b == newR })
				checkEstablished(t, rp.pair, isa)
				if c := isa.Children(); len(c) != 1 || c[0] != ic {
					t.Fatal("initiator's Child SA changed")
				}
				// The retired SAs are gone once the old SA is deleted.
				for _, e := range []*Endpoint{rp.ini, rp.resp} {
					waitFor(t, func() bool { e.mu.Lock(); defer e.mu.Unlock(); return len(e.sas) == 1 })
				}
				for _, sa := range []*IKESA{isa, rsa} {
					if err := sa.Ping(ctx); err != nil {
						t.Fatalf("round %d: liveness check: %v", round, err)
					}
				}
				cancel()
			}
			if _, err := isa.RekeyChild(t.Context(), ic); err != nil {
				t.Fatal(err)
			}
			checkRekeyed(t, rp, isa, ic, rc, 0)
			if err := rsa.Delete(t.Context()); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return rp.iniEv.len() == 0 && rp.respEv.len() == 0 && len(rp.ini.IKESAs()) == 0 })
		})
	}
}

// TestRekeyIKESimultaneous has both ends rekey the IKE SA at once. Either
// one rekey wins or both are refused with TEMPORARY_FAILURE; in every case
// both ends agree afterwards and the SA and its Child SA keep working.
func TestRekeyIKESimultaneous(t *testing.T) {
	rp := newRekeyPair(t, "null-sha256", "null-sha256")
	isa, rsa, ic, _ := rp.establish(t)
	for round := range 3 {
		errs := rekeyIKEBoth(isa, rsa, 20*time.Second)
		for _, err := range errs {
			var ne *NotifyError
			if err != nil && !(errors.As(err, &ne) && ne.Type == message.TEMPORARY_FAILURE) {
				t.Fatalf("round %d: %v / %v", round, errs[0], errs[1])
			}
		}
		t.Logf("round %d: %v / %v", round, errs[0], errs[1])
		waitFor(t, func() bool {
			a, b := isa.SPIs()
			c, d := rsa.SPIs()
			return a == c && b == d
		})
		checkEstablished(t, rp.pair, isa)
		if c := isa.Children(); len(c) != 1 || c[0] != ic {
			t.Fatal("Child SA changed")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		for _, sa := range []*IKESA{isa, rsa} {
			if err := sa.Ping(ctx); err != nil {
				cancel()
				t.Fatalf("round %d: liveness check: %v", round, err)
			}
		}
		cancel()
	}
}

// rekeyIKEBoth has both ends rekey their IKE SA at once, each with the
// given timeout, and returns their errors (initiator first).
func rekeyIKEBoth(isa, rsa *IKESA, timeout time.Duration) [2]error {
	var wg sync.WaitGroup
	var errs [2]error
	for k, sa := range []*IKESA{isa, rsa} {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			errs[k] = sa.RekeyIKE(ctx)
		})
	}
	wg.Wait()
	return errs
}

// rekeyChildBoth has both ends rekey their side of one Child SA at once
// (oldI at the initiator, oldR at the responder) and returns the new Child
// SAs and errors (initiator first).
func rekeyChildBoth(isa, rsa *IKESA, oldI, oldR *ChildSA) ([2]*ChildSA, [2]error) {
	var wg sync.WaitGroup
	var got [2]*ChildSA
	var errs [2]error
	for k, sa := range []*IKESA{isa, rsa} {
		old := oldI
		if k == 1 {
			old = oldR
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			got[k], errs[k] = sa.RekeyChild(ctx, old)
		})
	}
	wg.Wait()
	return got, errs
}
