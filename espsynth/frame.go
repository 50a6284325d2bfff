package espsynth

import (
	"encoding/binary"
	"net/netip"
)

// Header sizes.
const (
	ethLen  = 14
	ipv4Len = 20
	ipv6Len = 40
	udpLen  = 8
)

// path is one direction of an outer conversation: the Ethernet and IP
// addresses and, for ESP in UDP (RFC 3948) and background UDP, the ports.
type path struct {
	src, dst       netip.Addr
	srcMAC, dstMAC [6]byte
	udp            bool
	sport, dport   uint16
	ipid           uint16
	vlan           uint16 // 802.1Q VLAN ID, 0 for untagged frames
}

// newPath returns the path from src to dst. The MAC addresses are locally
// administered ones derived from the IP addresses, so captures are stable.
func newPath(src, dst netip.Addr) path {
	return path{src: src, dst: dst, srcMAC: macFor(src), dstMAC: macFor(dst)}
}

// macFor derives a locally administered unicast MAC address from addr.
func macFor(addr netip.Addr) [6]byte {
	b := addr.As16()
	return [6]byte{0x02, 0x00, b[12], b[13], b[14], b[15]}
}

// open appends the Ethernet, IP and (if p.udp) UDP headers of a packet
// carrying proto, with lengths and checksums left for close. It returns the
// offset of the IP header.
func (p *path) open(dst []byte, proto uint8) ([]byte, int) {
	dst = append(dst, p.dstMAC[:]...)
	dst = append(dst, p.srcMAC[:]...)
	if p.vlan != 0 {
		dst = append(dst, 0x81, 0x00, byte(p.vlan>>8), byte(p.vlan))
	}
	if p.src.Is4() {
		dst = append(dst, 0x08, 0x00)
	} else {
		dst = append(dst, 0x86, 0xdd)
	}
	ipOff := len(dst)
	if p.udp {
		proto = protoUDP
	}
	p.ipid++
	dst = appendIPHeader(dst, p.src, p.dst, proto, p.ipid)
	if p.udp {
		dst = binary.BigEndian.AppendUint16(dst, p.sport)
		dst = binary.BigEndian.AppendUint16(dst, p.dport)
		dst = append(dst, 0, 0, 0, 0)
	}
	return dst, ipOff
}

// close fills in the lengths and checksums of a packet opened at ipOff.
// Over IPv4 the UDP checksum of ESP-in-UDP stays zero, as RFC 3948 section
// 2.1 says senders should; over IPv6 a zero UDP checksum is not allowed
// (RFC 8200 section 8.1), so it is computed, as for background UDP.
func (p *path) close(dst []byte, ipOff int, esp bool) {
	hl := finishIPHeader(dst[ipOff:])
	if !p.udp {
		return
	}
	seg := dst[ipOff+hl:]
	binary.BigEndian.PutUint16(seg[4:], uint16(len(seg)))
	if esp && p.src.Is4() {
		return
	}
	l4Checksum(seg, 6, p.src, p.dst, protoUDP)
}

// appendIPHeader appends an IPv4 or IPv6 header from src to dst carrying
// proto, with the length (and IPv4 checksum) left for finishIPHeader.
func appendIPHeader(dst []byte, src, dstAddr netip.Addr, proto uint8, id uint16) []byte {
	if src.Is4() {
		dst = append(dst, 0x45, 0, 0, 0)
		dst = binary.BigEndian.AppendUint16(dst, id)
		dst = append(dst, 0x40, 0, 64, proto, 0, 0) // DF, TTL 64
		s, d := src.As4(), dstAddr.As4()
		dst = append(dst, s[:]...)
		return append(dst, d[:]...)
	}
	dst = append(dst, 0x60, 0, 0, 0, 0, 0, proto, 64)
	s, d := src.As16(), dstAddr.As16()
	dst = append(dst, s[:]...)
	return append(dst, d[:]...)
}

// finishIPHeader sets the length field (and the IPv4 header checksum) of the
// IP packet that fills b, and returns the header length.
func finishIPHeader(b []byte) int {
	if b[0]>>4 == 4 {
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		binary.BigEndian.PutUint16(b[10:], fold(sum16(0, b[:ipv4Len])))
		return ipv4Len
	}
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-ipv6Len))
	return ipv6Len
}
