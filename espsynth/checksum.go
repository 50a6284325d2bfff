package espsynth

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
)

// castagnoli is the CRC32c table SCTP uses (RFC 4960 appendix B).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sum16 adds b to a running ones'-complement sum as big-endian 16-bit words.
// The sum is kept unfolded in 64 bits so callers can chain pieces cheaply;
// an odd trailing byte is padded with zero, so only the last piece may be odd.
func sum16(sum uint64, b []byte) uint64 {
	for len(b) >= 8 {
		sum += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	return sum
}

// fold reduces a running sum to the 16-bit ones'-complement checksum.
func fold(sum uint64) uint16 {
	for sum>>16 != 0 {
		sum = (sum & 0xffff) + sum>>16
	}
	return ^uint16(sum)
}

// pseudoSum is the sum over the IPv4 or IPv6 pseudo-header that TCP, UDP and
// ICMPv6 checksums cover (RFC 793, RFC 8200 section 8.1).
func pseudoSum(src, dst netip.Addr, proto uint8, length int) uint64 {
	var sum uint64
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		sum = sum16(sum, s[:])
		sum = sum16(sum, d[:])
	} else {
		s, d := src.As16(), dst.As16()
		sum = sum16(sum, s[:])
		sum = sum16(sum, d[:])
	}
	return sum + uint64(proto) + uint64(length)
}

// l4Checksum writes the checksum of a TCP, UDP or ICMPv6 segment at offset
// off inside seg. The checksum field must be zero on entry.
func l4Checksum(seg []byte, off int, src, dst netip.Addr, proto uint8) {
	c := fold(sum16(pseudoSum(src, dst, proto, len(seg)), seg))
	if c == 0 && proto == protoUDP {
		// RFC 768: a computed zero is sent as all ones, zero means "none".
		c = 0xffff
	}
	binary.BigEndian.PutUint16(seg[off:], c)
}

// sctpCRC is the CRC32c of an SCTP packet whose checksum field is zero.
func sctpCRC(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
