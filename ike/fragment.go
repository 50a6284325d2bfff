package ike

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/espy-dpi/espy/ike/message"
)

// IKE fragmentation (RFC 7383): sizes and the sending side.
const (
	// DefaultFragmentSize is the largest IP datagram an IKE fragment
	// fills: strongSwan's fragment_size default, the IPv6 minimum MTU, and
	// what RFC 7383 section 2.5.1 suggests for IPv6 (IPv4 paths almost
	// always take it too).
	DefaultFragmentSize = 1280
	// MinFragmentSize is the smallest accepted Config.FragmentSize: the
	// datagram every IPv4 host must reassemble (RFC 791).
	MinFragmentSize = 576
)

// Per-datagram overhead in front of an IKE message.
const (
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	udpHeaderLen  = 8
	// skfHeaderLen is the SKF generic header plus Fragment Number and
	// Total Fragments; all of it is authenticated as associated data.
	skfHeaderLen = 8
)

// fragmentationNotify announces RFC 7383 support in IKE_SA_INIT.
func fragmentationNotify() *message.Notify {
	return &message.Notify{Kind: message.IKEV2_FRAGMENTATION_SUPPORTED}
}

// maxIKELen returns the longest IKE message that fits in one datagram of
// size bytes to remote: IP and UDP headers, and the non-ESP marker on the
// NAT-T port, come off.
func maxIKELen(size int, remote netip.Addr, natt bool) int {
	n := size - udpHeaderLen - ipv4HeaderLen
	if remote.Is6() && !remote.Is4In6() {
		n = size - udpHeaderLen - ipv6HeaderLen
	}
	if natt {
		n -= len(nonESPMarker)
	}
	return n
}

// sealOut encodes a protected message for sending: one SK message, or,
// when fragmentation was negotiated and the message would not fit in
// Config.FragmentSize, its SKF fragments (RFC 7383 2.5). IKE_SA_INIT is
// never fragmented. Call with sa.mu held.
func (sa *IKESA) sealOut(exch message.ExchangeType, response bool, msgID uint32, ps []message.Payload) ([][]byte, error) {
	if !sa.frag.on || exch == message.IKE_SA_INIT {
		pkt, err := sa.seal(exch, response, msgID, ps)
		return [][]byte{pkt}, err
	}
	inner, first, err := message.AppendPayloads(nil, ps)
	if err != nil {
		return nil, fmt.Errorf("ike: encode %v: %w", exch, err)
	}
	limit := maxIKELen(sa.cfg.FragmentSize, sa.remote.Addr(), sa.natt)
	if message.HeaderLen+4+sa.out.SealedLen(len(inner)) <= limit {
		pkt, err := sa.seal(exch, response, msgID, ps)
		return [][]byte{pkt}, err
	}
	frags, err := sa.fragmentLocked(exch, response, msgID, first, inner, limit)
	if err != nil {
		return nil, fmt.Errorf("ike: fragment %v of %d bytes: %w", exch, len(inner), err)
	}
	return frags, nil
}

// fragmentLocked splits inner (the payload chain starting with type first)
// into SKF messages of at most limit bytes, each sealed on its own.
func (sa *IKESA) fragmentLocked(exch message.ExchangeType, response bool, msgID uint32, first message.PayloadType, inner []byte, limit int) ([][]byte, error) {
	room := limit - message.HeaderLen - skfHeaderLen
	chunk := room
	for chunk > 0 && sa.out.SealedLen(chunk) > room {
		chunk--
	}
	if chunk < 1 {
		return nil, fmt.Errorf("no room for data in %d-byte fragments: %w", limit, message.ErrLength)
	}
	total := (len(inner) + chunk - 1) / chunk
	if total > message.MaxFragments {
		return nil, fmt.Errorf("%d fragments of %d bytes, at most %d: %w", total, chunk, message.MaxFragments, message.ErrTooMany)
	}
	out := make([][]byte, 0, total)
	for i := 0; i < total; i++ {
		// Only fragment 1 names the first inner payload (RFC 7383 2.5).
		next := message.PayloadNone
		if i == 0 {
			next = first
		}
		pkt, err := sa.sealFragment(exch, response, msgID, uint16(i+1), uint16(total), next, inner[i*chunk:min((i+1)*chunk, len(inner))])
		if err != nil {
			return nil, err
		}
		out = append(out, pkt)
	}
	return out, nil
}

// sealFragment encodes and seals fragment number of total carrying part.
// Everything before the IV, Fragment Number and Total Fragments included,
// is authenticated (RFC 7383 2.5.3).
func (sa *IKESA) sealFragment(exch message.ExchangeType, response bool, msgID uint32, number, total uint16, next message.PayloadType, part []byte) ([]byte, error) {
	sealed := sa.out.SealedLen(len(part))
	h := message.Header{SPIi: sa.spiI, SPIr: sa.spiR, NextPayload: message.PayloadSKF, Exchange: exch,
		Flags: sa.flags(response), MessageID: msgID, Length: uint32(message.HeaderLen + skfHeaderLen + sealed)}
	head := message.AppendHeader(make([]byte, 0, int(h.Length)), &h)
	head = append(head, byte(next), 0)
	head = binary.BigEndian.AppendUint16(head, uint16(skfHeaderLen+sealed))
	head = binary.BigEndian.AppendUint16(head, number)
	head = binary.BigEndian.AppendUint16(head, total)
	return sa.out.Seal(head, part)
}

// sendAll sends the datagrams of one message (its fragments, or the
// message itself) and counts the fragments.
func (sa *IKESA) sendAll(pkts [][]byte, to netip.AddrPort, natt bool) {
	for _, p := range pkts {
		if len(p) > message.HeaderLen && message.PayloadType(p[16]) == message.PayloadSKF {
			sa.ep.frag.stats.sent.Add(1)
		}
		sa.ep.send(p, to, natt)
	}
}

// Fragmentation reports whether IKE fragmentation (RFC 7383) was
// negotiated on this IKE SA: both ends announced it in IKE_SA_INIT.
func (sa *IKESA) Fragmentation() bool {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return sa.frag.on
}
