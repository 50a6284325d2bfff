package ike

import (
	"errors"
	"strings"
	"testing"

	"github.com/espy-dpi/espy/ike/message"
)

// TestRespondMany serves two peers with their own identities, keys and
// ESP policies from one responder endpoint, plus a wildcard.
func TestRespondMany(t *testing.T) {
	p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
	alice := *p.respCfg
	alice.RemoteID, alice.PSK = FQDN("alice.lab.example"), []byte("alice-psk-not-a-secret")
	alice.ESP = []Proposal{MustParseProposal("null-sha512", false)}
	bob := *p.respCfg
	bob.RemoteID, bob.PSK = FQDN("bob.lab.example"), []byte("bob-psk-not-a-secret")
	bob.ESP = []Proposal{MustParseProposal("aes256gcm16", false)}
	anyone := *p.respCfg
	anyone.RemoteID, anyone.PSK = Identity{}, []byte("shared-psk-not-a-secret")
	if err := p.resp.Respond(&alice, &bob, &anyone); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id, psk, esp string
		encr         uint16
		fail         bool
	}{
		{"alice.lab.example", "alice-psk-not-a-secret", "aes256gcm16,null-sha512", message.ENCR_NULL, false},
		{"bob.lab.example", "bob-psk-not-a-secret", "null-sha512,aes256gcm16", message.ENCR_AES_GCM_16, false},
		{"carol.lab.example", "shared-psk-not-a-secret", "null-sha256", message.ENCR_NULL, false},
		{"bob.lab.example", "alice-psk-not-a-secret", "aes256gcm16", 0, true},
	} {
		t.Run(c.id, func(t *testing.T) {
			cfg := *p.iniCfg
			cfg.LocalID, cfg.PSK = FQDN(c.id), []byte(c.psk)
			cfg.ESP = nil
			for _, e := range strings.Split(c.esp, ",") {
				cfg.ESP = append(cfg.ESP, MustParseProposal(e, false))
			}
			ike, _ := p.resp.Addrs()
			sa, err := p.ini.Initiate(t.Context(), &cfg, ike)
			if c.fail {
				var ne *NotifyError
				if !errors.As(err, &ne) || ne.Type != message.AUTHENTICATION_FAILED {
					t.Fatalf("got %v, want AUTHENTICATION_FAILED", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := sa.Children()[0].Suite.Encr.ID; got != c.encr {
				t.Fatalf("ESP encryption %d, want %d", got, c.encr)
			}
			rsa := p.responderSA(t, func() uint64 { s, _ := sa.SPIs(); return s }())
			if !rsa.PeerID().equal(FQDN(c.id)) {
				t.Fatalf("responder sees %v", rsa.PeerID())
			}
		})
	}
}
