package heuristics

import "math/bits"

// inner is what the checks of one candidate parse learned about the packet's
// payload.
type inner struct {
	bits   int      // evidence in bits
	ev     Evidence // checks that held
	tuple  uint32   // hash of the inner flow (addresses, protocol, ports)
	tcpSeq uint32
	isTCP  bool
}

// Bits of evidence per check: -log2 of the chance that random bytes pass it,
// rounded down, and lowered where real stacks vary.
const (
	bitsVersion     = 4  // IP version nibble
	bitsIHL5        = 4  // IPv4 IHL exactly 5
	bitsExactLength = 16 // a 16-bit length field equals the bytes present
	bitsChecksum    = 16 // a 16-bit ones'-complement checksum verifies
	bitsCRC32c      = 24 // SCTP's 32-bit CRC, lowered for the two byte orders accepted
	bitsZeroField   = 8  // ack number or urgent pointer zero while its flag is clear
	bitsTCPReserved = 3  // TCP reserved bits zero
	bitsKnownType   = 8  // ICMP type/code pair defined (of 65536)
	bitsQuote       = 4  // ICMP error quotes an IPv4 header
	bitsChunks      = 8  // SCTP chunk lengths add up to the packet
	bitsGRE         = 8  // GRE reserved bits zero
	bitsGREProto    = 8  // GRE protocol type is a known EtherType
	bitsNextHdr6    = 3  // inner IPv6 next header is a common protocol
	bitsContinuity  = 16 // same inner addresses and ports as an earlier packet
	bitsTCPSeq      = 8  // TCP sequence number a little past an earlier packet's
)

// shortLengthBits is the evidence of a length field that is shorter than the
// bytes present (TFC padding follows): log2(65536/n).
func shortLengthBits(n int) int {
	b := 16 - bits.Len(uint(n))
	if b < 0 {
		return 0
	}
	return b
}

// checkInner checks payload as a packet of protocol nh. It reports false when
// the payload cannot be such a packet; evidence gathers in r.
func checkInner(nh uint8, payload []byte, ph pseudo, r *inner) bool {
	switch nh {
	case 4:
		return checkIPv4(payload, r)
	case 41:
		return checkIPv6(payload, r)
	case 59:
		r.ev |= EvDummy
		return true
	}
	return checkL4(nh, payload, ph, r)
}

func checkL4(proto uint8, b []byte, ph pseudo, r *inner) bool {
	switch proto {
	case 6:
		return checkTCP(b, ph, r)
	case 17:
		return checkUDP(b, ph, r)
	case 1:
		return checkICMP(b, r)
	case 58:
		return checkICMPv6(b, ph, r)
	case 132:
		return checkSCTP(b, ph, r)
	case 47:
		return checkGRE(b, r)
	case 50:
		return len(b) >= 8 // nested ESP: only its header length can be checked
	case 44, 60, 0, 43:
		return len(b) >= 8 // an IPv6 extension header: at least 8 bytes
	}
	return true
}

func checkIPv4(b []byte, r *inner) bool {
	if len(b) < 20 || b[0]>>4 != 4 {
		return false
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(b[2])<<8 | int(b[3])
	if ihl < 20 || total < ihl || total > len(b) {
		return false
	}
	r.ev |= EvIPv4Header
	r.bits += bitsVersion
	if ihl == 20 {
		r.bits += bitsIHL5
	}
	if total == len(b) {
		r.ev |= EvIPv4Length
		r.bits += bitsExactLength
	} else {
		r.bits += shortLengthBits(len(b))
	}
	if checksumOK(b[:ihl], 0) {
		r.ev |= EvIPv4Checksum
		r.bits += bitsChecksum
	}
	if fragment := int(b[6])<<8 | int(b[7]); fragment&0x3fff != 0 {
		return true // the transport header is in the first fragment only
	}
	ph := pseudo{src: b[12:16], dst: b[16:20]}
	r.tuple = hashBytes(b[12:20], uint32(b[9]))
	return checkL4(b[9], b[ihl:total], ph, r)
}

func checkIPv6(b []byte, r *inner) bool {
	if len(b) < 40 || b[0]>>4 != 6 {
		return false
	}
	total := 40 + (int(b[4])<<8 | int(b[5]))
	if total > len(b) {
		return false
	}
	r.ev |= EvIPv6Header
	r.bits += bitsVersion
	if total == len(b) {
		r.ev |= EvIPv6Length
		r.bits += bitsExactLength
	} else {
		r.bits += shortLengthBits(len(b))
	}
	nh := b[6]
	switch nh {
	case 6, 17, 58, 132, 0, 43, 44, 60, 59, 47, 50, 4, 41:
		r.bits += bitsNextHdr6
	}
	ph := pseudo{src: b[8:24], dst: b[24:40]}
	r.tuple = hashBytes(b[8:40], uint32(nh))
	return checkL4(nh, b[40:total], ph, r)
}

func checkTCP(b []byte, ph pseudo, r *inner) bool {
	if len(b) < 20 {
		return false
	}
	off := int(b[12]>>4) * 4
	if off < 20 || off > len(b) {
		return false
	}
	r.ev |= EvTCPHeader
	if b[12]&0x0e == 0 {
		r.bits += bitsTCPReserved
	}
	flags := b[13]
	if flags&0x10 == 0 && b[8]|b[9]|b[10]|b[11] == 0 {
		r.ev |= EvTCPFields
		r.bits += bitsZeroField
	}
	if flags&0x20 == 0 && b[18]|b[19] == 0 {
		r.ev |= EvTCPFields
		r.bits += bitsZeroField
	}
	if ph.src != nil && checksumOK(b, ph.sum(6, len(b))) {
		r.ev |= EvTCPChecksum
		r.bits += bitsChecksum
	}
	r.tuple = hashBytes(b[:4], r.tuple^6)
	r.isTCP = true
	r.tcpSeq = uint32(b[4])<<24 | uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7])
	return true
}

func checkUDP(b []byte, ph pseudo, r *inner) bool {
	if len(b) < 8 {
		return false
	}
	ulen := int(b[4])<<8 | int(b[5])
	if ulen < 8 || ulen > len(b) {
		return false
	}
	if ulen == len(b) {
		r.ev |= EvUDPLength
		r.bits += bitsExactLength
	} else {
		r.bits += shortLengthBits(len(b))
	}
	zero := b[6]|b[7] == 0
	if !zero && ph.src != nil && checksumOK(b[:ulen], ph.sum(17, ulen)) {
		r.ev |= EvUDPChecksum
		r.bits += bitsChecksum
	}
	r.tuple = hashBytes(b[:4], r.tuple^17)
	return true
}

func checkICMP(b []byte, r *inner) bool {
	if len(b) < 8 {
		return false
	}
	if icmpDefined(b[0], b[1]) {
		r.ev |= EvICMPType
		r.bits += bitsKnownType
	}
	if checksumOK(b, 0) {
		r.ev |= EvICMPChecksum
		r.bits += bitsChecksum
	}
	switch b[0] {
	case 3, 11, 12:
		if len(b) >= 28 && b[8]>>4 == 4 {
			r.ev |= EvICMPQuote
			r.bits += bitsQuote
		}
	}
	r.tuple = hashBytes(b[:2], r.tuple^1)
	return true
}

func icmpDefined(typ, code uint8) bool {
	switch typ {
	case 0, 8, 13, 14: // echo reply, echo, timestamp
		return code == 0
	case 3:
		return code <= 15
	case 5:
		return code <= 3
	case 11:
		return code <= 1
	case 12:
		return code <= 2
	}
	return false
}

func checkICMPv6(b []byte, ph pseudo, r *inner) bool {
	if len(b) < 8 {
		return false
	}
	typ, code := b[0], b[1]
	defined := false
	switch {
	case typ == 1:
		defined = code <= 8
	case typ == 2 || typ == 4:
		defined = code <= 3
	case typ == 3:
		defined = code <= 1
	case typ >= 128 && typ <= 137, typ == 143:
		defined = code == 0
	}
	if defined {
		r.ev |= EvICMPType
		r.bits += bitsKnownType
	}
	if ph.src != nil && checksumOK(b, ph.sum(58, len(b))) {
		r.ev |= EvICMPChecksum
		r.bits += bitsChecksum
	}
	r.tuple = hashBytes(b[:2], r.tuple^58)
	return true
}

func checkSCTP(b []byte, ph pseudo, r *inner) bool {
	if len(b) < 12 {
		return false
	}
	// Walk the chunks; the bound is the packet length, as each is ≥ 4 bytes.
	off := 12
	for off < len(b) {
		if len(b)-off < 4 {
			return false
		}
		n := int(b[off+2])<<8 | int(b[off+3])
		if n < 4 || n > len(b)-off {
			return false
		}
		off += (n + 3) &^ 3
	}
	if off == len(b) {
		r.ev |= EvSCTPChunks
		r.bits += bitsChunks
	}
	if sctpChecksumOK(b) {
		r.ev |= EvSCTPChecksum
		r.bits += bitsCRC32c
	}
	r.tuple = hashBytes(b[:4], r.tuple^132)
	return true
}

func checkGRE(b []byte, r *inner) bool {
	if len(b) < 4 {
		return false
	}
	if v := b[1] & 0x07; v > 1 {
		return false
	}
	if b[0]&0x0f == 0 && b[1]&0xf8 == 0 {
		r.ev |= EvGRE
		r.bits += bitsGRE
	}
	switch uint16(b[2])<<8 | uint16(b[3]) {
	case 0x0800, 0x86dd, 0x6558, 0x880b, 0x8847, 0x88be, 0x22eb:
		r.ev |= EvGRE
		r.bits += bitsGREProto
	}
	return true
}

// hashBytes mixes b into h (FNV-1a); it identifies inner flows, so only
// collisions between flows of the same peers matter.
func hashBytes(b []byte, h uint32) uint32 {
	if h == 0 {
		h = 2166136261
	}
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}
