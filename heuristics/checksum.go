package heuristics

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/espy-dpi/espy/packet"
)

// checksumOK reports whether a ones'-complement checksum over b, with the
// pseudo-header sum pseudo, verifies (the sum including the checksum field
// is all ones).
func checksumOK(b []byte, pseudo uint64) bool { return packet.Fold(packet.Sum(b, pseudo)) == 0xffff }

// pseudo is the TCP/UDP/ICMPv6 pseudo-header of the IP header that carries a
// transport segment.
type pseudo struct {
	src, dst []byte // 4 or 16 bytes each
}

func (p pseudo) sum(proto uint8, length int) uint64 {
	s := packet.Sum(p.src, 0)
	s = packet.Sum(p.dst, s)
	return s + uint64(proto) + uint64(length)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sctpChecksumOK verifies the CRC32c of an SCTP packet (RFC 4960 appendix B),
// computed with the checksum field as zero.
func sctpChecksumOK(b []byte) bool {
	var zero [4]byte
	c := crc32.Update(0, castagnoli, b[:8])
	c = crc32.Update(c, castagnoli, zero[:])
	c = crc32.Update(c, castagnoli, b[12:])
	// The CRC is sent least significant byte first; accept the other order
	// too, as some stacks wrote it.
	return c == binary.LittleEndian.Uint32(b[8:]) || c == binary.BigEndian.Uint32(b[8:])
}
