package esptun

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/internal/charonlab"
)

// charon 5.9.8 with kernel-libipsec (see shared/interop/strongswan.md):
// tunnel mode only, always ESP-in-UDP, no AES-GMAC. The lab is
// internal/charonlab's.

// charonLogLevels are charon's log levels for these tests.
const charonLogLevels = "ike = 1\nchd = 2\nknl = 2"

// charonSwanctl has one connection accepting espy's initiations with any
// of the tested ESP proposals, and one child per proposal for charon's
// own initiations (selected with swanctl --initiate --child).
func charonSwanctl(esps []string) string {
	to := charonlab.Conn{Name: "toespy", Proposals: "aes128gcm16-prfsha256-x25519"}
	for _, e := range esps {
		to.Children = append(to.Children, charonlab.Child{Name: "to-" + e, ESP: e})
	}
	return charonlab.SwanctlConf([]string{"a.lab.example", "b.lab.example"},
		charonlab.Conn{Name: "fromespy", Proposals: "aes128gcm16-prfsha256-x25519",
			Children: []charonlab.Child{{Name: "net", ESP: strings.Join(esps, ",")}}}.String(),
		to.String())
}

// TestInteropCharonTraffic negotiates Child SAs between espy (userspace
// data plane) and charon (kernel-libipsec) in both roles and sends ping
// and TCP through each both ways; swanctl --list-sas must show the SA
// with the expected algorithms, UDP-encapsulated, and traffic counted.
func TestInteropCharonTraffic(t *testing.T) {
	cases := []struct{ esp, charonESP string }{
		{"null-sha1", "NULL/HMAC_SHA1_96"},
		{"null-sha256", "NULL/HMAC_SHA2_256_128"},
		{"null-sha512", "NULL/HMAC_SHA2_512_256"},
		{"aes128gcm16", "AES_GCM_16-128"},
		{"chacha20poly1305", "CHACHA20_POLY1305"},
		{"aes256-sha256", "AES_CBC-256/HMAC_SHA2_256_128"},
		// Cross-checks of espy's own AES-CTR, AES-XCBC and truncated-GCM
		// code against charon's (openssl/aes plugins).
		{"aes128ctr-sha384", "AES_CTR-128/HMAC_SHA2_384_192"},
		{"null-aesxcbc", "NULL/AES_XCBC_96"},
		{"aes256gcm8", "AES_GCM_8-256"},
	}
	l := newLab(t)
	// charon's inner address, and the route its kernel-netlink plugin
	// looks up when it installs the TUN route to espy's inner address.
	l.CharonInner(t, "203.0.113.1/32")
	var esps []string
	for _, c := range cases {
		esps = append(esps, c.esp)
	}
	l.StartCharon(t, charonlab.Charon{Swanctl: charonSwanctl(esps), LogLevels: charonLogLevels})
	a := start(t, l.a, addrA, netip.PrefixFrom(innerA, 32))
	lts, rts := []netip.Prefix{netip.PrefixFrom(innerA, 32)}, []netip.Prefix{netip.PrefixFrom(innerB, 32)}

	check := func(t *testing.T, c struct{ esp, charonESP string }, child *ike.ChildSA, before Status) {
		ping(t, l.a, innerB, 2, a.dp)
		ping(t, l.b, innerA, 2, a.dp)
		charonlab.TCPBothWays(t, l.a, l.b, innerB, 256<<10)
		charonlab.TCPBothWays(t, l.b, l.a, innerA, 256<<10)
		out := l.ListSAs(t)
		for _, want := range []string{
			"ESTABLISHED", "INSTALLED, TUNNEL-in-UDP", "ESP:" + c.charonESP + "\n",
			fmt.Sprintf("in  %08x", child.OutSPI), fmt.Sprintf("out %08x", child.InSPI),
			"local  203.0.113.1/32", "remote 198.51.100.1/32",
		} {
			if !strings.Contains(out, want) {
				t.Fatalf("swanctl --list-sas lacks %q:\n%s", want, out)
			}
		}
		// charon counted packets both ways ("in  SPI, N bytes, M packets").
		for _, dir := range []string{"in  ", "out "} {
			i := strings.Index(out, dir+fmt.Sprintf("%08x", map[string]uint32{"in  ": child.OutSPI, "out ": child.InSPI}[dir]))
			line := out[i:]
			line = line[:strings.IndexByte(line, '\n')]
			if strings.Contains(line, " 0 packets") || !strings.Contains(line, "packets") {
				t.Fatalf("charon counted no traffic: %q", line)
			}
		}
		checkCounters(t, "espy", a.dp, before)
	}

	t.Run("espy-initiates", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.esp, func(t *testing.T) {
				before := a.dp.Status()
				cfg := peerConfig("a.lab.example", "b.lab.example", c.esp, ike.ModeTunnel, false, lts, rts, ike.WithDataPlane(nil, a.dp))
				sa, err := a.ep.Initiate(ctx(t), cfg, netip.AddrPortFrom(addrB, ike.DefaultPort))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { sa.Delete(ctx(t)) })
				child := sa.Children()[0]
				if out, _ := child.Infos(); out.Encap != ike.EncapUDP {
					t.Fatalf("ESP not UDP-encapsulated: %+v", out)
				}
				check(t, c, child, before)
				if err := sa.Delete(ctx(t)); err != nil {
					t.Fatal(err)
				}
			})
		}
	})
	// Rekeys from both ends under a 100 packets/s ping: charon's libipsec
	// must receive no packet on an SA it has not installed yet, and the
	// other way round.
	t.Run("rekeys", func(t *testing.T) {
		cfg := peerConfig("a.lab.example", "b.lab.example", "null-sha256", ike.ModeTunnel, false, lts, rts, ike.WithDataPlane(nil, a.dp))
		sa, err := a.ep.Initiate(ctx(t), cfg, netip.AddrPortFrom(addrB, ike.DefaultPort))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sa.Delete(ctx(t)) })
		const count = 150
		pingDone := make(chan string, 1)
		go func() {
			out, _ := exec.Command("ip", "netns", "exec", l.a, "ping", "-c", fmt.Sprint(count), "-i", "0.01", "-W", "2", innerB.String()).CombinedOutput()
			pingDone <- string(out)
		}()
		time.Sleep(300 * time.Millisecond)
		first := sa.Children()[0].InSPI
		l.Swanctl(t, "--rekey", "--child", "net")
		deadline := time.Now().Add(5 * time.Second)
		for cs := sa.Children(); len(cs) != 1 || cs[0].InSPI == first; cs = sa.Children() {
			if time.Now().After(deadline) {
				t.Fatal("charon's rekey did not replace the Child SA")
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		child, err := sa.RekeyChild(ctx(t), sa.Children()[0])
		if err != nil {
			t.Fatalf("espy's rekey: %v", err)
		}
		if out := <-pingDone; !strings.Contains(out, fmt.Sprintf("%d received", count)) {
			t.Logf("espy: %+v", a.dp.Status())
			t.Fatalf("echoes lost during the rekeys:\n%s", out[strings.LastIndex(out, "---"):])
		}
		out := l.ListSAs(t)
		if !strings.Contains(out, fmt.Sprintf("in  %08x", child.OutSPI)) || !strings.Contains(out, fmt.Sprintf("out %08x", child.InSPI)) {
			t.Fatalf("charon does not list the rekeyed SA %08x/%08x:\n%s", child.InSPI, child.OutSPI, out)
		}
		st := a.dp.Status()
		if st.RemovedIn.AuthFailures != 0 || st.RemovedIn.ReplayDrops != 0 {
			t.Fatalf("drops on the replaced SAs: %+v", st)
		}
		if err := sa.Delete(ctx(t)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("charon-initiates", func(t *testing.T) {
		var ps []ike.Proposal
		for _, c := range cases {
			ps = append(ps, ike.MustParseProposal(c.esp, false))
		}
		// The cross-checks above need one direction only: keep the run short.
		cases := cases[:6]
		rcfg := peerConfig("a.lab.example", "b.lab.example", "null-sha256", ike.ModeTunnel, false, lts, rts, ike.WithDataPlane(nil, a.dp))
		rcfg.ESP = ps
		if err := a.ep.Respond(rcfg); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			t.Run(c.esp, func(t *testing.T) {
				before := a.dp.Status()
				l.Swanctl(t, "--initiate", "--child", "to-"+c.esp, "--timeout", "15")
				sas := a.ep.IKESAs()
				if len(sas) != 1 || len(sas[0].Children()) != 1 {
					t.Fatalf("espy has %d IKE SAs", len(sas))
				}
				t.Cleanup(func() {
					exec.Command("swanctl", "--terminate", "--ike", "toespy", "--timeout", "10", "--uri", l.URI).Run()
				})
				check(t, c, sas[0].Children()[0], before)
				l.Swanctl(t, "--terminate", "--ike", "toespy", "--timeout", "10")
				deadline := time.Now().Add(5 * time.Second)
				for len(a.ep.IKESAs()) != 0 || len(a.dp.Status().SAs) != 0 {
					if time.Now().After(deadline) {
						t.Fatal("espy kept SAs after charon's delete")
					}
					time.Sleep(10 * time.Millisecond)
				}
			})
		}
	})
}
