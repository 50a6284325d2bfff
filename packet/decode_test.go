package packet_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/espy-dpi/espy/packet"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func udp4(tb testing.TB, sp, dp uint16, payload []byte) []byte {
	ip := ip4L(layers.IPProtocolUDP)
	return ser(tb, ip, udpL(sp, dp, ip), gopacket.Payload(payload))
}

func udp6(tb testing.TB, sp, dp uint16, payload []byte) []byte {
	ip := ip6L(layers.IPProtocolUDP)
	return ser(tb, ip, udpL(sp, dp, ip), gopacket.Payload(payload))
}

func tcp4(tb testing.TB, sp, dp uint16, payload []byte) []byte {
	ip := ip4L(layers.IPProtocolTCP)
	return ser(tb, ip, tcpL(sp, dp, ip), gopacket.Payload(payload))
}

// tcpFrame is one RFC 9329 frame: a length that counts itself, then b.
func tcpFrame(b []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(b)+2)), b...)
}

// set returns a copy of b with v written big-endian at off (len(v) bytes).
func set(b []byte, off int, v ...byte) []byte {
	b = bytes.Clone(b)
	copy(b[off:], v)
	return b
}

func put16(b []byte, off int, v uint16) []byte {
	b = bytes.Clone(b)
	binary.BigEndian.PutUint16(b[off:], v)
	return b
}

type want struct {
	err    error
	kind   packet.Kind
	src    netip.Addr
	dst    netip.Addr
	encap  packet.Encap
	sport  uint16
	dport  uint16
	vlans  []uint16
	ipHdr  int    // len(IPHeader)
	esp    []byte // nil: no ESP expected
	wesp   packet.WESP
	noAddr bool // the error comes before the addresses are read
}

type decodeCase struct {
	name  string
	lt    packet.LinkType
	frame []byte
	setup func(*packet.Decoder)
	want  want
}

func v4(esp []byte) want {
	return want{kind: packet.KindESP, src: src4, dst: dst4, ipHdr: 20, esp: esp}
}

func v6(esp []byte, ipHdr int) want {
	return want{kind: packet.KindESP, src: src6, dst: dst6, ipHdr: ipHdr, esp: esp}
}

func errw(err error) want { return want{err: err, noAddr: true} }

func withVLANs(w want, ids ...uint16) want { w.vlans = ids; return w }

func decodeCases(tb testing.TB) []decodeCase {
	esp := espBytes(0x1001, 1, 40)
	v4esp := ipv4(tb, layers.IPProtocolESP, esp)
	v6esp := ipv6(tb, layers.IPProtocolESP, esp)
	tcp := func(d *packet.Decoder) { d.AddTCPPort(4500) }

	// IPv4 options: router alert (4 bytes), and 40 bytes of record route.
	opt4 := ip4L(layers.IPProtocolESP)
	opt4.Options = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}
	v4opt := ser(tb, opt4, gopacket.Payload(esp))
	opt40 := ip4L(layers.IPProtocolESP)
	opt40.Options = []layers.IPv4Option{{OptionType: 7, OptionLength: 39, OptionData: append([]byte{4}, make([]byte, 36)...)}, {OptionType: 0}}
	v4opt40 := ser(tb, opt40, gopacket.Payload(esp))

	fragMF := ip4L(layers.IPProtocolESP)
	fragMF.Flags = layers.IPv4MoreFragments
	fragOff := ip4L(layers.IPProtocolESP)
	fragOff.FragOffset = 185
	df := ip4L(layers.IPProtocolESP)
	df.Flags = layers.IPv4DontFragment

	// Nine extension headers: one more than the decoder walks.
	var chain8, chain9 []byte
	for i := 0; i < 8; i++ {
		chain8 = append(chain8, ext(60, 8)...)
	}
	chain8[len(chain8)-8] = 50
	chain9 = append(ext(60, 8), chain8...)

	// WESP: NULL transport with a 12-byte ICV, no IV, and with padding.
	wespPlain := wespHdr(6, 0, 0, 12)
	wespPad := wespHdr(6, packet.WESPFlagPadding, 0, 12)
	wespEnc := wespHdr(0, packet.WESPFlagEncrypted, 8, 16)

	cases := []decodeCase{
		// Link types.
		{"ethernet/ipv4", packet.LinkTypeEthernet, ser(tb, ethL(layers.EthernetTypeIPv4), ip4L(layers.IPProtocolESP), gopacket.Payload(esp)), nil, v4(esp)},
		{"ethernet/ipv6", packet.LinkTypeEthernet, ser(tb, ethL(layers.EthernetTypeIPv6), ip6L(layers.IPProtocolESP), gopacket.Payload(esp)), nil, v6(esp, 40)},
		{"ethernet/vlan", packet.LinkTypeEthernet, ser(tb, ethL(layers.EthernetTypeDot1Q), vlanL(100, layers.EthernetTypeIPv4), ip4L(layers.IPProtocolESP), gopacket.Payload(esp)), nil, withVLANs(v4(esp), 100)},
		{"ethernet/qinq-88a8", packet.LinkTypeEthernet, ether(0x86dd, v6esp, 0x88a8, 0x2000|200, 0x8100, 4094), nil, withVLANs(v6(esp, 40), 200, 4094)},
		{"ethernet/qinq-9100", packet.LinkTypeEthernet, ether(0x0800, v4esp, 0x9100, 7, 0x8100, 8), nil, withVLANs(v4(esp), 7, 8)},
		{"ethernet/qinq-gopacket", packet.LinkTypeEthernet, ser(tb, ethL(layers.EthernetTypeQinQ), vlanL(300, layers.EthernetTypeDot1Q), vlanL(301, layers.EthernetTypeIPv4), ip4L(layers.IPProtocolESP), gopacket.Payload(esp)), nil, withVLANs(v4(esp), 300, 301)},
		{"ethernet/three-tags", packet.LinkTypeEthernet, ether(0x0800, v4esp, 0x88a8, 1, 0x8100, 2, 0x8100, 3), nil, errw(packet.ErrTooManyVLANs)},
		{"ethernet/tag-truncated", packet.LinkTypeEthernet, ether(0x8100, []byte{0, 5}), nil, errw(packet.ErrTruncated)},
		{"ethernet/short", packet.LinkTypeEthernet, make([]byte, 13), nil, errw(packet.ErrTruncated)},
		{"ethernet/arp", packet.LinkTypeEthernet, ether(0x0806, make([]byte, 28)), nil, errw(packet.ErrNotIP)},
		{"ethernet/802.3-length", packet.LinkTypeEthernet, ether(46, make([]byte, 46)), nil, errw(packet.ErrNotIP)},
		{"ethernet/trailer-ipv4", packet.LinkTypeEthernet, ether(0x0800, cat(ipv4(tb, layers.IPProtocolESP, esp[:8]), make([]byte, 18))), nil, v4(esp[:8])},
		{"ethernet/trailer-ipv6", packet.LinkTypeEthernet, ether(0x86dd, cat(v6esp, []byte{0xde, 0xad, 0xbe, 0xef})), nil, v6(esp, 40)},
		{"sll/ipv4", packet.LinkTypeLinuxSLL, sll(0x0800, v4esp), nil, v4(esp)},
		{"sll/ipv6", packet.LinkTypeLinuxSLL, sll(0x86dd, v6esp), nil, v6(esp, 40)},
		{"sll/short", packet.LinkTypeLinuxSLL, sll(0x0800, nil)[:15], nil, errw(packet.ErrTruncated)},
		{"sll/not-ip", packet.LinkTypeLinuxSLL, sll(0x0004, v4esp), nil, errw(packet.ErrNotIP)},
		{"sll2/ipv4", packet.LinkTypeLinuxSLL2, sll2(0x0800, v4esp), nil, v4(esp)},
		{"sll2/ipv6", packet.LinkTypeLinuxSLL2, sll2(0x86dd, v6esp), nil, v6(esp, 40)},
		{"sll2/short", packet.LinkTypeLinuxSLL2, sll2(0x0800, nil)[:19], nil, errw(packet.ErrTruncated)},
		{"raw/ipv4", packet.LinkTypeRaw, v4esp, nil, v4(esp)},
		{"raw/ipv6", packet.LinkTypeRaw, v6esp, nil, v6(esp, 40)},
		{"raw12/ipv4", packet.LinkTypeRawAlt12, v4esp, nil, v4(esp)},
		{"raw14/ipv6", packet.LinkTypeRawAlt14, v6esp, nil, v6(esp, 40)},
		{"raw/empty", packet.LinkTypeRaw, nil, nil, errw(packet.ErrTruncated)},
		{"raw/version5", packet.LinkTypeRaw, set(v4esp, 0, 0x55), nil, errw(packet.ErrNotIP)},
		{"linktype-ipv4", packet.LinkTypeIPv4, v4esp, nil, v4(esp)},
		{"linktype-ipv6", packet.LinkTypeIPv6, v6esp, nil, v6(esp, 40)},
		{"linktype-ipv4/given-ipv6", packet.LinkTypeIPv4, v6esp, nil, errw(packet.ErrBadIPHeader)},
		{"linktype-ipv6/given-ipv4", packet.LinkTypeIPv6, cat(v4esp, make([]byte, 20)), nil, errw(packet.ErrBadIPHeader)},
		{"null/le-inet", packet.LinkTypeNull, loop(2, true, v4esp), nil, v4(esp)},
		{"null/be-inet", packet.LinkTypeNull, loop(2, false, v4esp), nil, v4(esp)},
		{"null/le-inet6-bsd", packet.LinkTypeNull, loop(24, true, v6esp), nil, v6(esp, 40)},
		{"null/le-inet6-freebsd", packet.LinkTypeNull, loop(28, true, v6esp), nil, v6(esp, 40)},
		{"null/be-inet6-darwin", packet.LinkTypeNull, loop(30, false, v6esp), nil, v6(esp, 40)},
		{"null/le-inet6-linux", packet.LinkTypeNull, loop(10, true, v6esp), nil, v6(esp, 40)},
		{"null/unknown-af", packet.LinkTypeNull, loop(7, true, v4esp), nil, errw(packet.ErrNotIP)},
		{"null/short", packet.LinkTypeNull, []byte{2, 0, 0}, nil, errw(packet.ErrTruncated)},
		{"loop/inet", packet.LinkTypeLoop, loop(2, false, v4esp), nil, v4(esp)},
		{"loop/inet6", packet.LinkTypeLoop, loop(24, false, v6esp), nil, v6(esp, 40)},
		{"loop/host-order", packet.LinkTypeLoop, loop(2, true, v4esp), nil, errw(packet.ErrNotIP)},
		{"unsupported-linktype", packet.LinkType(147), v4esp, nil, errw(packet.ErrUnsupportedLinkType)},

		// IPv4.
		{"ipv4/option-4", packet.LinkTypeIPv4, v4opt, nil, want{kind: packet.KindESP, src: src4, dst: dst4, ipHdr: 24, esp: esp}},
		{"ipv4/option-40", packet.LinkTypeIPv4, v4opt40, nil, want{kind: packet.KindESP, src: src4, dst: dst4, ipHdr: 60, esp: esp}},
		{"ipv4/short", packet.LinkTypeIPv4, v4esp[:19], nil, errw(packet.ErrTruncated)},
		{"ipv4/ihl-4", packet.LinkTypeIPv4, set(v4esp, 0, 0x44), nil, errw(packet.ErrBadIPHeader)},
		{"ipv4/total-below-ihl", packet.LinkTypeIPv4, put16(v4esp, 2, 19), nil, errw(packet.ErrBadIPHeader)},
		{"ipv4/total-beyond-frame", packet.LinkTypeIPv4, put16(v4esp, 2, uint16(len(v4esp)+1)), nil, errw(packet.ErrTruncated)},
		{"ipv4/ihl-beyond-total", packet.LinkTypeIPv4, set(v4opt, 0, 0x4f), nil, want{kind: packet.KindESP, src: src4, dst: dst4, ipHdr: 60, esp: v4opt[60:]}},
		{"ipv4/fragment-mf", packet.LinkTypeIPv4, ser(tb, fragMF, gopacket.Payload(esp)), nil, want{kind: packet.KindFragment, src: src4, dst: dst4, ipHdr: 20}},
		{"ipv4/fragment-offset", packet.LinkTypeIPv4, ser(tb, fragOff, gopacket.Payload(esp)), nil, want{kind: packet.KindFragment, src: src4, dst: dst4, ipHdr: 20}},
		{"ipv4/dont-fragment", packet.LinkTypeIPv4, ser(tb, df, gopacket.Payload(esp)), nil, v4(esp)},
		{"ipv4/icmp", packet.LinkTypeIPv4, ipv4(tb, layers.IPProtocolICMPv4, make([]byte, 16)), nil, want{kind: packet.KindOther, src: src4, dst: dst4, ipHdr: 20}},

		// IPv6 extension headers.
		{"ipv6/hop-by-hop", packet.LinkTypeIPv6, ipv6(tb, 0, cat(ext(50, 8), esp)), nil, v6(esp, 48)},
		{"ipv6/hbh-routing-dstopts", packet.LinkTypeIPv6, ipv6(tb, 0, cat(ext(43, 16), routing(60, 24), ext(50, 8), esp)), nil, v6(esp, 88)},
		{"ipv6/atomic-fragment", packet.LinkTypeIPv6, ipv6(tb, 44, cat(frag6(50, 0, false), esp)), nil, v6(esp, 48)},
		{"ipv6/fragment-more", packet.LinkTypeIPv6, ipv6(tb, 44, cat(frag6(50, 0, true), esp)), nil, want{kind: packet.KindFragment, src: src6, dst: dst6, ipHdr: 48}},
		{"ipv6/fragment-offset", packet.LinkTypeIPv6, ipv6(tb, 0, cat(ext(44, 8), frag6(50, 6, false), esp)), nil, want{kind: packet.KindFragment, src: src6, dst: dst6, ipHdr: 56}},
		{"ipv6/fragment-reserved-bits", packet.LinkTypeIPv6, ipv6(tb, 44, cat(set(frag6(50, 0, false), 3, 0x06), esp)), nil, v6(esp, 48)},
		{"ipv6/ah-before-esp", packet.LinkTypeIPv6, ipv6(tb, 51, cat(ah(50), esp)), nil, v6(esp, 64)},
		{"ipv6/dstopts-ah-esp", packet.LinkTypeIPv6, ipv6(tb, 60, cat(ext(51, 8), ah(50), esp)), nil, v6(esp, 72)},
		{"ipv6/eight-headers", packet.LinkTypeIPv6, ipv6(tb, 60, cat(chain8, esp)), nil, v6(esp, 40+64)},
		{"ipv6/nine-headers", packet.LinkTypeIPv6, ipv6(tb, 60, cat(chain9, esp)), nil, want{err: packet.ErrTooManyExtHeaders, src: src6, dst: dst6}},
		{"ipv6/ext-beyond-payload", packet.LinkTypeIPv6, ipv6(tb, 0, ext(50, 16)[:8]), nil, want{err: packet.ErrBadIPHeader, src: src6, dst: dst6}},
		{"ipv6/ext-under-8", packet.LinkTypeIPv6, ipv6(tb, 0, make([]byte, 6)), nil, want{err: packet.ErrBadIPHeader, src: src6, dst: dst6}},
		{"ipv6/ah-beyond-payload", packet.LinkTypeIPv6, ipv6(tb, 51, ah(50)[:16]), nil, want{err: packet.ErrBadIPHeader, src: src6, dst: dst6}},
		{"ipv6/short", packet.LinkTypeIPv6, v6esp[:39], nil, errw(packet.ErrTruncated)},
		{"ipv6/payload-beyond-frame", packet.LinkTypeIPv6, put16(v6esp, 4, uint16(len(esp)+1)), nil, errw(packet.ErrTruncated)},
		{"ipv6/jumbo-zero-length", packet.LinkTypeIPv6, put16(v6esp, 4, 0), nil, v6(esp, 40)},
		{"ipv6/no-next", packet.LinkTypeIPv6, ipv6(tb, 59, nil), nil, want{kind: packet.KindOther, src: src6, dst: dst6, ipHdr: 40}},

		// ESP.
		{"esp/header-only", packet.LinkTypeIPv4, ipv4(tb, layers.IPProtocolESP, esp[:8]), nil, v4(esp[:8])},
		{"esp/short", packet.LinkTypeIPv4, ipv4(tb, layers.IPProtocolESP, esp[:7]), nil, want{err: packet.ErrBadESP, src: src4, dst: dst4}},

		// UDP encapsulation.
		{"udp/esp-dst-4500", packet.LinkTypeIPv4, udp4(tb, 4500, 4500, esp), nil, want{kind: packet.KindESP, src: src4, dst: dst4, encap: packet.EncapUDP, sport: 4500, dport: 4500, ipHdr: 20, esp: esp}},
		{"udp/esp-nat-src", packet.LinkTypeIPv4, udp4(tb, 4500, 61234, esp), nil, want{kind: packet.KindESP, src: src4, dst: dst4, encap: packet.EncapUDP, sport: 4500, dport: 61234, ipHdr: 20, esp: esp}},
		{"udp/esp-ipv6", packet.LinkTypeIPv6, udp6(tb, 50000, 4500, esp), nil, want{kind: packet.KindESP, src: src6, dst: dst6, encap: packet.EncapUDP, sport: 50000, dport: 4500, ipHdr: 40, esp: esp}},
		{"udp/keepalive", packet.LinkTypeIPv4, udp4(tb, 4500, 4500, []byte{0xff}), nil, want{kind: packet.KindKeepalive, src: src4, dst: dst4, encap: packet.EncapUDP, sport: 4500, dport: 4500, ipHdr: 20}},
		{"udp/ike-marker", packet.LinkTypeIPv4, udp4(tb, 4500, 4500, cat([]byte{0, 0, 0, 0}, make([]byte, 28))), nil, want{kind: packet.KindIKE, src: src4, dst: dst4, encap: packet.EncapUDP, sport: 4500, dport: 4500, ipHdr: 20}},
		{"udp/wesp-marker", packet.LinkTypeIPv4, udp4(tb, 4500, 4500, cat(be32b(2), wespPlain, esp)), nil, want{kind: packet.KindWESP, src: src4, dst: dst4, encap: packet.EncapUDP, sport: 4500, dport: 4500, ipHdr: 20, esp: esp, wesp: packet.WESP{NextHeader: 6, HdrLen: 12, TrlLen: 12}}},
		{"udp/one-byte-not-keepalive", packet.LinkTypeIPv4, udp4(tb, 4500, 4500, []byte{0}), nil, want{err: packet.ErrBadESP, src: src4, dst: dst4}},
		{"udp/empty", packet.LinkTypeIPv4, udp4(tb, 4500, 4500, nil), nil, want{err: packet.ErrBadESP, src: src4, dst: dst4}},
		{"udp/esp-short", packet.LinkTypeIPv4, udp4(tb, 4500, 4500, esp[:7]), nil, want{err: packet.ErrBadESP, src: src4, dst: dst4}},
		{"udp/other-port", packet.LinkTypeIPv4, udp4(tb, 500, 500, esp), nil, want{kind: packet.KindOther, src: src4, dst: dst4, ipHdr: 20}},
		{"udp/extra-port", packet.LinkTypeIPv4, udp4(tb, 10500, 10500, esp), func(d *packet.Decoder) { d.AddUDPPort(10500) }, want{kind: packet.KindESP, src: src4, dst: dst4, encap: packet.EncapUDP, sport: 10500, dport: 10500, ipHdr: 20, esp: esp}},
		{"udp/extra-port-unset", packet.LinkTypeIPv4, udp4(tb, 10500, 10500, esp), nil, want{kind: packet.KindOther, src: src4, dst: dst4, ipHdr: 20}},
		{"udp/short-header", packet.LinkTypeIPv4, ipv4(tb, layers.IPProtocolUDP, []byte{0x11, 0x94, 0x11, 0x94, 0, 8, 0}), nil, want{err: packet.ErrBadIPHeader, src: src4, dst: dst4}},
		{"udp/length-below-8", packet.LinkTypeIPv4, put16(udp4(tb, 4500, 4500, esp), 24, 7), nil, want{err: packet.ErrBadIPHeader, src: src4, dst: dst4}},
		{"udp/length-beyond-ip", packet.LinkTypeIPv4, put16(udp4(tb, 4500, 4500, esp), 24, uint16(8+len(esp)+1)), nil, want{err: packet.ErrBadIPHeader, src: src4, dst: dst4}},
		{"udp/length-trims-esp", packet.LinkTypeIPv4, put16(udp4(tb, 4500, 4500, esp), 24, 8+16), nil, want{kind: packet.KindESP, src: src4, dst: dst4, encap: packet.EncapUDP, sport: 4500, dport: 4500, ipHdr: 20, esp: esp[:16]}},

		// TCP encapsulation (RFC 9329).
		{"tcp/esp-frame", packet.LinkTypeIPv4, tcp4(tb, 51000, 4500, tcpFrame(esp)), tcp, want{kind: packet.KindESP, src: src4, dst: dst4, encap: packet.EncapTCP, sport: 51000, dport: 4500, ipHdr: 20, esp: esp}},
		{"tcp/two-frames", packet.LinkTypeIPv4, tcp4(tb, 4500, 51000, cat(tcpFrame(esp), tcpFrame(esp[:20]))), tcp, want{kind: packet.KindESP, src: src4, dst: dst4, encap: packet.EncapTCP, sport: 4500, dport: 51000, ipHdr: 20, esp: esp}},
		{"tcp/ike-frame", packet.LinkTypeIPv4, tcp4(tb, 51000, 4500, tcpFrame(make([]byte, 32))), tcp, want{kind: packet.KindIKE, src: src4, dst: dst4, encap: packet.EncapTCP, sport: 51000, dport: 4500, ipHdr: 20}},
		{"tcp/mid-stream", packet.LinkTypeIPv4, tcp4(tb, 51000, 4500, tcpFrame(esp)[5:]), tcp, want{kind: packet.KindOther, src: src4, dst: dst4, encap: packet.EncapTCP, sport: 51000, dport: 4500, ipHdr: 20}},
		{"tcp/frame-too-short", packet.LinkTypeIPv4, tcp4(tb, 51000, 4500, []byte{0, 5, 1, 2, 3}), tcp, want{kind: packet.KindOther, src: src4, dst: dst4, encap: packet.EncapTCP, sport: 51000, dport: 4500, ipHdr: 20}},
		{"tcp/esp-short", packet.LinkTypeIPv4, tcp4(tb, 51000, 4500, tcpFrame(esp[:7])), tcp, want{err: packet.ErrBadESP, src: src4, dst: dst4}},
		{"tcp/no-payload", packet.LinkTypeIPv4, tcp4(tb, 51000, 4500, nil), tcp, want{kind: packet.KindOther, src: src4, dst: dst4, encap: packet.EncapTCP, sport: 51000, dport: 4500, ipHdr: 20}},
		{"tcp/port-not-added", packet.LinkTypeIPv4, tcp4(tb, 51000, 4500, tcpFrame(esp)), nil, want{kind: packet.KindOther, src: src4, dst: dst4, ipHdr: 20}},
		{"tcp/other-port", packet.LinkTypeIPv4, tcp4(tb, 51000, 443, tcpFrame(esp)), tcp, want{kind: packet.KindOther, src: src4, dst: dst4, ipHdr: 20}},
		{"tcp/bad-data-offset", packet.LinkTypeIPv4, set(tcp4(tb, 51000, 4500, tcpFrame(esp)), 20+12, 0x40), tcp, want{err: packet.ErrBadIPHeader, src: src4, dst: dst4}},

		// WESP (IP protocol 141).
		{"wesp/plain", packet.LinkTypeIPv4, ipv4(tb, 141, cat(wespPlain, esp)), nil, want{kind: packet.KindWESP, src: src4, dst: dst4, ipHdr: 20, esp: esp, wesp: packet.WESP{NextHeader: 6, HdrLen: 12, TrlLen: 12}}},
		{"wesp/padding", packet.LinkTypeIPv6, ipv6(tb, 141, cat(wespPad, esp)), nil, want{kind: packet.KindWESP, src: src6, dst: dst6, ipHdr: 40, esp: esp, wesp: packet.WESP{NextHeader: 6, HdrLen: 16, TrlLen: 12, Flags: packet.WESPFlagPadding}}},
		{"wesp/encrypted", packet.LinkTypeIPv4, ipv4(tb, 141, cat(wespEnc, esp)), nil, want{kind: packet.KindWESP, src: src4, dst: dst4, ipHdr: 20, esp: esp, wesp: packet.WESP{HdrLen: 20, TrlLen: 16, Flags: packet.WESPFlagEncrypted}}},
		{"wesp/version-bits", packet.LinkTypeIPv4, ipv4(tb, 141, cat(set(wespPlain, 3, 0x40), esp)), nil, want{err: packet.ErrBadWESP, src: src4, dst: dst4}},
		{"wesp/hdrlen-below-esp", packet.LinkTypeIPv4, ipv4(tb, 141, cat(set(wespPlain, 1, 11), esp)), nil, want{err: packet.ErrBadWESP, src: src4, dst: dst4}},
		{"wesp/padding-hdrlen-12", packet.LinkTypeIPv4, ipv4(tb, 141, cat(set(wespPad, 1, 12), esp)), nil, want{err: packet.ErrBadWESP, src: src4, dst: dst4}},
		{"wesp/lengths-beyond-packet", packet.LinkTypeIPv4, ipv4(tb, 141, cat(set(wespPlain, 2, byte(len(esp))), esp)), nil, want{err: packet.ErrBadWESP, src: src4, dst: dst4}},
		{"wesp/short", packet.LinkTypeIPv4, ipv4(tb, 141, wespPlain[:3]), nil, want{err: packet.ErrBadWESP, src: src4, dst: dst4}},
	}
	return cases
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			var d packet.Decoder
			if tc.setup != nil {
				tc.setup(&d)
			}
			frame := tc.frame[:len(tc.frame):len(tc.frame)]
			var p packet.Packet
			err := d.Decode(tc.lt, frame, &p)
			checkPacket(t, frame, &p, err, tc.want)
		})
	}
}

func checkPacket(t *testing.T, frame []byte, p *packet.Packet, err error, w want) {
	t.Helper()
	if err != w.err {
		t.Fatalf("err = %v, want %v (packet %+v)", err, w.err, p)
	}
	if !w.noAddr && (p.Src != w.src || p.Dst != w.dst) {
		t.Errorf("addresses = %v → %v, want %v → %v", p.Src, p.Dst, w.src, w.dst)
	}
	if w.err != nil {
		return
	}
	if p.Kind != w.kind {
		t.Errorf("kind = %v, want %v", p.Kind, w.kind)
	}
	if p.Encap != w.encap || p.SrcPort != w.sport || p.DstPort != w.dport {
		t.Errorf("carrier = %v %d→%d, want %v %d→%d", p.Encap, p.SrcPort, p.DstPort, w.encap, w.sport, w.dport)
	}
	if got := p.VLAN[:p.VLANs]; fmt.Sprint(got) != fmt.Sprint(append([]uint16{}, w.vlans...)) {
		t.Errorf("VLANs = %v, want %v", got, w.vlans)
	}
	if len(p.IPHeader) != w.ipHdr {
		t.Errorf("len(IPHeader) = %d, want %d", len(p.IPHeader), w.ipHdr)
	}
	if w.ipHdr > 0 && p.IPHeader[0]>>4 != map[bool]byte{true: 4, false: 6}[w.src.Is4()] {
		t.Errorf("IPHeader does not start at the IP header: % x", p.IPHeader[:4])
	}
	if !bytes.Equal(p.ESP, w.esp) {
		t.Errorf("ESP = % x\nwant  % x", p.ESP, w.esp)
	}
	if (w.esp == nil) != (p.ESP == nil) {
		t.Errorf("ESP nil = %v, want %v", p.ESP == nil, w.esp == nil)
	}
	if p.ESP != nil {
		if !within(frame, p.ESP) {
			t.Errorf("ESP does not lie inside the frame")
		}
		if p.SPI() != binary.BigEndian.Uint32(w.esp) || p.Seq() != binary.BigEndian.Uint32(w.esp[4:]) {
			t.Errorf("SPI/seq = %#x/%d", p.SPI(), p.Seq())
		}
	}
	if p.WESP != w.wesp {
		t.Errorf("WESP = %+v, want %+v", p.WESP, w.wesp)
	}
	if p.IsIPv6() != w.src.Is6() {
		t.Errorf("IsIPv6 = %v", p.IsIPv6())
	}
}

// within reports whether sub is a subslice of frame (same backing array,
// inside its length).
func within(frame, sub []byte) bool {
	if len(sub) == 0 {
		return true
	}
	for off := 0; off+len(sub) <= len(frame); off++ {
		if &frame[off] == &sub[0] {
			return true
		}
	}
	return false
}

func TestDecodeErrorsAreSentinels(t *testing.T) {
	all := []error{packet.ErrTruncated, packet.ErrUnsupportedLinkType, packet.ErrNotIP, packet.ErrBadIPHeader,
		packet.ErrTooManyVLANs, packet.ErrTooManyExtHeaders, packet.ErrBadESP, packet.ErrBadWESP}
	seen := map[error]bool{}
	for _, tc := range decodeCases(t) {
		if tc.want.err != nil {
			seen[tc.want.err] = true
		}
	}
	for _, e := range all {
		if !seen[e] {
			t.Errorf("no decode case returns %v", e)
		}
		for _, o := range all {
			if e != o && errors.Is(e, o) {
				t.Errorf("%v matches %v", e, o)
			}
		}
	}
}

// TestDecodeResets checks that a Packet reused across frames carries nothing
// over: a VLAN-tagged ESP-in-UDP frame, then a plain IPv4 fragment.
func TestDecodeResets(t *testing.T) {
	var d packet.Decoder
	var p packet.Packet
	esp := espBytes(0x2002, 9, 24)
	first := ether(0x86dd, udp6(t, 4500, 4500, esp), 0x8100, 10)
	if err := d.Decode(packet.LinkTypeEthernet, first, &p); err != nil || p.Kind != packet.KindESP || p.VLANs != 1 {
		t.Fatalf("first frame: %v %+v", err, p)
	}
	frag := ip4L(layers.IPProtocolESP)
	frag.Flags = layers.IPv4MoreFragments
	if err := d.Decode(packet.LinkTypeRaw, ser(t, frag, gopacket.Payload(esp)), &p); err != nil {
		t.Fatal(err)
	}
	if p.Kind != packet.KindFragment || p.VLANs != 0 || p.ESP != nil || p.Encap != packet.EncapNone || p.SrcPort != 0 || p.WESP != (packet.WESP{}) {
		t.Errorf("state carried over: %+v", p)
	}
	if err := d.Decode(packet.LinkTypeEthernet, []byte{1}, &p); err != packet.ErrTruncated || p.Kind != packet.KindOther || p.Src.IsValid() {
		t.Errorf("after an error: %v %+v", err, p)
	}
}

func TestDecoderPortTables(t *testing.T) {
	var d packet.Decoder
	for i := 0; i < 8; i++ {
		if !d.AddUDPPort(uint16(10000 + i)) {
			t.Fatalf("AddUDPPort #%d refused", i)
		}
	}
	if d.AddUDPPort(20000) {
		t.Error("AddUDPPort accepted a ninth port")
	}
	for i := 0; i < 4; i++ {
		if !d.AddTCPPort(uint16(10000 + i)) {
			t.Fatalf("AddTCPPort #%d refused", i)
		}
	}
	if d.AddTCPPort(20000) {
		t.Error("AddTCPPort accepted a fifth port")
	}
	esp := espBytes(0x3003, 1, 16)
	var p packet.Packet
	for _, port := range []uint16{4500, 10000, 10007} {
		if err := d.Decode(packet.LinkTypeIPv4, udp4(t, 33000, port, esp), &p); err != nil || p.Kind != packet.KindESP {
			t.Errorf("UDP port %d: %v %v", port, err, p.Kind)
		}
	}
	if err := d.Decode(packet.LinkTypeIPv4, udp4(t, 33000, 20000, esp), &p); err != nil || p.Kind != packet.KindOther {
		t.Errorf("refused UDP port 20000 decoded as %v %v", err, p.Kind)
	}
	for _, port := range []uint16{10000, 10003} {
		if err := d.Decode(packet.LinkTypeIPv4, tcp4(t, port, 33000, tcpFrame(esp)), &p); err != nil || p.Kind != packet.KindESP {
			t.Errorf("TCP port %d: %v %v", port, err, p.Kind)
		}
	}
	// The zero Decoder reads no TCP port, not even 4500.
	var z packet.Decoder
	if err := z.Decode(packet.LinkTypeIPv4, tcp4(t, 4500, 4500, tcpFrame(esp)), &p); err != nil || p.Kind != packet.KindOther || p.Encap != packet.EncapNone {
		t.Errorf("zero decoder on TCP 4500: %v %v %v", err, p.Kind, p.Encap)
	}
}

func TestStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{packet.KindESP.String(), "esp"}, {packet.KindWESP.String(), "wesp"}, {packet.KindIKE.String(), "ike"},
		{packet.KindKeepalive.String(), "keepalive"}, {packet.KindFragment.String(), "fragment"}, {packet.KindOther.String(), "other"},
		{packet.Kind(99).String(), "invalid"}, {packet.EncapUDP.String(), "udp"}, {packet.EncapTCP.String(), "tcp"},
		{packet.EncapNone.String(), "none"}, {packet.Encap(9).String(), "invalid"},
	} {
		if tc.got != tc.want {
			t.Errorf("String() = %q, want %q", tc.got, tc.want)
		}
	}
	w := packet.WESP{HdrLen: 28, Flags: packet.WESPFlagPadding | packet.WESPFlagEncrypted}
	if !w.Encrypted() || w.IVLen() != 12 {
		t.Errorf("WESP %+v: Encrypted %v IVLen %d", w, w.Encrypted(), w.IVLen())
	}
}
