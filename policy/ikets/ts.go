// Package ikets checks IKEv2 traffic selectors against the SPD: the
// responder's narrowing (RFC 7296 section 2.9), TS_UNACCEPTABLE, and the
// rekey rule for CHILD_SAs whose selectors a newer rule now cuts into.
//
// SPD rules are written from this host's outbound view: a rule's source is
// the local side and its destination the remote side. As responder, the local
// side is TSr and the remote side TSi.
package ikets

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/espy-dpi/espy/policy"
)

// Type is a traffic selector type (RFC 7296 section 3.13.1).
type Type uint8

// Traffic selector types.
const (
	IPv4AddrRange Type = 7 // TS_IPV4_ADDR_RANGE
	IPv6AddrRange Type = 8 // TS_IPV6_ADDR_RANGE
)

// TS is one IKEv2 traffic selector. Protocol 0 is any. For ICMP and ICMPv6
// the ports hold type<<8|code, as RFC 7296 section 3.13.1 specifies.
type TS struct {
	Type       Type
	Protocol   uint8
	StartPort  uint16
	EndPort    uint16
	Start, End netip.Addr
}

// Selectors is one side's traffic selector list with the optional security
// label (TS_SECLABEL, RFC 9478) that applies to all of it.
type Selectors struct {
	TS    []TS
	Label string
}

// Sentinel errors.
var (
	// ErrUnacceptable is TS_UNACCEPTABLE: no part of the proposal may be
	// protected under the SPD.
	ErrUnacceptable = errors.New("ikets: TS_UNACCEPTABLE")
	// ErrBadTS marks a malformed traffic selector.
	ErrBadTS = errors.New("ikets: malformed traffic selector")
)

// Validate checks a selector for internal consistency.
func (t TS) Validate() error {
	want4 := t.Type == IPv4AddrRange
	switch {
	case t.Type != IPv4AddrRange && t.Type != IPv6AddrRange:
		return fmt.Errorf("%w: type %d", ErrBadTS, t.Type)
	case !t.Start.IsValid() || !t.End.IsValid():
		return fmt.Errorf("%w: missing address", ErrBadTS)
	case t.Start.Is4() != want4 || t.End.Is4() != want4:
		return fmt.Errorf("%w: address family does not match type %d", ErrBadTS, t.Type)
	case t.End.Less(t.Start):
		return fmt.Errorf("%w: address range %s-%s is empty", ErrBadTS, t.Start, t.End)
	case t.EndPort < t.StartPort:
		return fmt.Errorf("%w: port range %d-%d is empty", ErrBadTS, t.StartPort, t.EndPort)
	}
	return nil
}

// String formats t for logs.
func (t TS) String() string {
	return fmt.Sprintf("%s-%s proto %d ports %d-%d", t.Start, t.End, t.Protocol, t.StartPort, t.EndPort)
}

// pairBox returns the SPD box of local selector l and remote selector r, and
// false when they cannot meet (different families or protocols).
func pairBox(local, remote TS, labelID uint32, labelled bool) (policy.Box, bool) {
	if local.Type != remote.Type {
		return policy.Box{}, false
	}
	proto := policy.Span(0, 255)
	switch {
	case local.Protocol != 0 && remote.Protocol != 0 && local.Protocol != remote.Protocol:
		return policy.Box{}, false
	case local.Protocol != 0:
		proto = policy.Span(uint64(local.Protocol), uint64(local.Protocol))
	case remote.Protocol != 0:
		proto = policy.Span(uint64(remote.Protocol), uint64(remote.Protocol))
	}
	b := policy.FullBox()
	fam := uint64(4)
	if local.Type == IPv6AddrRange {
		fam = 6
	}
	b[policy.DimFamily] = policy.Span(fam, fam)
	b[policy.DimSrc] = policy.Interval{Lo: policy.AddrU128(local.Start), Hi: policy.AddrU128(local.End)}
	b[policy.DimDst] = policy.Interval{Lo: policy.AddrU128(remote.Start), Hi: policy.AddrU128(remote.End)}
	b[policy.DimProto] = proto
	b[policy.DimSPort] = policy.Span(uint64(local.StartPort), uint64(local.EndPort))
	b[policy.DimDPort] = policy.Span(uint64(remote.StartPort), uint64(remote.EndPort))
	if p := proto.Lo.Lo; proto.Lo == proto.Hi && (p == policy.ProtoICMP || p == policy.ProtoICMPv6) {
		// ICMP: both selectors carry type<<8|code in their ports; the SPD
		// keeps it in the source-port dimension with destination port 0.
		tc, ok := b[policy.DimSPort].Intersect(b[policy.DimDPort])
		if !ok {
			return policy.Box{}, false
		}
		b[policy.DimSPort] = tc
		b[policy.DimDPort] = policy.Span(0, 0)
	}
	if labelled {
		b[policy.DimLabel] = policy.Span(uint64(labelID), uint64(labelID))
	} else {
		b[policy.DimLabel] = policy.Span(0, 0)
	}
	return b, true
}

// boxTS converts a single-family box back into local and remote selectors,
// never covering more than b. A protocol range that is neither one protocol
// nor all of them is narrowed to prefer, or to its first protocol. A box with
// every protocol but restricted ports has no selector form unless prefer
// names a protocol; ok is false then.
func boxTS(b policy.Box, prefer uint8) (local, remote TS, ok bool) {
	fam := uint8(b[policy.DimFamily].Lo.Lo)
	typ := IPv4AddrRange
	if fam == 6 {
		typ = IPv6AddrRange
	}
	proto := uint8(0)
	fullPorts := b[policy.DimSPort] == policy.Span(0, 65535) && b[policy.DimDPort] == policy.Span(0, 65535)
	if pr := b[policy.DimProto]; pr == policy.Span(0, 255) && !fullPorts {
		if prefer == 0 {
			return local, remote, false
		}
		proto = prefer
	} else if pr != policy.Span(0, 255) {
		proto = uint8(pr.Lo.Lo)
		if pr.Contains(policy.U64(uint64(prefer))) && prefer != 0 {
			proto = prefer
		}
	}
	local = TS{Type: typ, Protocol: proto,
		StartPort: uint16(b[policy.DimSPort].Lo.Lo), EndPort: uint16(b[policy.DimSPort].Hi.Lo),
		Start: policy.U128Addr(fam, b[policy.DimSrc].Lo), End: policy.U128Addr(fam, b[policy.DimSrc].Hi)}
	remote = TS{Type: typ, Protocol: proto,
		StartPort: uint16(b[policy.DimDPort].Lo.Lo), EndPort: uint16(b[policy.DimDPort].Hi.Lo),
		Start: policy.U128Addr(fam, b[policy.DimDst].Lo), End: policy.U128Addr(fam, b[policy.DimDst].Hi)}
	if proto == policy.ProtoICMP || proto == policy.ProtoICMPv6 {
		remote.StartPort, remote.EndPort = local.StartPort, local.EndPort
	}
	return local, remote, true
}
