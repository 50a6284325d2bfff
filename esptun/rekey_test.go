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

// TestRekeyKeepsTraffic rekeys the Child SA from the initiator while ping
// runs every 10 ms (no echo may be lost), then from the responder while a
// TCP transfer runs both ways (it must complete intact; bulk TCP itself
// causes congestion drops, so it does not run beside the ping). The old
// SAs must be gone and the new ones carry the traffic.
func TestRekeyKeepsTraffic(t *testing.T) {
	for _, encap := range []bool{false, true} {
		t.Run(fmt.Sprintf("udp=%v", encap), func(t *testing.T) {
			l := newLab(t)
			a := start(t, l.a, addrA, netip.PrefixFrom(innerA, 32))
			b := start(t, l.b, addrB, netip.PrefixFrom(innerB, 32))
			lts, rts := []netip.Prefix{netip.PrefixFrom(innerA, 32)}, []netip.Prefix{netip.PrefixFrom(innerB, 32)}
			const esp = "aes128gcm16"
			if err := b.ep.Respond(peerConfig("b.lab.example", "a.lab.example", esp, ike.ModeTunnel, false, rts, lts, ike.WithDataPlane(nil, b.dp))); err != nil {
				t.Fatal(err)
			}
			sa, err := a.ep.Initiate(ctx(t), peerConfig("a.lab.example", "b.lab.example", esp, ike.ModeTunnel, encap, lts, rts, ike.WithDataPlane(nil, a.dp)), netip.AddrPortFrom(addrB, ike.DefaultPort))
			if err != nil {
				t.Fatal(err)
			}
			const count = 150
			pingDone := make(chan string, 1)
			go func() {
				out, _ := exec.Command("ip", "netns", "exec", l.a, "ping", "-c", fmt.Sprint(count), "-i", "0.01", "-W", "2", innerB.String()).CombinedOutput()
				pingDone <- string(out)
			}()
			time.Sleep(500 * time.Millisecond)
			if _, err := sa.RekeyChild(ctx(t), sa.Children()[0]); err != nil {
				t.Fatalf("rekey from the initiator: %v", err)
			}
			if out := <-pingDone; !strings.Contains(out, fmt.Sprintf("%d received", count)) {
				t.Logf("a: %+v\nb: %+v", a.dp.Status(), b.dp.Status())
				t.Fatalf("echoes lost during the rekey:\n%s", out[strings.LastIndex(out, "---"):])
			}
			tcpDone := make(chan struct{})
			go func() {
				defer close(tcpDone)
				charonlab.TCPBothWays(t, l.b, l.a, innerA, 8<<20)
			}()
			time.Sleep(100 * time.Millisecond)
			bsas := b.ep.IKESAs()
			if len(bsas) != 1 {
				t.Fatalf("responder has %d IKE SAs", len(bsas))
			}
			bchild, err := bsas[0].RekeyChild(ctx(t), bsas[0].Children()[0])
			if err != nil {
				t.Fatalf("rekey from the responder: %v", err)
			}
			<-tcpDone
			// One pair left on each side: the responder's rekey result.
			for _, n := range []struct {
				name string
				n    *node
				in   uint32
			}{{"a", a, bchild.OutSPI}, {"b", b, bchild.InSPI}} {
				deadline := time.Now().Add(5 * time.Second)
				for len(n.n.dp.Status().SAs) != 2 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				st := n.n.dp.Status()
				if len(st.SAs) != 2 {
					t.Fatalf("%s: %d SAs after the rekeys: %+v", n.name, len(st.SAs), st.SAs)
				}
				for _, s := range st.SAs {
					if s.Inbound && s.SPI != n.in {
						t.Fatalf("%s: inbound SA %08x, want %08x", n.name, s.SPI, n.in)
					}
					if !s.Inbound && !s.Active {
						t.Fatalf("%s: outbound SA %08x not active", n.name, s.SPI)
					}
				}
				checkCounters(t, n.name, n.n.dp, Status{UnknownSPI: st.UnknownSPI, NoSA: st.NoSA})
			}
			ping(t, l.b, innerA, 2, a.dp, b.dp)
		})
	}
}
