package packet_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Frame builders shared by the tests, the fuzz seeds and the benchmarks. The
// common path (Ethernet, 802.1Q, IPv4 with options, IPv6, UDP, TCP) is
// serialized by gopacket with FixLengths and ComputeChecksums, so the frames
// are what a real stack sends; what gopacket cannot write (IPv6 extension
// header chains, AH, WESP, cooked and loopback headers) is built by hand.

var (
	src4 = netip.MustParseAddr("192.0.2.1")
	dst4 = netip.MustParseAddr("198.51.100.2")
	src6 = netip.MustParseAddr("2001:db8::1")
	dst6 = netip.MustParseAddr("2001:db8:1::2")

	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

// espBytes is an ESP packet: SPI, sequence number and n bytes of body.
func espBytes(spi, seq uint32, n int) []byte {
	b := make([]byte, 8+n)
	binary.BigEndian.PutUint32(b, spi)
	binary.BigEndian.PutUint32(b[4:], seq)
	for i := 8; i < len(b); i++ {
		b[i] = byte(i*7 + 3)
	}
	return b
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func be32b(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func ser(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		tb.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

func ethL(et layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}
}

func vlanL(id uint16, et layers.EthernetType) *layers.Dot1Q {
	return &layers.Dot1Q{VLANIdentifier: id, Type: et}
}

func ip4L(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Id: 0x1234, Protocol: proto, SrcIP: src4.AsSlice(), DstIP: dst4.AsSlice()}
}

func ip6L(nh layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: nh, SrcIP: src6.AsSlice(), DstIP: dst6.AsSlice()}
}

func udpL(sp, dp uint16, ip gopacket.NetworkLayer) *layers.UDP {
	u := &layers.UDP{SrcPort: layers.UDPPort(sp), DstPort: layers.UDPPort(dp)}
	if err := u.SetNetworkLayerForChecksum(ip); err != nil {
		panic(err)
	}
	return u
}

func tcpL(sp, dp uint16, ip gopacket.NetworkLayer) *layers.TCP {
	t := &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), Seq: 1000, Ack: 2000, ACK: true, PSH: true, Window: 65535, DataOffset: 5}
	if err := t.SetNetworkLayerForChecksum(ip); err != nil {
		panic(err)
	}
	return t
}

// ipv4 is an IPv4 datagram (no link header) of proto carrying payload.
func ipv4(tb testing.TB, proto layers.IPProtocol, payload []byte) []byte {
	return ser(tb, ip4L(proto), gopacket.Payload(payload))
}

// ipv6 is an IPv6 datagram whose first next header is nh; payload holds any
// extension headers and what follows them.
func ipv6(tb testing.TB, nh layers.IPProtocol, payload []byte) []byte {
	return ser(tb, ip6L(nh), gopacket.Payload(payload))
}

// ext is a generic IPv6 extension header (hop-by-hop, routing, destination
// options) of n bytes, a multiple of 8, filled with PadN-like bytes.
func ext(next uint8, n int) []byte {
	b := make([]byte, n)
	b[0], b[1] = next, byte(n/8-1)
	if n > 2 {
		b[2], b[3] = 1, byte(n-4) // a PadN option covering the rest
	}
	return b
}

// routing is a type-4 (segment routing) style header of n bytes; the
// decoder only reads its length.
func routing(next uint8, n int) []byte {
	b := make([]byte, n)
	b[0], b[1], b[2], b[3] = next, byte(n/8-1), 4, 0
	return b
}

// frag6 is an IPv6 fragment header.
func frag6(next uint8, offset uint16, more bool) []byte {
	b := make([]byte, 8)
	b[0] = next
	v := offset << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:], v)
	binary.BigEndian.PutUint32(b[4:], 0xcafe)
	return b
}

// ah is an AH header with a 12-byte ICV (24 bytes in all).
func ah(next uint8) []byte {
	b := make([]byte, 24)
	b[0], b[1] = next, 24/4-2
	binary.BigEndian.PutUint32(b[4:], 0x1000)
	binary.BigEndian.PutUint32(b[8:], 1)
	return b
}

// wesp is a WESP header (with the 4-byte padding when pad is set) in front
// of esp; hdrLen and trlLen are set from ivLen and icvLen.
func wespHdr(nh, flags uint8, ivLen, icvLen int) []byte {
	hl := 4 + 8 + ivLen
	if flags&0x10 != 0 {
		hl += 4
	}
	b := []byte{nh, byte(hl), byte(icvLen), flags}
	if flags&0x10 != 0 {
		b = append(b, 0, 0, 0, 0)
	}
	return b
}

func ether(et uint16, l3 []byte, tags ...uint16) []byte {
	b := cat(macB, macA)
	// tags are (TPID, TCI) pairs.
	for i := 0; i+1 < len(tags); i += 2 {
		b = binary.BigEndian.AppendUint16(b, tags[i])
		b = binary.BigEndian.AppendUint16(b, tags[i+1])
	}
	b = binary.BigEndian.AppendUint16(b, et)
	return append(b, l3...)
}

func sll(proto uint16, l3 []byte) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint16(b[0:], 0) // to us
	binary.BigEndian.PutUint16(b[2:], 1) // ARPHRD_ETHER
	binary.BigEndian.PutUint16(b[4:], 6)
	copy(b[6:], macA)
	binary.BigEndian.PutUint16(b[14:], proto)
	return append(b, l3...)
}

func sll2(proto uint16, l3 []byte) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], proto)
	binary.BigEndian.PutUint32(b[4:], 3) // ifindex
	binary.BigEndian.PutUint16(b[8:], 1) // ARPHRD_ETHER
	b[10], b[11] = 0, 6
	copy(b[12:], macA)
	return append(b, l3...)
}

func loop(af uint32, little bool, l3 []byte) []byte {
	b := make([]byte, 4)
	if little {
		binary.LittleEndian.PutUint32(b, af)
	} else {
		binary.BigEndian.PutUint32(b, af)
	}
	return append(b, l3...)
}
