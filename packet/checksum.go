package packet

import "encoding/binary"

// Sum adds b to the ones'-complement accumulator s (RFC 1071) as big-endian
// 16-bit words, padding an odd last byte with zero. Accumulate any number of
// pieces, then Fold.
func Sum(b []byte, s uint64) uint64 {
	for len(b) >= 8 {
		s += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		s += uint64(b[0])<<8 | uint64(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return s
}

// Fold reduces a ones'-complement accumulator to 16 bits. The Internet
// checksum of the summed bytes is its complement; a sum over bytes that
// include a correct checksum folds to 0xffff.
func Fold(s uint64) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
