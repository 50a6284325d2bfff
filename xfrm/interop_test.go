package xfrm_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/ike/message"
	"github.com/espy-dpi/espy/internal/charonlab"
	"github.com/espy-dpi/espy/internal/umllab"
	"github.com/espy-dpi/espy/xfrm"
)

// The interop tests run charon 5.9.8 with kernel-netlink against espy's
// IKE stack with the XFRM data plane inside a User-Mode Linux guest (the
// host kernel has no ESP; see shared/interop/strongswan.md): two network
// namespaces of the guest joined by a veth pair (internal/charonlab),
// espy in A on 192.0.2.1, charon in B on 192.0.2.2. Transport mode
// protects 192.0.2.1 <-> 192.0.2.2 itself, tunnel mode 198.51.100.1 (A)
// <-> 203.0.113.1 (B).

var (
	addrA, addrB   = netip.MustParseAddr(charonlab.AddrA), netip.MustParseAddr(charonlab.AddrB)
	innerA, innerB = netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("203.0.113.1")
	addr6A, addr6B = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
)

// interopCase is one Child SA: espy's ESP proposal, what swanctl
// --list-sas shows for it, the mode, forced UDP encapsulation, and who
// initiates.
type interopCase struct {
	esp, charonESP string
	mode           ike.Mode
	encap          bool
	charonInit     bool
}

func (c interopCase) name() string {
	who := "espy-initiates"
	if c.charonInit {
		who = "charon-initiates"
	}
	enc := ""
	if c.encap {
		enc = "-udp"
	}
	return fmt.Sprintf("%s/%s-%s%s", who, c.esp, c.mode, enc)
}

// interopCases are run by default, most valuable first; ESPY_LONG=1
// adds longInteropCases.
var interopCases = []interopCase{
	{"null-sha256", "NULL/HMAC_SHA2_256_128", ike.ModeTransport, false, false},
	{"aes128gmac", "NULL_AES_GMAC-128", ike.ModeTransport, false, false},
	{"aes128gcm16", "AES_GCM_16-128", ike.ModeTunnel, false, true},
	{"aes256-sha256", "AES_CBC-256/HMAC_SHA2_256_128", ike.ModeTransport, true, false},
}

var longInteropCases = []interopCase{
	{"null-sha1", "NULL/HMAC_SHA1_96", ike.ModeTransport, false, true},
	{"null-sha512", "NULL/HMAC_SHA2_512_256", ike.ModeTunnel, false, false},
	{"aes256gmac", "NULL_AES_GMAC-256", ike.ModeTunnel, true, false},
	{"null-sha256", "NULL/HMAC_SHA2_256_128", ike.ModeTunnel, false, true},
	{"chacha20poly1305", "CHACHA20_POLY1305", ike.ModeTransport, false, true},
	{"aes128ctr-sha384-esn", "AES_CTR-128/HMAC_SHA2_384_192/ESN", ike.ModeTunnel, false, false},
	{"aes256gcm16", "AES_GCM_16-256", ike.ModeTransport, true, false},
	{"null-aesxcbc", "NULL/AES_XCBC_96", ike.ModeTransport, false, false},
}

// TestInteropCharonUML boots one UML guest and runs every case in it.
func TestInteropCharonUML(t *testing.T) {
	if umllab.InGuest() != "xfrm-interop" {
		// A safety net: the default run takes 80-140 s on a shared
		// 2-vCPU VM.
		timeout := 240 * time.Second
		if os.Getenv("ESPY_LONG") != "" {
			timeout = 420 * time.Second
		}
		umllab.RunTest(t, "xfrm-interop", umllab.Options{Modules: umllab.XFRMModules, NoAutoload: true, Timeout: timeout, Env: []string{"ESPY_LONG=" + os.Getenv("ESPY_LONG")}})
		return
	}
	cases := interopCases
	if os.Getenv("ESPY_LONG") != "" {
		cases = append(cases, longInteropCases...)
	}
	if !xfrmKernelESP() {
		t.Fatal("the UML guest has no ESP (esp4 not loaded)")
	}
	l := charonlab.New(t, charonlab.Options{Name: "xfrm", Dev: "exf", Charon: true, Needs: []string{"ping"}})
	l.CharonInner(t, innerB.String()+"/32")
	charonlab.Run(t, "ip", "-n", l.A, "addr", "add", innerA.String()+"/32", "dev", "lo")
	charonlab.Run(t, "ip", "-n", l.A, "route", "add", innerB.String()+"/32", "via", addrB.String(), "src", innerA.String())
	charonlab.Run(t, "ip", "-n", l.A, "addr", "add", addr6A.String()+"/64", "dev", l.DevA, "nodad")
	charonlab.Run(t, "ip", "-n", l.B, "addr", "add", addr6B.String()+"/64", "dev", l.DevB, "nodad")
	l.StartCharon(t, charonlab.Charon{Swanctl: swanctlConf(cases), KernelESP: true, LogLevels: "ike = 1\nchd = 1\nknl = 2"})

	var ep *ike.Endpoint
	var dp *xfrm.DataPlane
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := l.Do(func() error {
		ikeC, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addrA, ike.DefaultPort)))
		if err != nil {
			return err
		}
		nattC, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addrA, ike.DefaultNATPort)))
		if err != nil {
			ikeC.Close()
			return err
		}
		ep = ike.NewEndpoint(ikeC, nattC, ike.ListenConfig{Logger: log})
		dp, err = xfrm.Open(xfrm.Config{Endpoint: ep, Logger: log})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ep.Close() })
	t.Cleanup(func() { dp.Close() })
	reg := ike.WithDataPlane(nil, dp)

	var all []ike.Proposal
	for _, c := range cases {
		all = append(all, ike.MustParseProposal(c.esp, false))
	}
	// Responder: tunnel mode between the inner addresses, transport
	// mode between the outer ones.
	rcfg := peerConfig(all, ike.ModeTunnel, false, reg)
	rcfg.Children = []ike.ChildConfig{{ESP: all, Mode: ike.ModeTransport,
		LocalTS: []message.Selector{ike.PrefixSelector(netip.PrefixFrom(addrA, 32))}, RemoteTS: []message.Selector{ike.PrefixSelector(netip.PrefixFrom(addrB, 32))}}}
	if err := ep.Respond(rcfg); err != nil {
		t.Fatal(err)
	}

	for i, c := range cases {
		t.Run(c.name(), func(t *testing.T) {
			start := time.Now()
			step := func(what string) { t.Logf("%v: %s", time.Since(start).Round(time.Millisecond), what) }
			var sa *ike.IKESA
			if c.charonInit {
				l.Swanctl(t, "--initiate", "--child", fmt.Sprintf("c%d", i), "--timeout", "30")
				sas := ep.IKESAs()
				if len(sas) != 1 || len(sas[0].Children()) != 1 {
					t.Fatalf("espy has %d IKE SAs after charon's initiation", len(sas))
				}
				sa = sas[0]
			} else {
				cfg := peerConfig([]ike.Proposal{ike.MustParseProposal(c.esp, false)}, c.mode, c.encap, reg)
				var err error
				if sa, err = ep.Initiate(ctx(t), cfg, netip.AddrPortFrom(addrB, ike.DefaultPort)); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() { sa.Delete(ctx(t)) })
			step("established")
			child := sa.Children()[0]
			out, in := child.Infos()
			if out.Mode != c.mode || (out.Encap == ike.EncapUDP) != c.encap {
				t.Fatalf("negotiated mode %v encap %v, want %v %v", out.Mode, out.Encap, c.mode, c.encap)
			}
			local, remote := addrA, addrB
			if c.mode == ike.ModeTunnel {
				local, remote = innerA, innerB
			}
			ping(t, l.A, remote)
			ping(t, l.B, local)
			step("pinged")
			// Data flows both ways on either connection; who connects
			// alternates to keep the guest's run short.
			if i%2 == 0 {
				charonlab.TCPBothWays(t, l.A, l.B, remote, 32<<10)
			} else {
				charonlab.TCPBothWays(t, l.B, l.A, local, 32<<10)
			}

			step("tcp")
			list := l.ListSAs(t)
			step("listed")
			mode := map[ike.Mode]string{ike.ModeTransport: "TRANSPORT", ike.ModeTunnel: "TUNNEL"}[c.mode]
			if c.encap {
				mode += "-in-UDP"
			}
			for _, want := range []string{"ESTABLISHED", "INSTALLED, " + mode + ",", "ESP:" + c.charonESP + "\n",
				fmt.Sprintf("in  %08x", out.SPI), fmt.Sprintf("out %08x", in.SPI)} {
				if !strings.Contains(list, want) {
					t.Fatalf("swanctl --list-sas lacks %q:\n%s", want, list)
				}
			}
			// espy's kernel SAs counted the traffic, with no failures.
			st := dp.Status()
			if len(st) != 2 {
				t.Fatalf("%d SAs installed, want 2: %+v", len(st), st)
			}
			for _, s := range st {
				if s.Err != nil || s.State.Packets == 0 || s.State.IntegrityFailures != 0 || s.State.ReplayDrops != 0 {
					t.Errorf("SA %08x inbound=%v: %+v %v", s.SPI, s.Inbound, s.State, s.Err)
				}
			}
			t.Logf("espy SAs: %08x out %d packets, %08x in %d packets", st[0].SPI, st[0].State.Packets, st[1].SPI, st[1].State.Packets)

			if c.charonInit {
				l.Swanctl(t, "--terminate", "--ike", "lab", "--timeout", "15")
				deadline := time.Now().Add(10 * time.Second)
				for len(ep.IKESAs()) != 0 {
					if time.Now().After(deadline) {
						t.Fatal("espy kept the IKE SA after charon's delete")
					}
					time.Sleep(20 * time.Millisecond)
				}
			} else if err := sa.Delete(ctx(t)); err != nil {
				t.Fatal(err)
			}
			step("deleted")
			checkEmpty(t, l.A, dp)
			step("checked")
		})
	}

	// IPv6 outer and inner addresses (esp6), from a second endpoint on
	// the same data plane.
	t.Run("espy-initiates/null-sha256-transport-ipv6", func(t *testing.T) {
		var ep6 *ike.Endpoint
		if err := l.Do(func() error {
			ikeC, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr6A, ike.DefaultPort)))
			if err != nil {
				return err
			}
			nattC, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr6A, ike.DefaultNATPort)))
			if err != nil {
				ikeC.Close()
				return err
			}
			ep6 = ike.NewEndpoint(ikeC, nattC, ike.ListenConfig{Logger: log})
			return xfrm.PrepareEndpoint(ep6)
		}); err != nil {
			t.Fatal(err)
		}
		defer ep6.Close()
		cfg := peerConfig(all[:1], ike.ModeTransport, false, reg)
		cfg.LocalTS = []message.Selector{ike.PrefixSelector(netip.PrefixFrom(addr6A, 128))}
		cfg.RemoteTS = []message.Selector{ike.PrefixSelector(netip.PrefixFrom(addr6B, 128))}
		sa, err := ep6.Initiate(ctx(t), cfg, netip.AddrPortFrom(addr6B, ike.DefaultPort))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sa.Delete(ctx(t)) })
		ping(t, l.A, addr6B)
		ping(t, l.B, addr6A)
		charonlab.TCPBothWays(t, l.A, l.B, addr6B, 32<<10)
		out, in := sa.Children()[0].Infos()
		list := l.ListSAs(t)
		for _, want := range []string{"INSTALLED, TRANSPORT,", "ESP:" + cases[0].charonESP + "\n", fmt.Sprintf("in  %08x", out.SPI), fmt.Sprintf("out %08x", in.SPI), "2001:db8::2/128"} {
			if !strings.Contains(list, want) {
				t.Fatalf("swanctl --list-sas lacks %q:\n%s", want, list)
			}
		}
		for _, s := range dp.Status() {
			if s.Err != nil || s.State.Packets == 0 || s.State.Dst.Is4() {
				t.Errorf("SA %08x inbound=%v: %+v %v", s.SPI, s.Inbound, s.State, s.Err)
			}
		}
		if err := sa.Delete(ctx(t)); err != nil {
			t.Fatal(err)
		}
		checkEmpty(t, l.A, dp)
	})

	// The kernel's soft expiry (XFRM_MSG_EXPIRE) after 8 packets makes
	// espy rekey the Child SA while a ping runs, without losses.
	t.Run("volume-rekey", func(t *testing.T) {
		cfg := peerConfig(all[:1], ike.ModeTunnel, false, reg)
		cfg.ChildRekeyPackets, cfg.ChildLifePackets = 8, 10000
		sa, err := ep.Initiate(ctx(t), cfg, netip.AddrPortFrom(addrB, ike.DefaultPort))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sa.Delete(ctx(t)) })
		first := sa.Children()[0].InSPI
		out, err := exec.Command("ip", "netns", "exec", l.A, "ping", "-c", "12", "-i", "0.2", "-W", "3", innerB.String()).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "12 received") {
			t.Fatalf("ping during the rekey: %v\n%s", err, out)
		}
		cs := sa.Children()
		if len(cs) != 1 || cs[0].InSPI == first {
			t.Fatalf("Child SA %08x not rekeyed after its soft packet limit: %d children", first, len(cs))
		}
		if list := l.ListSAs(t); !strings.Contains(list, fmt.Sprintf("out %08x", cs[0].InSPI)) {
			t.Fatalf("charon lacks the rekeyed SA %08x:\n%s", cs[0].InSPI, list)
		}
		if err := sa.Delete(ctx(t)); err != nil {
			t.Fatal(err)
		}
		checkEmpty(t, l.A, dp)
	})

	// Close removes what is still installed.
	t.Run("close-removes", func(t *testing.T) {
		sa, err := ep.Initiate(ctx(t), peerConfig(all[:1], ike.ModeTunnel, false, reg), netip.AddrPortFrom(addrB, ike.DefaultPort))
		if err != nil {
			t.Fatal(err)
		}
		if out := xfrmShow(t, l.A, "state"); !strings.Contains(out, "proto esp") {
			t.Fatalf("no SA installed:\n%s", out)
		}
		if err := dp.Close(); err != nil {
			t.Fatal(err)
		}
		checkEmpty(t, l.A, dp)
		sa.Delete(ctx(t))
	})
}

// checkEmpty fails unless the namespace has no XFRM state and policy
// left and dp reports no SA.
func checkEmpty(t *testing.T, ns string, dp *xfrm.DataPlane) {
	t.Helper()
	// One ip for both lists: every exec costs about a second in UML.
	// The IKE sockets' own bypass policies show as "socket in/out".
	if out := xfrmShow(t, ns, "state", "policy"); strings.Contains(out, "proto esp") || strings.Contains(out, " dir ") || strings.Contains(out, "tmpl") {
		t.Errorf("ip xfrm state/policy not empty:\n%s", out)
	}
	if st := dp.Status(); len(st) != 0 {
		t.Errorf("data plane still reports %d SAs", len(st))
	}
}

// xfrmShow returns ip xfrm's lists of what (state, policy) in ns.
func xfrmShow(t *testing.T, ns string, what ...string) string {
	t.Helper()
	cmd := exec.Command("ip", "-n", ns, "-batch", "-")
	for _, w := range what {
		cmd.Stdin = io.MultiReader(orEmpty(cmd.Stdin), strings.NewReader("xfrm "+w+" list\n"))
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ip xfrm: %v\n%s", err, out)
	}
	return string(out)
}

func orEmpty(r io.Reader) io.Reader {
	if r == nil {
		return strings.NewReader("")
	}
	return r
}

func xfrmKernelESP() bool {
	_, err := os.Stat("/sys/module/esp4")
	return err == nil
}

// swanctlConf has one connection with two children accepting espy's
// initiations (first, so that charon picks them by traffic selectors:
// tr in transport mode between the outer addresses, tun in tunnel mode
// between the inner ones) and one child cN per case for charon's own.
func swanctlConf(cases []interopCase) string {
	var all []string
	for _, c := range cases {
		all = append(all, c.esp)
	}
	tr := charonlab.Child{Name: "tr", LocalTS: addrB.String() + "/32", RemoteTS: addrA.String() + "/32", ESP: strings.Join(all, ","), Settings: "mode = transport"}
	conn := charonlab.Conn{Name: "lab", Proposals: "aes128gcm16-prfsha256-x25519", Children: []charonlab.Child{tr, {Name: "tun", ESP: strings.Join(all, ",")}}}
	for i, c := range cases {
		ch := charonlab.Child{Name: fmt.Sprintf("c%d", i), ESP: c.esp}
		if c.mode == ike.ModeTransport {
			ch.LocalTS, ch.RemoteTS, ch.Settings = tr.LocalTS, tr.RemoteTS, "mode = transport"
		}
		conn.Children = append(conn.Children, ch)
	}
	// IPv6: a connection of its own (charonlab's are IPv4), transport
	// mode between the outer addresses, the first case's proposal.
	lab6 := fmt.Sprintf(`  lab6 {
    version = 2
    local_addrs = %[1]s
    remote_addrs = %[2]s
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
      tr6 {
        local_ts = %[1]s/128
        remote_ts = %[2]s/128
        esp_proposals = %[3]s
        mode = transport
      }
    }
  }
`, addr6B, addr6A, cases[0].esp)
	return charonlab.SwanctlConf([]string{"a.lab.example", "b.lab.example"}, conn.String(), lab6)
}

// peerConfig is espy's configuration against the lab's charon; the
// selectors follow the mode.
func peerConfig(esp []ike.Proposal, mode ike.Mode, encap bool, reg ike.SARegistrar) *ike.Config {
	local, remote := innerA, innerB
	if mode == ike.ModeTransport {
		local, remote = addrA, addrB
	}
	return &ike.Config{
		LocalID: ike.FQDN("a.lab.example"), RemoteID: ike.FQDN("b.lab.example"), PSK: []byte(charonlab.PSK),
		IKE:        []ike.Proposal{ike.MustParseProposal("aes128gcm16-prfsha256-x25519", true)},
		ESP:        esp,
		Mode:       mode,
		ForceEncap: encap,
		LocalTS:    []message.Selector{ike.PrefixSelector(netip.PrefixFrom(local, 32))},
		RemoteTS:   []message.Selector{ike.PrefixSelector(netip.PrefixFrom(remote, 32))},
		Retransmit: ike.Retransmit{Timeout: 2 * time.Second, Base: 1.5, Tries: 3},
		Registrar:  reg,
	}
}

func ping(t *testing.T, ns string, dst netip.Addr) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "3", dst.String()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "1 received") {
		t.Fatalf("ping %v from %s: %v\n%s", dst, ns, err, out)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}
