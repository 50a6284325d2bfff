package ike

import (
	"bytes"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

// sentKE returns the KE data of the IKE_SA_INIT request an initiator's SA
// sent, and the responder's KE from its response.
func sentKE(t *testing.T, sa *IKESA) (ini, resp []byte) {
	t.Helper()
	sa.mu.Lock()
	req, rsp := sa.initReq, sa.initResp
	sa.mu.Unlock()
	for i, pkt := range [][]byte{req, rsp} {
		m, err := message.Decode(pkt)
		if err != nil {
			t.Fatal(err)
		}
		ke, ok := message.Get(m.Payloads, message.PayloadKE).(*message.KE)
		if !ok {
			t.Fatal("IKE_SA_INIT without KE")
		}
		if i == 0 {
			ini = ke.Data
		} else {
			resp = ke.Data
		}
	}
	return ini, resp
}

// establishN brings up n IKE SAs from p's initiator and checks both ends
// of each, returning the initiator's and the responder's KE data per SA.
func establishN(t *testing.T, p *pair, n int) (ini, resp [][]byte) {
	t.Helper()
	for range n {
		sa, err := p.initiate(t)
		if err != nil {
			t.Fatal(err)
		}
		checkEstablished(t, p, sa)
		i, r := sentKE(t, sa)
		ini, resp = append(ini, i), append(resp, r)
	}
	return ini, resp
}

func TestReuseKEUses(t *testing.T) {
	p := newPair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", ListenConfig{})
	p.iniCfg.ReuseKE = NewKeyShareCache(3, 0)
	ini, resp := establishN(t, p, 7)
	// SAs 0-2 share a key pair, 3-5 the next, 6 a third.
	for i := range ini {
		same := i%3 != 0
		if got := bytes.Equal(ini[i], ini[max(i-1, 0)]); i > 0 && got != same {
			t.Errorf("SA %d: KE equal to SA %d's: %v, want %v", i, i-1, got, same)
		}
	}
	if bytes.Equal(ini[0], ini[3]) || bytes.Equal(ini[3], ini[6]) || bytes.Equal(ini[0], ini[6]) {
		t.Error("a key pair was used beyond MaxUses")
	}
	// The responder is untouched: a fresh key pair every SA.
	distinct(t, "responder", resp)
}

func TestReuseKEAge(t *testing.T) {
	p := newPair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", ListenConfig{})
	c := NewKeyShareCache(100, time.Minute)
	now := time.Now()
	c.now = func() time.Time { return now }
	p.iniCfg.ReuseKE = c
	a, _ := establishN(t, p, 2)
	now = now.Add(time.Minute - time.Nanosecond)
	b, _ := establishN(t, p, 1)
	now = now.Add(time.Nanosecond)
	d, _ := establishN(t, p, 2)
	if !bytes.Equal(a[0], a[1]) || !bytes.Equal(a[0], b[0]) {
		t.Error("key pair not reused within MaxAge")
	}
	if bytes.Equal(b[0], d[0]) {
		t.Error("key pair reused at MaxAge")
	}
	if !bytes.Equal(d[0], d[1]) {
		t.Error("new key pair not reused")
	}
}

func TestNoReuseKE(t *testing.T) {
	p := newPair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", ListenConfig{})
	ini, resp := establishN(t, p, 4)
	distinct(t, "initiator", ini)
	distinct(t, "responder", resp)
}

// TestReuseKEGroups checks that the cache keeps one key pair per group: an
// INVALID_KE_PAYLOAD retry takes a key in the responder's group, and the
// X25519 key tried first stays cached for the next SA.
func TestReuseKEGroups(t *testing.T) {
	p := newPair(t, "aes128gcm16-prfsha256-ecp256", "aes128gcm16", ListenConfig{})
	p.iniCfg.IKE = []Proposal{MustParseProposal("aes128gcm16-prfsha256-x25519-ecp256", true)}
	c := NewKeyShareCache(10, 0)
	p.iniCfg.ReuseKE = c
	ini, _ := establishN(t, p, 3)
	if len(ini[0]) != 64 || !bytes.Equal(ini[0], ini[1]) || !bytes.Equal(ini[1], ini[2]) {
		t.Errorf("P-256 KE not reused: %d bytes, %x / %x / %x", len(ini[0]), ini[0], ini[1], ini[2])
	}
	if s := c.shares[message.DH_CURVE25519]; s == nil || s.uses != 3 {
		t.Errorf("X25519 share: %+v, want 3 uses", s)
	}
}

func distinct(t *testing.T, who string, kes [][]byte) {
	t.Helper()
	seen := map[string]int{}
	for i, k := range kes {
		if j, ok := seen[string(k)]; ok {
			t.Errorf("%s: SA %d sent the KE of SA %d", who, i, j)
		}
		seen[string(k)] = i
	}
}
