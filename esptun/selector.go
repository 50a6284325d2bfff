package esptun

import (
	"encoding/binary"
	"net/netip"

	"github.com/espy-dpi/espy/ike/message"
)

// flow is what selectors look at in an IP packet.
type flow struct {
	src, dst         netip.Addr
	proto            uint8
	srcPort, dstPort uint16
	ports            bool // the protocol has ports (or ICMP type/code)
}

// parseFlow reads the flow of IP packet p; ok is false for packets too
// short to carry one. IPv6 extension headers are not walked: their
// packets match only selectors with any protocol and all ports.
func parseFlow(p []byte) (f flow, ok bool) {
	var l4 []byte
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		ihl := int(p[0]&0x0f) * 4
		if ihl < 20 || ihl > len(p) {
			return f, false
		}
		f.src, f.dst = netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
		f.proto = p[9]
		if binary.BigEndian.Uint16(p[6:])&0x1fff == 0 { // first fragment carries the ports
			l4 = p[ihl:]
		}
	case len(p) >= 40 && p[0]>>4 == 6:
		f.src, f.dst = netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40]))
		f.proto = p[6]
		l4 = p[40:]
	default:
		return f, false
	}
	switch f.proto {
	case 6, 17, 132, 136: // TCP, UDP, SCTP, UDP-Lite
		if len(l4) >= 4 {
			f.srcPort, f.dstPort, f.ports = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:]), true
		}
	case 1, 58: // ICMP, ICMPv6: type and code in the local "port" (RFC 4301 4.4.1.1)
		if len(l4) >= 2 {
			f.srcPort, f.dstPort, f.ports = uint16(l4[0])<<8|uint16(l4[1]), 0, true
		}
	}
	return f, true
}

// matchOne reports whether address a with protocol proto and port lies in
// selector s.
func matchOne(s *message.Selector, a netip.Addr, proto uint8, port uint16, ports bool) bool {
	if s.StartAddr.BitLen() != a.BitLen() || a.Compare(s.StartAddr) < 0 || a.Compare(s.EndAddr) > 0 {
		return false
	}
	if s.IPProto != 0 && s.IPProto != proto {
		return false
	}
	if s.StartPort == 0 && s.EndPort == 65535 {
		return true
	}
	return ports && port >= s.StartPort && port <= s.EndPort
}

// matches reports whether the flow's source lies in one of local and its
// destination in one of remote.
func matches(local, remote []message.Selector, src, dst netip.Addr, f *flow, out bool) bool {
	sp, dp := f.srcPort, f.dstPort
	if !out {
		sp, dp = f.dstPort, f.srcPort
	}
	if (f.proto == 1 || f.proto == 58) && !out {
		// ICMP type/code travels in the source "port" both ways.
		sp, dp = f.srcPort, f.srcPort
	}
	ok := false
	for i := range local {
		if matchOne(&local[i], src, f.proto, sp, f.ports) {
			ok = true
			break
		}
	}
	if !ok {
		return false
	}
	for i := range remote {
		if matchOne(&remote[i], dst, f.proto, dp, f.ports) {
			return true
		}
	}
	return false
}

// maxRoutePrefixes bounds the routes one selector range may need.
const maxRoutePrefixes = 64
