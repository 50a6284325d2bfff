package ike

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

// dropExchange is a natProxy drop rule: once armed, it drops the requests
// (or the responses) of one exchange type sent by the initiator (or by the
// responder), and counts them.
type dropExchange struct {
	exch       message.ExchangeType
	fromTarget bool // drop what the responder sends
	responses  bool // drop responses instead of requests
	armed      atomic.Bool
	dropped    atomic.Int32
}

func (d *dropExchange) drop(fromTarget bool, pkt []byte) bool {
	h, ok := ikeHeader(pkt)
	if !ok || !d.armed.Load() || fromTarget != d.fromTarget || h.Exchange != d.exch || h.IsResponse() != d.responses {
		return false
	}
	d.dropped.Add(1)
	return true
}

// natPair sets up rp behind two NAT proxies, the NAT-T one dropping with d,
// and initiates an IKE SA through them with ctx.
func natPair(t *testing.T, ctx context.Context, rp *rekeyPair, d *dropExchange) (*IKESA, error) {
	t.Helper()
	rp.nat = true
	rike, rnatt := rp.resp.Addrs()
	proxyIKE := newNATProxy(t, rike, nil)
	proxyNATT := newNATProxy(t, rnatt, d.drop)
	rp.iniCfg.RemoteNATPort = proxyNATT.addr().Port()
	return rp.ini.Initiate(ctx, rp.iniCfg, proxyIKE.addr())
}

// TestRekeyIKEPeerDeletesOld is the cause of TestLifetimeNoLeak's rare
// failure: our IKE SA rekey is outstanding (here: its request lost), the
// peer's rekey arrives and we answer it, and the peer, whose rekey thus
// completed without a collision on its side, deletes the old IKE SA. It
// will never answer our request on that SA; we must take its new SA at
// once rather than retransmit until the schedule runs out, meanwhile
// dropping everything the peer sends on its new SA (and, if the IKE SA is
// deleted meanwhile, leaving the peer's new SA orphaned until its hard
// lifetime).
func TestRekeyIKEPeerDeletesOld(t *testing.T) {
	rp := newRekeyPair(t, "null-sha256", "null-sha256")
	// A schedule far longer than the test waits.
	rp.iniCfg.Retransmit = Retransmit{Timeout: time.Second, Base: 2, Tries: 6}
	d := &dropExchange{exch: message.CREATE_CHILD_SA}
	isa, err := natPair(t, t.Context(), rp, d)
	if err != nil {
		t.Fatal(err)
	}
	ic, rc := checkEstablished(t, rp.pair, isa)
	spiI, _ := isa.SPIs()
	rsa := rp.responderSA(t, spiI)

	d.armed.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ours := make(chan error, 1)
	go func() { ours <- isa.RekeyIKE(ctx) }()
	waitFor(t, func() bool { return d.dropped.Load() > 0 })
	if err := rsa.RekeyIKE(ctx); err != nil {
		t.Fatalf("the responder's rekey: %v", err)
	}
	select {
	case err := <-ours:
		if err != nil {
			t.Fatalf("our rekey: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("our rekey still waits for an answer on the IKE SA the peer deleted")
	}
	a, b := isa.SPIs()
	if c, e := rsa.SPIs(); a != c || b != e || a == spiI {
		t.Fatalf("SPIs %016x/%016x, the peer has %016x/%016x", a, b, c, e)
	}
	pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer pcancel()
	for _, sa := range []*IKESA{rsa, isa} {
		if err := sa.Ping(pctx); err != nil {
			t.Fatalf("liveness check on the new IKE SA: %v", err)
		}
	}
	if c := isa.Children(); len(c) != 1 || c[0] != ic || rsa.Children()[0] != rc {
		t.Fatal("the Child SA did not move to the new IKE SA")
	}
	if err := isa.Delete(pctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(rp.resp.IKESAs()) == 0 && rp.respEv.len() == 0 })
}

// TestInitiateAbortedAuth ends Initiate's context after the responder took
// IKE_AUTH but before its answer arrived (as when a reauthentication's IKE
// SA is deleted under it): the responder must not keep the IKE SA and its
// Child SA that the initiator gave up.
func TestInitiateAbortedAuth(t *testing.T) {
	rp := newRekeyPair(t, "null-sha256", "null-sha256")
	d := &dropExchange{exch: message.IKE_AUTH, fromTarget: true, responses: true}
	d.armed.Store(true)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for ctx.Err() == nil && len(rp.resp.IKESAs()) == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if sa, err := natPair(t, ctx, rp, d); err == nil || sa != nil {
		t.Fatalf("Initiate: %v, %v", sa, err)
	}
	// The responder's answer may still be on its way to the proxy.
	waitFor(t, func() bool { return d.dropped.Load() > 0 })
	deadline := time.Now().Add(5 * time.Second)
	for len(rp.resp.IKESAs()) != 0 || rp.respEv.len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the responder keeps %d IKE SAs, %d Child SA directions", len(rp.resp.IKESAs()), rp.respEv.len())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(rp.ini.IKESAs()) != 0 || rp.iniEv.len() != 0 {
		t.Fatal("the initiator kept the IKE SA")
	}
}

// TestDeleteTwice calls Delete while an earlier Delete waits behind an
// exchange whose request is being lost (as when the test's cleanup and a
// reauthentication both delete an IKE SA): the second call must not tear
// the SA down before the first one's Delete went out, or the peer keeps
// the SA until its hard lifetime.
func TestDeleteTwice(t *testing.T) {
	rp := newRekeyPair(t, "null-sha256", "null-sha256")
	d := &dropExchange{exch: message.INFORMATIONAL}
	isa, err := natPair(t, t.Context(), rp, d)
	if err != nil {
		t.Fatal(err)
	}
	d.armed.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ping := make(chan error, 1)
	go func() { ping <- isa.Ping(ctx) }()
	waitFor(t, func() bool { return d.dropped.Load() > 0 })
	first := make(chan error, 1)
	go func() { first <- isa.Delete(ctx) }()
	waitFor(t, func() bool { isa.mu.Lock(); defer isa.mu.Unlock(); return isa.deleteSent })
	second := make(chan error, 1)
	go func() { second <- isa.Delete(ctx) }()
	select {
	case <-second:
	case <-time.After(100 * time.Millisecond):
	}
	d.armed.Store(false)
	for _, ch := range []chan error{ping, first} {
		if err := <-ch; err != nil {
			t.Fatalf("ping or first Delete: %v", err)
		}
	}
	if err := <-second; err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(rp.resp.IKESAs()) != 0 || rp.respEv.len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the responder keeps the IKE SA")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
