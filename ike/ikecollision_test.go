package ike

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

// crossing is a natProxy drop rule that makes two requests cross: once
// armed, requests of the given exchanges are dropped (and retransmitted by
// their sender) until each end has sent one, and their responses until
// each end has answered the other's request, so each end has handled the
// other's request before it gets its own answer. Delivering the responses
// once both requests are merely forwarded is not enough: an endpoint's
// workers may then handle its own answer before the crossing request, and
// it sees a plain rekey followed by a request on the SA it replaced.
type crossing struct {
	exch                      []message.ExchangeType
	mu                        sync.Mutex
	armed                     bool
	seen, forwarded, answered map[bool]bool
}

func newCrossing(exch ...message.ExchangeType) *crossing {
	return &crossing{exch: exch}
}

// arm starts a new crossing.
func (c *crossing) arm() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed, c.seen, c.forwarded, c.answered = true, map[bool]bool{}, map[bool]bool{}, map[bool]bool{}
}

// crossed reports whether both requests were delivered after crossing.
func (c *crossing) crossed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.forwarded) == 2
}

func (c *crossing) drop(fromTarget bool, pkt []byte) bool {
	h, ok := ikeHeader(pkt)
	if !ok {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.armed {
		return false
	}
	match := false
	for _, e := range c.exch {
		match = match || h.Exchange == e
	}
	if !match {
		return false
	}
	if !h.IsResponse() {
		if len(c.forwarded) == 2 {
			return false
		}
		c.seen[fromTarget] = true
		if len(c.seen) < 2 {
			return true
		}
		c.forwarded[fromTarget] = true
		return false
	}
	c.answered[fromTarget] = true
	return len(c.answered) < 2
}

// TestRekeyIKECollision has both ends rekey the IKE SA at once with the
// requests crossing (RFC 7296 2.8.2): both rekeys complete, the new SA
// created with the lowest of the four nonces is deleted by its initiator,
// both ends take the same survivor, the Child SAs move to it without being
// registered again, and no retired SA stays behind.
func TestRekeyIKECollision(t *testing.T) {
	rp := newRekeyPair(t, "null-sha256", "null-sha256")
	rp.nat = true
	rike, rnatt := rp.resp.Addrs()
	cross := newCrossing(message.CREATE_CHILD_SA)
	proxyIKE := newNATProxy(t, rike, nil)
	proxyNATT := newNATProxy(t, rnatt, cross.drop)
	rp.iniCfg.RemoteNATPort = proxyNATT.addr().Port()
	isa, err := rp.ini.Initiate(t.Context(), rp.iniCfg, proxyIKE.addr())
	if err != nil {
		t.Fatal(err)
	}
	ic, rc := checkEstablished(t, rp.pair, isa)
	spiI, _ := isa.SPIs()
	rsa := rp.responderSA(t, spiI)
	c2, err := isa.CreateChild(t.Context(), ChildConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rp.iniEv.emu.Lock()
	rp.iniEv.events = nil
	rp.iniEv.emu.Unlock()
	rp.respEv.emu.Lock()
	rp.respEv.events = nil
	rp.respEv.emu.Unlock()
	survivors := map[bool]int{} // by whether the original initiator's rekey survived
	for round := range 4 {
		oldI, oldR := isa.SPIs()
		cross.arm()
		errs := rekeyIKEBoth(isa, rsa, 30*time.Second)
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: %v / %v", round, errs[0], errs[1])
		}
		if !cross.crossed() {
			t.Fatalf("round %d: the rekey requests did not cross", round)
		}
		newI, newR := isa.SPIs()
		if newI == oldI || newR == oldR {
			t.Fatalf("round %d: SPIs unchanged", round)
		}
		if a, b := rsa.SPIs(); a != newI || b != newR {
			t.Fatalf("round %d: the ends disagree on the survivor: %016x/%016x vs %016x/%016x", round, newI, newR, a, b)
		}
		isa.mu.Lock()
		ilt, ini, initiator := isa.lt, isa.ni, isa.initiator
		isa.mu.Unlock()
		rsa.mu.Lock()
		rlt, rni, rnr := rsa.lt, rsa.ni, rsa.nr
		rsa.mu.Unlock()
		if ilt.collisions != round+1 || rlt.collisions != round+1 {
			t.Fatalf("round %d: collisions seen %d/%d", round, ilt.collisions, rlt.collisions)
		}
		// Both ends compared the same nonces, and the survivor holds the
		// higher lowest nonce.
		if !bytes.Equal(ilt.lastLowest[0], rlt.lastLowest[0]) || !bytes.Equal(ilt.lastLowest[1], rlt.lastLowest[1]) ||
			bytes.Compare(ilt.lastLowest[0], ilt.lastLowest[1]) >= 0 || !bytes.Equal(minBytes(rni, rnr), ilt.lastLowest[1]) || !bytes.Equal(ini, rni) {
			t.Fatalf("round %d: nonce rule: %x / %x", round, ilt.lastLowest, rlt.lastLowest)
		}
		survivors[initiator]++
		if ik, rk := isa.Keys(), rsa.Keys(); !bytes.Equal(ik.SKd, rk.SKd) || !bytes.Equal(ik.SKei, rk.SKei) || !bytes.Equal(ik.SKar, rk.SKar) {
			t.Fatalf("round %d: the ends have different keys", round)
		}
		for _, c := range isa.Children() {
			childPairOf(t, rsa, c)
		}
		// The Child SAs moved to the survivor, registered exactly once.
		if c := isa.Children(); len(c) != 2 || c[0] != ic || c[1] != c2 || rsa.Children()[0] != rc {
			t.Fatalf("round %d: Child SAs changed", round)
		}
		if len(rp.iniEv.log()) != 0 || len(rp.respEv.log()) != 0 || rp.iniEv.len() != 4 || rp.respEv.len() != 4 {
			t.Fatalf("round %d: registrar events %v / %v", round, rp.iniEv.log(), rp.respEv.log())
		}
		// The old and the redundant SA are deleted on both ends.
		for _, e := range []*Endpoint{rp.ini, rp.resp} {
			waitFor(t, func() bool { e.mu.Lock(); defer e.mu.Unlock(); return len(e.sas) == 1 })
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
	t.Logf("survivor initiated by the original initiator / responder: %d / %d", survivors[true], survivors[false])
	if _, err := isa.RekeyChild(t.Context(), c2); err != nil {
		t.Fatal(err)
	}
	if err := isa.Delete(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return rp.iniEv.len() == 0 && rp.respEv.len() == 0 })
}

// lowNonces is a random source whose nonce-sized (32-byte) reads are a
// counter with leading zeros: the nonces its user makes are, in order,
// lower than anything random and than the ones it makes later.
type lowNonces struct{ n atomic.Uint64 }

func (l *lowNonces) Read(p []byte) (int, error) {
	if len(p) == nonceLen {
		clear(p)
		binary.BigEndian.PutUint64(p[nonceLen-8:], l.n.Add(1))
		return len(p), nil
	}
	return rand.Read(p)
}

// TestRekeyIKECollisionDeleteFirst forces the order in which the end that
// loses a simultaneous IKE SA rekey (its request's nonce is the lowest of
// the four) gets the winner's Delete of the old SA before the answer to
// its own request, which is lost at least once: the loser answers the
// Delete without tearing the IKE SA down, its retransmitted request is
// answered by the winner's old SA, and both end on the winner's SA with
// the Child SA still registered.
func TestRekeyIKECollisionDeleteFirst(t *testing.T) {
	rp := newRekeyPair(t, "null-sha256", "null-sha256")
	rp.nat = true
	rp.iniCfg.Rand = &lowNonces{}
	rike, rnatt := rp.resp.Addrs()
	cross := newCrossing(message.CREATE_CHILD_SA)
	var mu sync.Mutex
	deleteSeen, heldAnswer := false, false
	proxyIKE := newNATProxy(t, rike, nil)
	proxyNATT := newNATProxy(t, rnatt, func(fromTarget bool, pkt []byte) bool {
		if cross.drop(fromTarget, pkt) {
			return true
		}
		h, ok := ikeHeader(pkt)
		if !ok || !fromTarget || !cross.crossed() {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case h.Exchange == message.INFORMATIONAL && !h.IsResponse():
			deleteSeen = true
		case h.Exchange == message.CREATE_CHILD_SA && h.IsResponse() && !deleteSeen:
			heldAnswer = true
			return true
		}
		return false
	})
	rp.iniCfg.RemoteNATPort = proxyNATT.addr().Port()
	isa, err := rp.ini.Initiate(t.Context(), rp.iniCfg, proxyIKE.addr())
	if err != nil {
		t.Fatal(err)
	}
	ic, rc := checkEstablished(t, rp.pair, isa)
	spiI, _ := isa.SPIs()
	rsa := rp.responderSA(t, spiI)
	cross.arm()
	errs := rekeyIKEBoth(isa, rsa, 30*time.Second)
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("rekeys: %v / %v", errs[0], errs[1])
	}
	mu.Lock()
	// Before the requests crossed every answer was dropped, after it only
	// the Delete let the loser's answer through.
	if !deleteSeen {
		t.Fatal("the winner sent no Delete")
	}
	t.Logf("loser's answer held back behind the Delete after crossing: %v", heldAnswer)
	mu.Unlock()
	isa.mu.Lock()
	loserCollisions, stillInitiator := isa.lt.collisions, isa.initiator
	isa.mu.Unlock()
	if loserCollisions != 1 || stillInitiator {
		t.Fatalf("the original initiator (lowest nonces) resolved %d collisions, initiator of the survivor: %v", loserCollisions, stillInitiator)
	}
	a, b := isa.SPIs()
	if c, d := rsa.SPIs(); a != c || b != d {
		t.Fatal("the ends disagree on the survivor")
	}
	checkEstablished(t, rp.pair, isa)
	if isa.Children()[0] != ic || rsa.Children()[0] != rc || rp.iniEv.len() != 2 || len(rp.iniEv.log()) != 2 {
		t.Fatalf("Child SA changed: %v", rp.iniEv.log())
	}
	for _, e := range []*Endpoint{rp.ini, rp.resp} {
		waitFor(t, func() bool { e.mu.Lock(); defer e.mu.Unlock(); return len(e.sas) == 1 })
	}
	if err := isa.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
}
