package esptun

import (
	"net/netip"
	"testing"

	"github.com/espy-dpi/espy/esp"
	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/ike/message"
)

// TestDataPathNoAllocs proves that the per-packet paths allocate nothing:
// output (match, seal, send on the raw socket and over the NAT-T socket)
// and input (SPI lookup, open, selector check, write to the device), on a
// real device and sockets in a namespace.
func TestDataPathNoAllocs(t *testing.T) {
	l := newLab(t)
	a := start(t, l.a, addrA, netip.PrefixFrom(innerA, 32))
	key := make([]byte, 20)
	for _, encap := range []ike.Encapsulation{ike.EncapNone, ike.EncapUDP} {
		info := ike.SAInfo{Src: addrA, Dst: addrB, SPI: 0x1000 + uint32(encap), Encap: encap, SrcPort: 4500, DstPort: 4500,
			EncrID: message.ENCR_AES_GCM_16, EncrKeyBits: 128, IntegID: message.AUTH_NONE, Mode: ike.ModeTunnel,
			LocalTS:  []message.Selector{ike.PrefixSelector(netip.PrefixFrom(innerA, 32))},
			RemoteTS: []message.Selector{ike.PrefixSelector(netip.PrefixFrom(innerB, 32))}}
		if err := a.dp.InstallSA(ike.KeyedSA{SAInfo: info, EncrKey: key, Initiated: true}); err != nil {
			t.Fatal(err)
		}
		// The inbound SA has the same keys, so that what output seals
		// input can open.
		in := info
		in.Inbound, in.Src, in.Dst = true, addrB, addrA
		in.SPI = 0x2000 + uint32(encap)
		if err := a.dp.InstallSA(ike.KeyedSA{SAInfo: in, EncrKey: key}); err != nil {
			t.Fatal(err)
		}
		seal, err := esp.NewOutbound(esp.Config{SPI: in.SPI, EncrID: in.EncrID, EncrKey: key})
		if err != nil {
			t.Fatal(err)
		}
		toB := ipv4(innerA.String(), innerB.String(), 17, 1000, 2000)
		toA := ipv4(innerB.String(), innerA.String(), 17, 2000, 1000)
		buf := make([]byte, 0, bufSize)
		scratch := make([]byte, bufSize)
		pkt := make([]byte, 0, 2048)
		// Warm up (first sends resolve neighbours, lazily sized state).
		a.dp.output(toB, buf)
		n := testing.AllocsPerRun(500, func() { a.dp.output(toB, buf) })
		if n != 0 {
			t.Errorf("encap %v: output: %v allocations per packet", encap, n)
		}
		n = testing.AllocsPerRun(500, func() {
			p, _ := seal.Seal(pkt[:0], toA, esp.ProtoIPv4)
			a.dp.input(p, encap, scratch)
		})
		if n != 0 {
			t.Errorf("encap %v: input: %v allocations per packet", encap, n)
		}
		st := a.dp.Status()
		for _, s := range st.SAs {
			if s.SPI == info.SPI && s.Counters.Packets < 500 || s.SPI == in.SPI && s.Counters.Packets < 500 {
				t.Errorf("SA %08x processed %d packets", s.SPI, s.Counters.Packets)
			}
		}
		if st.SendErrors != 0 || st.TunWriteErrors != 0 || st.SelectorDrops != 0 {
			t.Errorf("status %+v", st)
		}
	}
}
