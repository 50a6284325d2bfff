package ike

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

func prefixTS(s string) []message.Selector {
	return []message.Selector{PrefixSelector(netip.MustParsePrefix(s))}
}

// childPairOf returns the Child SA of rsa that is the other end of c.
func childPairOf(t *testing.T, rsa *IKESA, c *ChildSA) *ChildSA {
	t.Helper()
	for _, r := range rsa.Children() {
		if r.InSPI == c.OutSPI && r.OutSPI == c.InSPI {
			if r.Suite != c.Suite || r.Mode != c.Mode || !bytes.Equal(r.Keys.EncrI, c.Keys.EncrI) || !bytes.Equal(r.Keys.IntegR, c.Keys.IntegR) ||
				r.Initiated == c.Initiated {
				t.Fatalf("Child SA %08x: the ends differ: %+v / %+v", c.InSPI, c, r)
			}
			return r
		}
	}
	t.Fatalf("the peer has no Child SA %08x/%08x", c.OutSPI, c.InSPI)
	return nil
}

// TestCreateChild sets up additional Child SAs with CREATE_CHILD_SA from
// either end: the responder picks the configuration by the selectors (a
// second one with PFS), each new SA is registered on both ends, rekeys
// independently with its own proposals, and deleting one leaves the
// others.
func TestCreateChild(t *testing.T) {
	rp := newRekeyPair(t, "null-sha256", "null-sha256")
	rp.iniCfg.LocalTS, rp.iniCfg.RemoteTS = prefixTS("198.51.100.0/25"), prefixTS("203.0.113.0/25")
	rp.respCfg.LocalTS, rp.respCfg.RemoteTS = prefixTS("203.0.113.0/25"), prefixTS("198.51.100.0/25")
	second := ChildConfig{ESP: []Proposal{MustParseProposal("aes128gcm16-x25519", false)}, LocalTS: prefixTS("203.0.113.128/25"), RemoteTS: prefixTS("198.51.100.128/25")}
	rp.respCfg.Children = []ChildConfig{second}
	if err := rp.resp.Respond(rp.respCfg); err != nil {
		t.Fatal(err)
	}
	isa, rsa, ic, _ := rp.establish(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The initiator asks for the second network with PFS.
	c2, err := isa.CreateChild(ctx, ChildConfig{ESP: []Proposal{MustParseProposal("aes128gcm16-ecp256-x25519", false)},
		LocalTS: prefixTS("198.51.100.128/26"), RemoteTS: prefixTS("203.0.113.128/25")})
	if err != nil {
		t.Fatal(err)
	}
	r2 := childPairOf(t, rsa, c2)
	if c2.Suite.DH != message.DH_CURVE25519 || c2.Suite.Encr.ID != message.ENCR_AES_GCM_16 || !c2.Initiated {
		t.Fatalf("second Child SA: %+v", c2.Suite)
	}
	if r2.policy == nil || fmt.Sprint(r2.policy.LocalTS) != fmt.Sprint(second.LocalTS) {
		t.Fatal("the responder did not pick its second configuration")
	}
	if got := fmt.Sprint(r2.RemoteTS); got != fmt.Sprint(prefixTS("198.51.100.128/26")) {
		t.Fatalf("responder's remote selector %s", got)
	}
	// The responder asks for one more under its main configuration.
	r3, err := rsa.CreateChild(ctx, ChildConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c3 := childPairOf(t, isa, r3)
	if c3.Suite.Encr.ID != message.ENCR_NULL {
		t.Fatalf("third Child SA: %+v", c3.Suite)
	}
	if n, m := len(isa.Children()), len(rsa.Children()); n != 3 || m != 3 || rp.iniEv.len() != 6 || rp.respEv.len() != 6 {
		t.Fatalf("%d/%d Child SAs, %d/%d registrations, want 3 and 6", n, m, rp.iniEv.len(), rp.respEv.len())
	}
	// Selectors nobody accepts, and a mode nobody offers.
	for _, cc := range []ChildConfig{
		{LocalTS: prefixTS("192.0.2.0/24"), RemoteTS: prefixTS("203.0.113.0/24")},
		{Mode: ModeTransport},
	} {
		_, err = isa.CreateChild(ctx, cc)
		var ne *NotifyError
		if !errors.As(err, &ne) || ne.Type != message.TS_UNACCEPTABLE {
			t.Fatalf("CreateChild(%+v): %v, want TS_UNACCEPTABLE", cc, err)
		}
	}
	// Rekeying the second one leaves the others and keeps its PFS.
	n2, err := isa.RekeyChild(ctx, c2)
	if err != nil {
		t.Fatal(err)
	}
	if n2.Suite.DH != message.DH_CURVE25519 {
		t.Fatalf("rekeyed second Child SA: %+v", n2.Suite)
	}
	childPairOf(t, rsa, n2)
	waitFor(t, func() bool {
		return len(isa.Children()) == 3 && len(rsa.Children()) == 3 && rp.iniEv.len() == 6 && rp.respEv.len() == 6
	})
	// The responder rekeys the first; the others stay.
	if _, err := rsa.RekeyChild(ctx, childPairOf(t, rsa, ic)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(isa.Children()) == 3 && len(rsa.Children()) == 3 && rp.iniEv.len() == 6 })
	for _, c := range isa.Children() {
		childPairOf(t, rsa, c)
	}
	// Deleting one Child SA leaves the others.
	if err := isa.DeleteChild(ctx, c3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(rsa.Children()) == 2 && rp.respEv.len() == 4 })
	if _, ok := rp.respEv.get(r3.InSPI); ok || len(isa.Children()) != 2 || rp.iniEv.len() != 4 {
		t.Fatal("the deleted Child SA is still there")
	}
	if err := isa.DeleteChild(ctx, c3); !errors.Is(err, ErrNoChild) {
		t.Fatalf("deleting it again: %v", err)
	}
	// A peer cannot make the responder hold more than MaxChildSAs.
	for len(rsa.Children()) < MaxChildSAs {
		if _, err := isa.CreateChild(ctx, ChildConfig{}); err != nil {
			t.Fatalf("Child SA %d: %v", len(rsa.Children())+1, err)
		}
	}
	_, err = isa.CreateChild(ctx, ChildConfig{})
	if ne := (*NotifyError)(nil); !errors.As(err, &ne) || ne.Type != message.NO_ADDITIONAL_SAS || len(rsa.Children()) != MaxChildSAs {
		t.Fatalf("Child SA %d: %v", MaxChildSAs+1, err)
	}
	if rp.respEv.len() != 2*MaxChildSAs {
		t.Fatalf("%d registrations", rp.respEv.len())
	}
	if err := rsa.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return rp.iniEv.len() == 0 && rp.respEv.len() == 0 })
}

// TestRekeyDeleteCollision has one end rekey a Child SA while the other
// deletes it, both requests crossing: the rekey is refused
// (TEMPORARY_FAILURE, RFC 7296 2.25, or CHILD_SA_NOT_FOUND), the Child SA
// is gone on both ends and nothing stays registered; the IKE SA lives on.
func TestRekeyDeleteCollision(t *testing.T) {
	rp := newRekeyPair(t, "null-sha256", "null-sha256")
	rp.nat = true
	rike, rnatt := rp.resp.Addrs()
	hold := newCrossing(message.CREATE_CHILD_SA, message.INFORMATIONAL)
	proxyIKE := newNATProxy(t, rike, nil)
	proxyNATT := newNATProxy(t, rnatt, hold.drop)
	rp.iniCfg.RemoteNATPort = proxyNATT.addr().Port()
	isa, err := rp.ini.Initiate(t.Context(), rp.iniCfg, proxyIKE.addr())
	if err != nil {
		t.Fatal(err)
	}
	ic, rc := checkEstablished(t, rp.pair, isa)
	spiI, _ := isa.SPIs()
	rsa := rp.responderSA(t, spiI)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hold.arm()
	var rekeyErr, delErr error
	done := make(chan struct{})
	go func() { _, rekeyErr = isa.RekeyChild(ctx, ic); close(done) }()
	delErr = rsa.DeleteChild(ctx, rc)
	<-done
	if delErr != nil {
		t.Fatal(delErr)
	}
	var ne *NotifyError
	if !errors.As(rekeyErr, &ne) || (ne.Type != message.TEMPORARY_FAILURE && ne.Type != message.CHILD_SA_NOT_FOUND) {
		t.Fatalf("rekey of a Child SA being deleted: %v", rekeyErr)
	}
	if !hold.crossed() {
		t.Fatal("the requests did not cross")
	}
	waitFor(t, func() bool {
		return len(isa.Children()) == 0 && len(rsa.Children()) == 0 && rp.iniEv.len() == 0 && rp.respEv.len() == 0
	})
	if err := isa.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := isa.CreateChild(ctx, ChildConfig{}); err != nil {
		t.Fatal(err)
	}
	checkEstablished(t, rp.pair, isa)
}

// TestAuthPicksChildConfig has the initiator's IKE_AUTH ask for the
// selectors of the responder's second Child SA configuration: the
// responder takes that configuration, and its rekeys use its proposals
// (here with PFS).
func TestAuthPicksChildConfig(t *testing.T) {
	rp := newRekeyPair(t, "aes128gcm16-x25519", "null-sha256")
	rp.iniCfg.LocalTS, rp.iniCfg.RemoteTS = prefixTS("198.51.100.128/25"), prefixTS("203.0.113.128/25")
	rp.respCfg.LocalTS, rp.respCfg.RemoteTS = prefixTS("203.0.113.0/25"), prefixTS("198.51.100.0/25")
	rp.respCfg.Children = []ChildConfig{{ESP: []Proposal{MustParseProposal("aes128gcm16-x25519", false)},
		LocalTS: prefixTS("203.0.113.128/25"), RemoteTS: prefixTS("198.51.100.128/25")}}
	if err := rp.resp.Respond(rp.respCfg); err != nil {
		t.Fatal(err)
	}
	isa, rsa, ic, rc := rp.establish(t)
	if rc.policy == nil || ic.Suite.Encr.ID != message.ENCR_AES_GCM_16 || ic.Suite.DH != 0 {
		t.Fatalf("IKE_AUTH Child SA %+v under policy %v", ic.Suite, rc.policy)
	}
	nc, err := rsa.RekeyChild(t.Context(), rc)
	if err != nil {
		t.Fatal(err)
	}
	if nc.Suite.DH != message.DH_CURVE25519 {
		t.Fatalf("rekeyed under %+v, want the second configuration's PFS", nc.Suite)
	}
	checkRekeyed(t, rp, isa, ic, rc, message.DH_CURVE25519)
	// Selectors neither configuration covers are still refused.
	rp2 := newRekeyPair(t, "null-sha256", "null-sha256")
	rp2.iniCfg.LocalTS = prefixTS("192.0.2.0/24")
	if _, err := rp2.initiate(t); err == nil {
		t.Fatal("foreign selectors accepted")
	}
}

// TestRekeyChildNotFound rekeys a Child SA the peer no longer has (its
// Delete lost): the answer is CHILD_SA_NOT_FOUND and the rekeyer drops
// the SA too (RFC 7296 2.25), leaving the others.
func TestRekeyChildNotFound(t *testing.T) {
	rp := newRekeyPair(t, "null-sha256", "null-sha256")
	isa, rsa, ic, rc := rp.establish(t)
	c2, err := isa.CreateChild(t.Context(), ChildConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rsa.mu.Lock()
	rsa.dropChildLocked(rc)
	rsa.mu.Unlock()
	_, err = isa.RekeyChild(t.Context(), ic)
	var ne *NotifyError
	if !errors.As(err, &ne) || ne.Type != message.CHILD_SA_NOT_FOUND {
		t.Fatalf("rekey of a Child SA the peer lost: %v", err)
	}
	if c := isa.Children(); len(c) != 1 || c[0] != c2 || rp.iniEv.len() != 2 {
		t.Fatalf("%d Child SAs, %d registrations left; want only the second", len(c), rp.iniEv.len())
	}
	if _, err := isa.RekeyChild(t.Context(), c2); err != nil {
		t.Fatal(err)
	}
}
