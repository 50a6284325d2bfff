package esptun

import (
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike"
)

// TestVolumeLimits runs espy against espy over the TUN data plane with
// volume limits on the initiator: with ChildRekeyPackets 50, ping traffic
// must rekey the Child SA every 50 packets or so without losing an echo;
// with only ChildLifePackets 30, exactly 30 packets leave on the SA, which
// is then deleted on both sides.
func TestVolumeLimits(t *testing.T) {
	cases := []struct {
		name        string
		rekey, life uint64
		encap       bool
	}{
		{name: "rekey_packets", rekey: 50},
		{name: "rekey_packets/udp", rekey: 50, encap: true},
		{name: "life_packets", life: 30},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newLab(t)
			a := start(t, l.a, addrA, netip.PrefixFrom(innerA, 32))
			b := start(t, l.b, addrB, netip.PrefixFrom(innerB, 32))
			lts, rts := []netip.Prefix{netip.PrefixFrom(innerA, 32)}, []netip.Prefix{netip.PrefixFrom(innerB, 32)}
			const esp = "aes128gcm16"
			if err := b.ep.Respond(peerConfig("b.lab.example", "a.lab.example", esp, ike.ModeTunnel, false, rts, lts, ike.WithDataPlane(nil, b.dp))); err != nil {
				t.Fatal(err)
			}
			cfg := peerConfig("a.lab.example", "b.lab.example", esp, ike.ModeTunnel, c.encap, lts, rts, ike.WithDataPlane(nil, a.dp))
			cfg.ChildRekeyPackets, cfg.ChildLifePackets = c.rekey, c.life
			sa, err := a.ep.Initiate(ctx(t), cfg, netip.AddrPortFrom(addrB, ike.DefaultPort))
			if err != nil {
				t.Fatal(err)
			}
			first := sa.Children()[0].InSPI
			const count = 200
			out, _ := exec.Command("ip", "netns", "exec", l.a, "ping", "-c", fmt.Sprint(count), "-i", "0.01", "-W", "1", innerB.String()).CombinedOutput()
			m := regexp.MustCompile(`(\d+) received`).FindSubmatch(out)
			if m == nil {
				t.Fatalf("ping output:\n%s", out)
			}
			received, _ := strconv.Atoi(string(m[1]))
			if c.rekey != 0 {
				// A request sealed on the old SA just before the
				// switch may reach b after the Delete of that SA;
				// the retiring SA's grace (RetireGrace) still opens it.
				if received != count || b.dp.Status().UnknownSPI != 0 {
					t.Logf("a: %+v\nb: %+v", a.dp.Status(), b.dp.Status())
					t.Fatalf("%d of %d echoes answered across the rekeys", received, count)
				}
				// Each SA pair carried about 50 requests: at least
				// three were replaced and none sent far more.
				st := waitSAs(t, a.dp, 2)
				if st.RemovedOut.Packets < 3*c.rekey {
					t.Fatalf("removed outbound SAs carried %d packets, want >= %d: %+v", st.RemovedOut.Packets, 3*c.rekey, st)
				}
				for _, s := range st.SAs {
					if s.Counters.Packets > c.rekey+10 {
						t.Fatalf("SA %08x inbound=%v carried %d packets past rekey_packets %d", s.SPI, s.Inbound, s.Counters.Packets, c.rekey)
					}
				}
				if now := sa.Children()[0].InSPI; now == first {
					t.Fatalf("Child SA still has inbound SPI %08x", now)
				}
				ping(t, l.b, innerA, 2, a.dp, b.dp)
				return
			}
			if received > int(c.life) {
				t.Fatalf("%d echoes answered past life_packets %d", received, c.life)
			}
			for _, n := range []*node{a, b} {
				waitSAs(t, n.dp, 0)
			}
			st := a.dp.Status()
			if st.RemovedOut.Packets != c.life {
				t.Fatalf("the expired SA sent %d packets, want life_packets %d: %+v", st.RemovedOut.Packets, c.life, st)
			}
			if len(sa.Children()) != 0 {
				t.Fatalf("initiator still has Child SAs %+v", sa.Children())
			}
		})
	}
}

// waitSAs waits up to five seconds for dp to hold n SAs and returns its
// status.
func waitSAs(t testing.TB, dp *DataPlane, n int) Status {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(dp.Status().SAs) != n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := dp.Status()
	if len(st.SAs) != n {
		t.Fatalf("%s: %d SAs, want %d: %+v", dp.Name(), len(st.SAs), n, st.SAs)
	}
	return st
}
