package packet_test

import (
	"testing"

	"github.com/espy-dpi/espy/packet"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// benchFrames are the frames the benchmarks and the allocation test decode.
func benchFrames(tb testing.TB) []struct {
	name  string
	lt    packet.LinkType
	frame []byte
} {
	esp := espBytes(0xc0ffee01, 77, 1400)
	ip6 := ip6L(layers.IPProtocolUDP)
	ip6ext := ip6L(0)
	return []struct {
		name  string
		lt    packet.LinkType
		frame []byte
	}{
		{"esp-ipv4", packet.LinkTypeEthernet, ser(tb, ethL(layers.EthernetTypeIPv4), ip4L(layers.IPProtocolESP), gopacket.Payload(esp))},
		{"udp-esp-ipv6-vlan", packet.LinkTypeEthernet, ser(tb, ethL(layers.EthernetTypeDot1Q), vlanL(100, layers.EthernetTypeIPv6), ip6, udpL(4500, 4500, ip6), gopacket.Payload(esp))},
		{"esp-ipv6-ext", packet.LinkTypeEthernet, ser(tb, ethL(layers.EthernetTypeIPv6), ip6ext, gopacket.Payload(cat(ext(43, 8), routing(44, 24), frag6(50, 0, false), esp)))},
		{"wesp-sll2", packet.LinkTypeLinuxSLL2, sll2(0x0800, ipv4(tb, 141, cat(wespHdr(6, packet.WESPFlagPadding, 8, 16), esp)))},
	}
}

func TestDecodeAllocs(t *testing.T) {
	var d packet.Decoder
	d.AddTCPPort(4500)
	var p packet.Packet
	for _, bf := range benchFrames(t) {
		allocs := testing.AllocsPerRun(200, func() {
			if err := d.Decode(bf.lt, bf.frame, &p); err != nil || (p.Kind != packet.KindESP && p.Kind != packet.KindWESP) {
				t.Fatalf("%s: %v %v", bf.name, err, p.Kind)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Decode", bf.name, allocs)
		}
	}
	// Errors are sentinels: the failure path does not allocate either.
	bad := []byte{0x02}
	if a := testing.AllocsPerRun(200, func() { _ = d.Decode(packet.LinkTypeEthernet, bad, &p) }); a != 0 {
		t.Errorf("error path: %v allocations", a)
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, bf := range benchFrames(b) {
		b.Run(bf.name, func(b *testing.B) {
			var d packet.Decoder
			var p packet.Packet
			b.ReportAllocs()
			for b.Loop() {
				if err := d.Decode(bf.lt, bf.frame, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
