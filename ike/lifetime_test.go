package ike

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLifetimeDefaults checks the strongSwan-like defaults and the checks
// of Config's lifetimes.
func TestLifetimeDefaults(t *testing.T) {
	base, _ := configs("aes128gcm16-prfsha256-x25519", "null-sha256", nil, nil)
	for _, tc := range []struct {
		name string
		set  func(*Config)
		want string // IKE rekey/reauth/over/rand, Child rekey/life/rand
		err  bool
	}{
		{"defaults", func(*Config) {}, "4h0m0s 0s 24m0s 24m0s 1h0m0s 1h6m0s 6m0s", false},
		{"reauth", func(c *Config) { c.IKERekeyTime, c.IKEReauthTime = -1, 10*time.Hour }, "-1ns 10h0m0s 1h0m0s 1h0m0s 1h0m0s 1h6m0s 6m0s", false},
		{"explicit", func(c *Config) {
			c.IKERekeyTime, c.IKEOverTime, c.IKERandTime = time.Minute, 5*time.Second, time.Second
			c.ChildRekeyTime, c.ChildLifeTime, c.ChildRandTime = 10*time.Second, 20*time.Second, 2*time.Second
		}, "1m0s 0s 5s 1s 10s 20s 2s", false},
		{"child off", func(c *Config) { c.ChildRekeyTime = -1 }, "4h0m0s 0s 24m0s 24m0s -1ns 0s 0s", false},
		{"hard only", func(c *Config) { c.ChildRekeyTime, c.ChildLifeTime = -1, time.Minute }, "4h0m0s 0s 24m0s 24m0s -1ns 1m0s 0s", false},
		{"life below rekey", func(c *Config) { c.ChildRekeyTime, c.ChildLifeTime = time.Hour, time.Minute }, "", true},
		{"volumes", func(c *Config) {
			c.ChildRekeyBytes, c.ChildLifeBytes, c.ChildRekeyPackets, c.ChildLifePackets = 100, 200, 10, 20
		}, "4h0m0s 0s 24m0s 24m0s 1h0m0s 1h6m0s 6m0s", false},
		{"life bytes only", func(c *Config) { c.ChildLifeBytes = 100 }, "4h0m0s 0s 24m0s 24m0s 1h0m0s 1h6m0s 6m0s", false},
		{"life bytes not above rekey", func(c *Config) { c.ChildRekeyBytes, c.ChildLifeBytes = 100, 100 }, "", true},
		{"life packets below rekey", func(c *Config) { c.ChildRekeyPackets, c.ChildLifePackets = 100, 50 }, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := *base
			tc.set(&c)
			v, err := c.validate()
			if tc.err {
				if !errors.Is(err, ErrConfig) {
					t.Fatalf("validate: %v, want ErrConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprint(v.IKERekeyTime, v.IKEReauthTime, v.IKEOverTime, v.IKERandTime, v.ChildRekeyTime, v.ChildLifeTime, v.ChildRandTime)
			if got != tc.want {
				t.Fatalf("lifetimes %s, want %s", got, tc.want)
			}
			// Validating again changes nothing (Reauthenticate does).
			v2, err := v.validate()
			if err != nil || fmt.Sprint(v2.IKERekeyTime, v2.IKEReauthTime, v2.IKEOverTime, v2.IKERandTime, v2.ChildRekeyTime, v2.ChildLifeTime, v2.ChildRandTime) != got {
				t.Fatalf("second validate: %v", err)
			}
		})
	}
}

// TestJitter checks that the soft lifetime is lowered by at most the
// random time, never below half.
func TestJitter(t *testing.T) {
	p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
	sa := newSA(p.ini, p.iniCfg, true)
	lowest := time.Hour
	for range 200 {
		d := sa.jitter(time.Hour, 6*time.Minute)
		if d > time.Hour || d < 54*time.Minute {
			t.Fatalf("jitter gave %v", d)
		}
		lowest = min(lowest, d)
	}
	if lowest > 59*time.Minute {
		t.Fatalf("200 draws never went below %v", lowest)
	}
	if d := sa.jitter(time.Second, time.Hour); d < time.Second/2 {
		t.Fatalf("jitter larger than the lifetime gave %v", d)
	}
	if d := sa.jitter(time.Second, 0); d != time.Second {
		t.Fatalf("no jitter gave %v", d)
	}
}

// TestJitterCount checks the volume limits' jitter like TestJitter, and
// that childLimits applies it to the soft limits only.
func TestJitterCount(t *testing.T) {
	p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
	sa := newSA(p.ini, p.iniCfg, true)
	lowest := uint64(1000)
	for range 200 {
		n := sa.jitterCount(1000, 100)
		if n > 1000 || n < 900 {
			t.Fatalf("jitterCount gave %d", n)
		}
		lowest = min(lowest, n)
	}
	if lowest > 990 {
		t.Fatalf("200 draws never went below %d", lowest)
	}
	for _, tc := range []struct{ n, r, lo, hi uint64 }{{10, 1000, 5, 10}, {10, 0, 10, 10}, {0, 5, 0, 0}, {1, 1, 1, 1}} {
		if got := sa.jitterCount(tc.n, tc.r); got < tc.lo || got > tc.hi {
			t.Fatalf("jitterCount(%d, %d) = %d, want %d..%d", tc.n, tc.r, got, tc.lo, tc.hi)
		}
	}
	c := *sa.cfg
	c.ChildRekeyPackets, c.ChildRandPackets, c.ChildLifePackets = 1000, 500, 2000
	c.ChildRekeyBytes, c.ChildLifeBytes = 1<<20, 1<<21
	sa.cfg = &c
	l := sa.childLimits()
	if l.HardPackets != 2000 || l.SoftPackets > 1000 || l.SoftPackets < 500 || l.SoftBytes != 1<<20 || l.HardBytes != 1<<21 {
		t.Fatalf("childLimits %+v", l)
	}
}

// TestLifetimeTimers runs each timer on espy↔espy with lifetimes of a few
// hundred milliseconds: IKE SA and Child SA rekeying, the hard lifetime of
// a Child SA and of an IKE SA, and reauthentication with an additional
// Child SA recreated. Both ends must agree throughout, and what each
// registrar holds must be exactly the live Child SAs.
func TestLifetimeTimers(t *testing.T) {
	t.Run("ike-rekey", func(t *testing.T) {
		rp := newRekeyPair(t, "null-sha256", "null-sha256")
		rp.iniCfg.IKERekeyTime, rp.iniCfg.IKERandTime, rp.iniCfg.IKEOverTime = 250*time.Millisecond, 50*time.Millisecond, 10*time.Second
		isa, rsa, ic, _ := rp.establish(t)
		seen := map[uint64]bool{}
		waitFor(t, func() bool {
			a, _ := isa.SPIs()
			seen[a] = true
			return len(seen) >= 4
		})
		waitFor(t, func() bool { a, b := isa.SPIs(); c, d := rsa.SPIs(); return a == c && b == d })
		if c := isa.Children(); len(c) != 1 || c[0] != ic || rp.iniEv.len() != 2 || len(rp.iniEv.log()) != 2 {
			t.Fatalf("the Child SA changed with the IKE SA rekeys: %v", rp.iniEv.log())
		}
		if err := isa.Ping(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("child-rekey-both-ends", func(t *testing.T) {
		// Both ends rekey on their own timers; collisions are resolved.
		rp := newRekeyPair(t, "null-sha256", "null-sha256")
		rp.iniCfg.ChildRekeyTime, rp.iniCfg.ChildLifeTime = 200*time.Millisecond, 2*time.Second
		rp.respCfg.ChildRekeyTime, rp.respCfg.ChildLifeTime = 200*time.Millisecond, 2*time.Second
		if err := rp.resp.Respond(rp.respCfg); err != nil {
			t.Fatal(err)
		}
		isa, rsa, ic, _ := rp.establish(t)
		seen := map[uint32]bool{ic.InSPI: true}
		waitFor(t, func() bool {
			for _, c := range isa.Children() {
				seen[c.InSPI] = true
			}
			return len(seen) >= 5
		})
		if err := isa.Delete(t.Context()); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return rp.iniEv.len() == 0 && rp.respEv.len() == 0 && len(rsa.Children()) == 0 })
	})
	t.Run("child-hard", func(t *testing.T) {
		rp := newRekeyPair(t, "null-sha256", "null-sha256")
		rp.iniCfg.ChildRekeyTime, rp.iniCfg.ChildLifeTime = -1, 300*time.Millisecond
		isa, rsa, _, _ := rp.establish(t)
		c2, err := isa.CreateChild(t.Context(), ChildConfig{})
		if err != nil {
			t.Fatal(err)
		}
		// Both expire; the IKE SA stays.
		waitFor(t, func() bool {
			return len(isa.Children()) == 0 && len(rsa.Children()) == 0 && rp.iniEv.len() == 0 && rp.respEv.len() == 0
		})
		if ev := rp.respEv.log(); !strings.Contains(fmt.Sprint(ev), fmt.Sprintf("-%08x", c2.OutSPI)) {
			t.Fatalf("responder events %v", ev)
		}
		if err := isa.Ping(t.Context()); err != nil {
			t.Fatal(err)
		}
		if len(rp.resp.IKESAs()) != 1 {
			t.Fatal("the IKE SA went with its Child SAs")
		}
	})
	t.Run("ike-hard", func(t *testing.T) {
		// The responder does not reauthenticate (it did not initiate), so
		// its IKE SA reaches the hard lifetime and is deleted.
		rp := newRekeyPair(t, "null-sha256", "null-sha256")
		rp.respCfg.IKERekeyTime, rp.respCfg.IKEReauthTime, rp.respCfg.IKEOverTime = -1, 200*time.Millisecond, 200*time.Millisecond
		if err := rp.resp.Respond(rp.respCfg); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		rp.establish(t)
		waitFor(t, func() bool {
			return len(rp.ini.IKESAs()) == 0 && len(rp.resp.IKESAs()) == 0 && rp.iniEv.len() == 0 && rp.respEv.len() == 0
		})
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Fatalf("deleted after %v, before the hard lifetime", d)
		}
	})
	t.Run("reauth", func(t *testing.T) {
		rp := newRekeyPair(t, "null-sha256", "null-sha256")
		est := make(chan *IKESA, 8)
		rp.iniCfg.Established = func(sa *IKESA) { est <- sa }
		rp.iniCfg.IKERekeyTime, rp.iniCfg.IKEReauthTime, rp.iniCfg.IKERandTime, rp.iniCfg.IKEOverTime = -1, 400*time.Millisecond, time.Millisecond, 10*time.Second
		isa, rsa, ic, _ := rp.establish(t)
		<-est
		c2, err := isa.CreateChild(t.Context(), ChildConfig{LocalTS: prefixTS("198.51.100.0/26")})
		if err != nil {
			t.Fatal(err)
		}
		var nsa *IKESA
		select {
		case nsa = <-est:
		case <-time.After(10 * time.Second):
			t.Fatal("no reauthentication")
		}
		a, b := isa.SPIs()
		c, d := nsa.SPIs()
		if a == c || b == d {
			t.Fatal("reauthentication kept the IKE SPIs")
		}
		// The old IKE SA is deleted on both ends, with its Child SAs.
		waitFor(t, func() bool { return !isa.isEstablished() && !rsa.isEstablished() })
		nrsa := rp.responderSA(t, c)
		// The Child SAs were recreated: same selectors, new SPIs.
		waitFor(t, func() bool { return len(nsa.Children()) == 2 && rp.iniEv.len() == 4 && rp.respEv.len() == 4 })
		for i, old := range []*ChildSA{ic, c2} {
			n := nsa.Children()[i]
			if n.InSPI == old.InSPI || fmt.Sprint(n.LocalTS, n.RemoteTS) != fmt.Sprint(old.LocalTS, old.RemoteTS) {
				t.Fatalf("Child SA %d: %08x %v/%v, was %08x %v/%v", i, n.InSPI, n.LocalTS, n.RemoteTS, old.InSPI, old.LocalTS, old.RemoteTS)
			}
			childPairOf(t, nrsa, n)
			if _, ok := rp.iniEv.get(old.InSPI); ok {
				t.Fatalf("old Child SA %d still registered", i)
			}
		}
		if len(rp.ini.IKESAs()) > 2 {
			t.Fatalf("%d IKE SAs", len(rp.ini.IKESAs()))
		}
		if !isa.PeerID().equal(nsa.PeerID()) {
			t.Fatal("peer identity changed")
		}
	})
}

// TestLifetimeNoLeak runs IKE SAs with every timer armed and short
// lifetimes through rekeys and deletion (by Delete, by the peer, by
// Endpoint.Close) and checks that no goroutine is left behind and that
// deleted SAs hold no timers.
func TestLifetimeNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		rp := newRekeyPair(t, "aes128gcm16-x25519", "aes128gcm16-x25519")
		for _, c := range []*Config{rp.iniCfg, rp.respCfg} {
			c.IKERekeyTime, c.IKEReauthTime, c.IKERandTime, c.IKEOverTime = 150*time.Millisecond, 250*time.Millisecond, 20*time.Millisecond, 10*time.Second
			c.ChildRekeyTime, c.ChildLifeTime = 100*time.Millisecond, time.Second
		}
		if err := rp.resp.Respond(rp.respCfg); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var all []*IKESA
		rp.iniCfg.Established = func(sa *IKESA) { mu.Lock(); all = append(all, sa); mu.Unlock() }
		isa, rsa, _, _ := rp.establish(t)
		if _, err := isa.CreateChild(t.Context(), ChildConfig{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(700 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// A reauthentication in flight may bring up one more IKE SA.
		waitFor(t, func() bool {
			for _, sa := range rp.ini.IKESAs() {
				sa.Delete(ctx)
			}
			return len(rp.ini.IKESAs()) == 0 && len(rp.resp.IKESAs()) == 0 && rp.iniEv.len() == 0 && rp.respEv.len() == 0
		})
		mu.Lock()
		all = append(all, isa, rsa)
		mu.Unlock()
		for _, sa := range all {
			sa.mu.Lock()
			armed := sa.lt.rekey != nil || sa.lt.reauth != nil || sa.lt.hard != nil
			sa.mu.Unlock()
			if armed {
				t.Fatal("a deleted IKE SA still has lifetime timers")
			}
		}
		// One more with timers armed, gone with Endpoint.Close.
		if _, err := rp.initiate(t); err != nil {
			t.Fatal(err)
		}
		rp.ini.Close()
		rp.resp.Close()
	}()
	// Timer callbacks that already fired end with the SA.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// BenchmarkLifecycle measures, on one established IKE SA over loopback
// (X25519 + AES-GCM-16 IKE SA, ESP-NULL Child SAs), an additional Child SA
// (CREATE_CHILD_SA, then its Delete), a Child SA rekey (CREATE_CHILD_SA
// and the Delete of the old SA), an IKE SA rekey (CREATE_CHILD_SA with a
// new Diffie-Hellman, and the Delete of the old IKE SA) and a
// reauthentication (IKE_SA_INIT, IKE_AUTH, then the Delete of the old IKE
// SA).
func BenchmarkLifecycle(b *testing.B) {
	setup := func(b *testing.B) *IKESA {
		ini := listen(b, ListenConfig{})
		resp := listen(b, ListenConfig{CookieThreshold: 1 << 20})
		ic, rc := configs("aes128gcm16-prfsha256-x25519", "null-sha256", &recorder{}, &recorder{})
		if err := resp.Respond(rc); err != nil {
			b.Fatal(err)
		}
		addr, _ := resp.Addrs()
		sa, err := ini.Initiate(context.Background(), ic, addr)
		if err != nil {
			b.Fatal(err)
		}
		return sa
	}
	ctx := context.Background()
	b.Run("create-child", func(b *testing.B) {
		sa := setup(b)
		b.ReportAllocs()
		for b.Loop() {
			c, err := sa.CreateChild(ctx, ChildConfig{})
			if err != nil {
				b.Fatal(err)
			}
			if err := sa.DeleteChild(ctx, c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rekey-child", func(b *testing.B) {
		sa := setup(b)
		c := sa.Children()[0]
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if c, err = sa.RekeyChild(ctx, c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rekey-ike", func(b *testing.B) {
		sa := setup(b)
		b.ReportAllocs()
		for b.Loop() {
			if err := sa.RekeyIKE(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reauth", func(b *testing.B) {
		sa := setup(b)
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if sa, err = sa.Reauthenticate(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
