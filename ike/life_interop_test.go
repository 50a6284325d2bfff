package ike

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espy-dpi/espy/ike/message"
)

// lifeLab is two network namespaces joined by a veth pair, espy on
// 192.0.2.1 and charon on 192.0.2.2, for the lifetime interop tests (a
// copy of interop_test.go's lab with its own charon configuration).
type lifeLab struct {
	nsEspy, nsCharon string
	dir, uri, conf   string
}

func lifeRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newLifeLab(t *testing.T) *lifeLab {
	if os.Geteuid() != 0 {
		t.Skip("interop test needs root (network namespaces, charon)")
	}
	for _, bin := range []string{charonBin, "swanctl", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("interop test needs %s (Debian: strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins iproute2): %v", bin, err)
		}
	}
	suffix := make([]byte, 3)
	rand.Read(suffix)
	tag := hex.EncodeToString(suffix)
	l := &lifeLab{nsEspy: "espy-life-a-" + tag, nsCharon: "espy-life-b-" + tag, dir: t.TempDir()}
	if out, err := exec.Command("ip", "netns", "add", l.nsEspy).CombinedOutput(); err != nil {
		t.Skipf("interop test needs network namespaces: ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.nsEspy).Run() })
	lifeRun(t, "ip", "netns", "add", l.nsCharon)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.nsCharon).Run() })
	va, vb := "elfa"+tag, "elfb"+tag
	lifeRun(t, "ip", "link", "add", va, "netns", l.nsEspy, "type", "veth", "peer", "name", vb, "netns", l.nsCharon)
	for _, c := range []struct{ ns, dev, addr string }{{l.nsEspy, va, "192.0.2.1/24"}, {l.nsCharon, vb, "192.0.2.2/24"}} {
		lifeRun(t, "ip", "-n", c.ns, "addr", "add", c.addr, "dev", c.dev)
		lifeRun(t, "ip", "-n", c.ns, "link", "set", c.dev, "up")
		lifeRun(t, "ip", "-n", c.ns, "link", "set", "lo", "up")
	}
	// charon (kernel-libipsec) routes the remote selectors through its TUN
	// device and needs routes to them and its local inner addresses.
	for _, a := range []string{"203.0.113.1/32", "203.0.113.2/32"} {
		lifeRun(t, "ip", "-n", l.nsCharon, "addr", "add", a, "dev", "lo")
	}
	lifeRun(t, "ip", "-n", l.nsCharon, "route", "add", "198.51.100.0/24", "via", "192.0.2.1")
	l.uri = "unix://" + filepath.Join(l.dir, "charon.vici")
	return l
}

// lifeSwanctlConf has two connections. fromespy answers espy (identity
// b.lab.example) with two possible Child SAs, the second with PFS;
// toespy initiates to espy as c.lab.example with lifetimes of seconds on
// the IKE SA and the first Child SA (no jitter), and a second Child SA.
const lifeSwanctlConf = `connections {
  fromespy {
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
    proposals = aes128gcm16-prfsha256-x25519
    local {
      auth = psk
      id = b.lab.example
    }
    remote {
      auth = psk
      id = a.lab.example
    }
    children {
      net {
        local_ts = 203.0.113.1/32
        remote_ts = 198.51.100.1/32
        esp_proposals = null-sha256
      }
      net2 {
        local_ts = 203.0.113.2/32
        remote_ts = 198.51.100.2/32
        esp_proposals = aes128gcm16-x25519
      }
    }
  }
  toespy {
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
    proposals = aes128gcm16-prfsha256-x25519
    rekey_time = 5s
    over_time = 20s
    rand_time = 0s
    local {
      auth = psk
      id = c.lab.example
    }
    remote {
      auth = psk
      id = a.lab.example
    }
    children {
      tonet {
        local_ts = 203.0.113.1/32
        remote_ts = 198.51.100.1/32
        esp_proposals = null-sha256
        rekey_time = 3s
        life_time = 30s
        rand_time = 0s
      }
      tonet2 {
        local_ts = 203.0.113.2/32
        remote_ts = 198.51.100.2/32
        esp_proposals = null-sha256
      }
    }
  }
}
secrets {
  ike-lab {
    id-a = a.lab.example
    id-b = b.lab.example
    id-c = c.lab.example
    secret = "` + charonPSK + `"
  }
}
`

// start runs charon in its namespace with a private /run (its pid file
// path is compiled in) and loads the connections.
func (l *lifeLab) start(t *testing.T) {
	t.Helper()
	piddir := filepath.Join(l.dir, "run")
	if err := os.MkdirAll(piddir, 0o755); err != nil {
		t.Fatal(err)
	}
	sconf := filepath.Join(l.dir, "strongswan.conf")
	l.conf = filepath.Join(l.dir, "swanctl.conf")
	if err := os.WriteFile(sconf, []byte(fmt.Sprintf(strongswanConf, l.dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.conf, []byte(lifeSwanctlConf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.nsCharon, "sh", "-c", "mount --bind "+piddir+" /run && exec "+charonBin)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+sconf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(l.dir, "charon.log"))
			t.Logf("charon output:\n%s\ncharon log:\n%s", out.String(), log)
		}
	})
	sock := filepath.Join(l.dir, "charon.vici")
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-done:
			t.Fatalf("charon exited: %s", out.String())
		default:
		}
		if i > 200 {
			t.Fatal("charon's vici socket did not appear in 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	lifeRun(t, "swanctl", "--load-all", "--file", l.conf, "--uri", l.uri)
}

func (l *lifeLab) list(t *testing.T) string {
	return lifeRun(t, "swanctl", "--list-sas", "--uri", l.uri)
}

// await polls swanctl --list-sas until cond holds, for up to limit.
func (l *lifeLab) await(t *testing.T, what string, limit time.Duration, cond func(string) bool) string {
	t.Helper()
	var out string
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if out = l.list(t); cond(out) {
			return out
		}
	}
	t.Fatalf("swanctl --list-sas: %s not reached in %v:\n%s", what, limit, out)
	return ""
}

// listen opens espy's IKE and NAT-T sockets inside the espy namespace.
func (l *lifeLab) listen(t *testing.T) *Endpoint {
	t.Helper()
	type result struct {
		ike, natt *net.UDPConn
		err       error
	}
	ch := make(chan result, 1)
	go func() {
		// This goroutine's thread changes namespace; if switching back
		// fails the thread stays locked and dies with the goroutine.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		ns, err := os.Open("/run/netns/" + l.nsEspy)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		var r result
		r.ike, r.err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(espyAddr, DefaultPort)))
		if r.err == nil {
			r.natt, r.err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(espyAddr, DefaultNATPort)))
		}
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("back to the original namespace: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		ch <- r
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	e := NewEndpoint(r.ike, r.natt, ListenConfig{Logger: testLogger(t)})
	t.Cleanup(func() { e.Close() })
	return e
}

// lifeConfig is espy's side: a.lab.example with the first pair of inner
// addresses; the second pair is an additional Child SA configuration.
func lifeConfig(remote string, reg SARegistrar) *Config {
	return &Config{
		LocalID: FQDN("a.lab.example"), RemoteID: FQDN(remote), PSK: []byte(charonPSK),
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

func childGone(out string, c *ChildSA) bool {
	return !strings.Contains(out, fmt.Sprintf("in  %08x", c.OutSPI)) && !strings.Contains(out, fmt.Sprintf("out %08x", c.InSPI))
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
	l.start(t)
	e := l.listen(t)
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
		lifeRun(t, "swanctl", "--initiate", "--child", "tonet", "--timeout", "20", "--uri", l.uri)
		sas := e.IKESAs()
		if len(sas) != 1 {
			t.Fatalf("espy has %d IKE SAs", len(sas))
		}
		sa := sas[0]
		oldI, oldR := sa.SPIs()
		first := sa.Children()[0]
		// (b) charon adds its second children entry on the same IKE SA.
		lifeRun(t, "swanctl", "--initiate", "--child", "tonet2", "--timeout", "20", "--uri", l.uri)
		waitFor(t, func() bool { return len(sa.Children()) == 2 && reg.len() == 4 })
		second := sa.Children()[1]
		if fmt.Sprint(second.LocalTS) != fmt.Sprint(prefixTS("198.51.100.2/32")) {
			t.Fatalf("second Child SA selectors %v", second.LocalTS)
		}
		l.await(t, "both Child SAs listed", 5*time.Second, func(out string) bool {
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
		out := l.await(t, "new IKE and Child SPIs, old ones gone", 5*time.Second, func(out string) bool {
			return strings.Contains(out, fmt.Sprintf("%016x_i* %016x_r", newI, newR)) && !strings.Contains(out, fmt.Sprintf("%016x_i", oldI)) &&
				childListed(out, nfirst) && childGone(out, first) && childListed(out, second)
		})
		if reg.len() != 4 {
			t.Fatalf("%d SAs registered, want 4:\n%s", reg.len(), out)
		}
		lifeRun(t, "swanctl", "--terminate", "--ike", "toespy", "--timeout", "10", "--uri", l.uri)
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
		l.await(t, "both Child SAs listed", 5*time.Second, func(out string) bool {
			return childListed(out, first) && childListed(out, second) && strings.Contains(out, "net2:") && strings.Contains(out, "CURVE_25519")
		})
		// (a) espy's timers rekey both Child SAs and the IKE SA.
		waitFor(t, func() bool {
			a, _ := sa.SPIs()
			return a != oldI && len(sa.Children()) == 2 && !sa.hasChild(first) && !sa.hasChild(second)
		})
		out := l.await(t, "espy's new SPIs, old ones gone", 5*time.Second, func(out string) bool {
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
		l.await(t, "the IKE SA", 5*time.Second, func(out string) bool { return ikeListed(out, sa) && childListed(out, child) })
		var nsa *IKESA
		select {
		case nsa = <-est:
		case <-time.After(10 * time.Second):
			t.Fatal("espy did not reauthenticate")
		}
		waitFor(t, func() bool { return len(nsa.Children()) == 1 && !sa.isEstablished() && reg.len() == 2 })
		nchild := nsa.Children()[0]
		l.await(t, "the new IKE SA with its Child SA, the old one gone", 5*time.Second, func(out string) bool {
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
		l.await(t, "the Child SA gone at its hard lifetime", 8*time.Second, func(out string) bool {
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
		lifeRun(t, "swanctl", "--initiate", "--child", "tonet2", "--timeout", "20", "--uri", l.uri)
		if sas := e.IKESAs(); len(sas) != 1 || len(sas[0].Children()) != 1 || sas[0].Children()[0].policy == nil {
			t.Fatalf("espy has %d IKE SAs, not one with the second configuration's Child SA", len(sas))
		}
		l.await(t, "no SA left after espy's hard lifetime", 8*time.Second, func(out string) bool {
			return !strings.Contains(out, "ESTABLISHED")
		})
		waitFor(t, func() bool { return reg.len() == 0 && len(e.IKESAs()) == 0 })
	})
}
