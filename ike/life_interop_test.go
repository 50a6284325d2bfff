package ike

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/message"
	"github.com/espy-dpi/espy/internal/charonlab"
)

// newLifeLab is the lab of the lifetime interop tests: charon has two
// inner addresses, 203.0.113.1 and 203.0.113.2.
func newLifeLab(t *testing.T) *lab {
	t.Helper()
	return labWith(t, charonlab.Options{Name: "life", Dev: "elf"}, "203.0.113.1/32", "203.0.113.2/32")
}

// lifeSwanctlConf has two connections. fromespy answers espy (identity
// b.lab.example) with two possible Child SAs, the second with PFS;
// toespy initiates to espy as c.lab.example with lifetimes of seconds on
// the IKE SA and the first Child SA (no jitter), and a second Child SA.
var lifeSwanctlConf = charonlab.SwanctlConf([]string{"a.lab.example", "b.lab.example", "c.lab.example"},
	charonlab.Conn{Name: "fromespy", Proposals: "aes128gcm16-prfsha256-x25519", Children: []charonlab.Child{
		{Name: "net", ESP: "null-sha256"},
		{Name: "net2", LocalTS: "203.0.113.2/32", RemoteTS: "198.51.100.2/32", ESP: "aes128gcm16-x25519"},
	}}.String(),
	charonlab.Conn{Name: "toespy", Proposals: "aes128gcm16-prfsha256-x25519", LocalID: "c.lab.example",
		Settings: "rekey_time = 5s\nover_time = 20s\nrand_time = 0s", Children: []charonlab.Child{
			{Name: "tonet", ESP: "null-sha256", Settings: "rekey_time = 3s\nlife_time = 30s\nrand_time = 0s"},
			{Name: "tonet2", LocalTS: "203.0.113.2/32", RemoteTS: "198.51.100.2/32", ESP: "null-sha256"},
		}}.String())

// lifeConfig is espy's side: a.lab.example with the first pair of inner
// addresses; the second pair is an additional Child SA configuration.
func lifeConfig(remote string, reg SARegistrar) *Config {
	return &Config{
		LocalID: FQDN("a.lab.example"), RemoteID: FQDN(remote), PSK: []byte(charonlab.PSK),
		IKE:      []Proposal{MustParseProposal("aes128gcm16-prfsha256-x25519", true)},
		ESP:      []Proposal{MustParseProposal("null-sha256", false)},
		LocalTS:  prefixTS("198.51.100.1/32"),
		RemoteTS: prefixTS("203.0.113.1/32"),
		Children: []ChildConfig{{LocalTS: prefixTS("198.51.100.2/32"), RemoteTS: prefixTS("203.0.113.2/32")}},
		// Retransmissions within the few seconds the lifetimes allow.
		Retransmit: Retransmit{Timeout: 500 * time.Millisecond, Base: 1.5, Tries: 4},
		Registrar:  reg,
	}
}

// ikeListed and childListed say whether charon lists an IKE SA by its
// SPIs, and a Child SA by its (charon's in = our OutSPI, out = our InSPI).
func ikeListed(out string, sa *IKESA) bool {
	i, r := sa.SPIs()
	return strings.Contains(out, fmt.Sprintf("%016x_i", i)) && strings.Contains(out, fmt.Sprintf("%016x_r", r))
}

func childListed(out string, c *ChildSA) bool {
	return strings.Contains(out, fmt.Sprintf("in  %08x", c.OutSPI)) && strings.Contains(out, fmt.Sprintf("out %08x", c.InSPI))
}

// hasChild reports whether c is still one of sa's Child SAs.
func (sa *IKESA) hasChild(c *ChildSA) bool {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return sa.hasChildLocked(c)
}

// childGone reports whether charon lists c no more, or only as DELETED:
// charon keeps a rekeyed Child SA it has closed (state DELETED) for
// delete_rekeyed_delay, for packets still in flight, and when that
// delayed job runs while an IKE rekey moves the Child SAs to the new IKE
// SA it finds nothing ("CHILD_SA {4} not found for delete") and the
// DELETED entry stays listed until the IKE SA goes.
func childGone(out string, c *ChildSA) bool {
	in, outSPI := fmt.Sprintf("in  %08x", c.OutSPI), fmt.Sprintf("out %08x", c.InSPI)
	deleted := false
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 2 && strings.HasSuffix(f[0], ":") && strings.HasPrefix(f[1], "#") {
			// A Child SA's first line: "net: #4, reqid 1, DELETED, ...".
			deleted = strings.Contains(line, ", DELETED,")
			continue
		}
		if !deleted && (strings.Contains(line, in) || strings.Contains(line, outSPI)) {
			return false
		}
	}
	return true
}

// TestInteropLifetimes runs SA lifetimes, additional Child SAs and
// reauthentication between espy and strongSwan charon 5.9.8: (a) charon's
// rekey timers (seconds) rekey the IKE SA and a Child SA it initiated to
// espy, and espy's timers rekey an IKE SA and two Child SAs it initiated;
// (b) each side sets up a second Child SA on an IKE SA (charon with a
// second children entry, espy with CreateChild and PFS); (c) espy
// reauthenticates; (d) espy's hard lifetimes delete a Child SA and an IKE
// SA, which charon then no longer lists. Afterwards espy's registrar holds
// nothing.
func TestInteropLifetimes(t *testing.T) {
	l := newLifeLab(t)
	l.startConf(t, lifeSwanctlConf)
	e := l.listenIn(t)
	reg := &recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	charon := netip.AddrPortFrom(charonAddr, DefaultPort)

	t.Run("charon-timers-and-second-child", func(t *testing.T) {
		rcfg := lifeConfig("c.lab.example", reg)
		rcfg.IKERekeyTime, rcfg.ChildRekeyTime = -1, -1 // charon's timers only
		if err := e.Respond(rcfg); err != nil {
			t.Fatal(err)
		}
		sa := l.charonInitiates(t, e, "tonet")
		oldI, oldR := sa.SPIs()
		first := sa.Children()[0]
		// (b) charon adds its second children entry on the same IKE SA.
		l.Swanctl(t, "--initiate", "--child", "tonet2", "--timeout", "20")
		waitFor(t, func() bool { return len(sa.Children()) == 2 && reg.len() == 4 })
		second := sa.Children()[1]
		if fmt.Sprint(second.LocalTS) != fmt.Sprint(prefixTS("198.51.100.2/32")) {
			t.Fatalf("second Child SA selectors %v", second.LocalTS)
		}
		l.AwaitSAs(t, "both Child SAs listed", 5*time.Second, func(out string) bool {
			return childListed(out, first) && childListed(out, second) && strings.Contains(out, "tonet2:")
		})
		// (a) charon rekeys the first Child SA after 3 s and the IKE SA
		// after 5 s; the second Child SA (1 h) stays.
		waitFor(t, func() bool {
			a, _ := sa.SPIs()
			return a != oldI && len(sa.Children()) == 2 && !sa.hasChild(first)
		})
		newI, newR := sa.SPIs()
		if newR == oldR {
			t.Fatal("our IKE SPI did not change")
		}
		var nfirst *ChildSA
		for _, c := range sa.Children() {
			if c != second {
				nfirst = c
			}
		}
		out := l.AwaitSAs(t, "new IKE and Child SPIs, old ones gone", 5*time.Second, func(out string) bool {
			return strings.Contains(out, fmt.Sprintf("%016x_i* %016x_r", newI, newR)) && !strings.Contains(out, fmt.Sprintf("%016x_i", oldI)) &&
				childListed(out, nfirst) && childGone(out, first) && childListed(out, second)
		})
		// Two Child SAs, in and out. charon rekeys the first every 3 s,
		// and while it does the new one is registered before the old
		// one goes: wait out such a rekey.
		for deadline := time.Now().Add(10 * time.Second); reg.len() != 4; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d SAs registered, want 4:\n%s", reg.len(), out)
			}
		}
		l.Swanctl(t, "--terminate", "--ike", "toespy", "--timeout", "10")
		waitFor(t, func() bool { return reg.len() == 0 && len(e.IKESAs()) == 0 })
	})

	t.Run("espy-timers-and-second-child", func(t *testing.T) {
		cfg := lifeConfig("b.lab.example", reg)
		cfg.IKERekeyTime, cfg.IKERandTime, cfg.IKEOverTime = 2500*time.Millisecond, 100*time.Millisecond, 20*time.Second
		cfg.ChildRekeyTime, cfg.ChildRandTime, cfg.ChildLifeTime = 1500*time.Millisecond, 100*time.Millisecond, 20*time.Second
		sa, err := e.Initiate(ctx, cfg, charon)
		if err != nil {
			t.Fatal(err)
		}
		oldI, _ := sa.SPIs()
		first := sa.Children()[0]
		// (b) espy adds a second Child SA with PFS; charon picks net2.
		second, err := sa.CreateChild(ctx, ChildConfig{ESP: []Proposal{MustParseProposal("aes128gcm16-x25519", false)},
			LocalTS: prefixTS("198.51.100.2/32"), RemoteTS: prefixTS("203.0.113.2/32")})
		if err != nil {
			t.Fatal(err)
		}
		if second.Suite.DH != message.DH_CURVE25519 {
			t.Fatalf("second Child SA without PFS: %v", second.Suite)
		}
		l.AwaitSAs(t, "both Child SAs listed", 5*time.Second, func(out string) bool {
			return childListed(out, first) && childListed(out, second) && strings.Contains(out, "net2:") && strings.Contains(out, "CURVE_25519")
		})
		// (a) espy's timers rekey both Child SAs and the IKE SA.
		waitFor(t, func() bool {
			a, _ := sa.SPIs()
			return a != oldI && len(sa.Children()) == 2 && !sa.hasChild(first) && !sa.hasChild(second)
		})
		out := l.AwaitSAs(t, "espy's new SPIs, old ones gone", 5*time.Second, func(out string) bool {
			cur := sa.Children()
			return len(cur) == 2 && ikeListed(out, sa) && !strings.Contains(out, fmt.Sprintf("%016x_i", oldI)) &&
				childListed(out, cur[0]) && childListed(out, cur[1]) && childGone(out, first) && childGone(out, second)
		})
		if !strings.Contains(out, "CURVE_25519") {
			t.Fatalf("the rekeyed second Child SA lost PFS:\n%s", out)
		}
		if err := sa.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return reg.len() == 0 })
	})

	t.Run("espy-reauth", func(t *testing.T) {
		cfg := lifeConfig("b.lab.example", reg)
		est := make(chan *IKESA, 4)
		cfg.Established = func(sa *IKESA) { est <- sa }
		cfg.IKERekeyTime, cfg.IKEReauthTime, cfg.IKERandTime, cfg.IKEOverTime = -1, 2*time.Second, time.Millisecond, 20*time.Second
		cfg.ChildRekeyTime = -1
		sa, err := e.Initiate(ctx, cfg, charon)
		if err != nil {
			t.Fatal(err)
		}
		<-est
		child := sa.Children()[0]
		l.AwaitSAs(t, "the IKE SA", 5*time.Second, func(out string) bool { return ikeListed(out, sa) && childListed(out, child) })
		var nsa *IKESA
		select {
		case nsa = <-est:
		case <-time.After(10 * time.Second):
			t.Fatal("espy did not reauthenticate")
		}
		waitFor(t, func() bool { return len(nsa.Children()) == 1 && !sa.isEstablished() && reg.len() == 2 })
		nchild := nsa.Children()[0]
		l.AwaitSAs(t, "the new IKE SA with its Child SA, the old one gone", 5*time.Second, func(out string) bool {
			return ikeListed(out, nsa) && !ikeListed(out, sa) && childListed(out, nchild) && childGone(out, child) && strings.Count(out, "ESTABLISHED") == 1
		})
		if fmt.Sprint(nchild.LocalTS, nchild.RemoteTS) != fmt.Sprint(child.LocalTS, child.RemoteTS) {
			t.Fatal("the recreated Child SA has other selectors")
		}
		if err := nsa.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return reg.len() == 0 })
	})

	t.Run("espy-hard-lifetimes", func(t *testing.T) {
		// A Child SA that is not rekeyed goes at its life time; the IKE SA
		// stays.
		cfg := lifeConfig("b.lab.example", reg)
		cfg.ChildRekeyTime, cfg.ChildLifeTime = -1, 1500*time.Millisecond
		sa, err := e.Initiate(ctx, cfg, charon)
		if err != nil {
			t.Fatal(err)
		}
		child := sa.Children()[0]
		l.AwaitSAs(t, "the Child SA gone at its hard lifetime", 8*time.Second, func(out string) bool {
			return ikeListed(out, sa) && childGone(out, child)
		})
		if reg.len() != 0 || len(sa.Children()) != 0 {
			t.Fatal("the expired Child SA is still registered")
		}
		if err := sa.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		// As responder espy does not reauthenticate: its IKE SA goes at
		// reauth_time + over_time, and charon lists nothing.
		rcfg := lifeConfig("c.lab.example", reg)
		rcfg.IKERekeyTime, rcfg.IKEReauthTime, rcfg.IKEOverTime, rcfg.IKERandTime = -1, time.Second, time.Second, time.Millisecond
		rcfg.ChildRekeyTime = -1
		if err := e.Respond(rcfg); err != nil {
			t.Fatal(err)
		}
		// charon's second children entry in IKE_AUTH: espy's second
		// Child SA configuration takes it.
		l.Swanctl(t, "--initiate", "--child", "tonet2", "--timeout", "20")
		if sas := e.IKESAs(); len(sas) != 1 || len(sas[0].Children()) != 1 || sas[0].Children()[0].policy == nil {
			t.Fatalf("espy has %d IKE SAs, not one with the second configuration's Child SA", len(sas))
		}
		l.AwaitSAs(t, "no SA left after espy's hard lifetime", 8*time.Second, func(out string) bool {
			return !strings.Contains(out, "ESTABLISHED")
		})
		waitFor(t, func() bool { return reg.len() == 0 && len(e.IKESAs()) == 0 })
	})
}
