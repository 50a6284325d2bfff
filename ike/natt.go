package ike

import (
	"crypto/sha1"
	"crypto/subtle"
	"encoding/binary"
	"net/netip"

	"github.com/espy-dpi/espy/ike/message"
)

// Default ports (RFC 7296 2.23).
const (
	DefaultPort    = 500
	DefaultNATPort = 4500
)

// nonESPMarker precedes IKE messages on the NAT-T port (RFC 3948 2.2).
var nonESPMarker = []byte{0, 0, 0, 0}

// natHash returns SHA-1(SPIi | SPIr | IP | Port), the data of the
// NAT_DETECTION_*_IP notifications (RFC 7296 2.23).
func natHash(spii, spir uint64, ap netip.AddrPort) []byte {
	h := sha1.New()
	var b [18]byte
	binary.BigEndian.PutUint64(b[0:], spii)
	binary.BigEndian.PutUint64(b[8:], spir)
	binary.BigEndian.PutUint16(b[16:], ap.Port())
	h.Write(b[:16])
	h.Write(ap.Addr().Unmap().AsSlice())
	h.Write(b[16:])
	return h.Sum(nil)
}

// natDetect evaluates the NAT detection notifications of a message from the
// peer: whether the peer's source (remote) or our address (local) was
// changed by a NAT. present is false when the peer sent none.
func natDetect(ps []message.Payload, spii, spir uint64, local, remote netip.AddrPort) (localNAT, remoteNAT, present bool) {
	wantSrc := natHash(spii, spir, remote)
	wantDst := natHash(spii, spir, local)
	srcMatch, dstSeen, dstMatch := false, false, false
	for _, n := range message.Notifies(ps) {
		switch n.Kind {
		case message.NAT_DETECTION_SOURCE_IP:
			present = true
			if subtle.ConstantTimeCompare(n.Data, wantSrc) == 1 {
				srcMatch = true
			}
		case message.NAT_DETECTION_DESTINATION_IP:
			dstSeen = true
			if subtle.ConstantTimeCompare(n.Data, wantDst) == 1 {
				dstMatch = true
			}
		}
	}
	if !present || !dstSeen {
		return false, false, false
	}
	return !dstMatch, !srcMatch, true
}
