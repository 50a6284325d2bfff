package ike

import (
	"testing"
	"time"
)

// TestDPD lets the responder vanish without a word (its sockets closed
// under it): the initiator's liveness checks time out and it deletes the
// IKE SA and unregisters the Child SA.
func TestDPD(t *testing.T) {
	p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
	p.iniCfg.DPDInterval = 50 * time.Millisecond
	p.iniCfg.Retransmit = Retransmit{Timeout: 100 * time.Millisecond, Base: 1.5, Tries: 2}
	sa, err := p.initiate(t)
	if err != nil {
		t.Fatal(err)
	}
	checkEstablished(t, p, sa)
	// A few checks succeed while the responder is there.
	time.Sleep(200 * time.Millisecond)
	if len(p.ini.IKESAs()) != 1 || p.iniReg.len() != 2 {
		t.Fatal("SA lost while the peer answers")
	}
	p.resp.ike.Close()
	p.resp.natt.Close()
	waitFor(t, func() bool { return len(p.ini.IKESAs()) == 0 && p.iniReg.len() == 0 })
}

// TestInitialContact re-establishes from a new endpoint with the same
// identity, as a rebooted peer would: its INITIAL_CONTACT makes the
// responder drop the old IKE SA and Child SA. A second SA from the same
// endpoint carries no INITIAL_CONTACT and leaves the first alone.
func TestInitialContact(t *testing.T) {
	p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
	first, err := p.initiate(t)
	if err != nil {
		t.Fatal(err)
	}
	checkEstablished(t, p, first)
	second, err := p.initiate(t)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(p.resp.IKESAs()); n != 2 {
		t.Fatalf("responder has %d IKE SAs after a second SA from the same endpoint, want 2", n)
	}
	_ = second
	rebooted := listen(t, ListenConfig{})
	ike, _ := p.resp.Addrs()
	third, err := rebooted.Initiate(t.Context(), p.iniCfg, ike)
	if err != nil {
		t.Fatal(err)
	}
	spi, _ := third.SPIs()
	waitFor(t, func() bool {
		sas := p.resp.IKESAs()
		if len(sas) != 1 {
			return false
		}
		s, _ := sas[0].SPIs()
		return s == spi && p.respReg.len() == 2
	})
}
