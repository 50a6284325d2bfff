package xfrm

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"

	"github.com/espy-dpi/espy/ike/message"
)

// ErrSelectors is returned for traffic selectors that need more kernel
// selectors than maxSelectors (address or port ranges that split into
// many prefixes), or that no kernel selector can express.
var ErrSelectors = errors.New("xfrm: traffic selectors not expressible")

// maxSelectors bounds the kernel selectors of one Child SA direction.
const maxSelectors = 64

// rangePrefixes splits the address range [lo, hi] into the fewest
// prefixes, at most limit of them.
func rangePrefixes(lo, hi netip.Addr, limit int) ([]netip.Prefix, error) {
	if lo.BitLen() != hi.BitLen() || hi.Less(lo) {
		return nil, fmt.Errorf("%w: address range %v-%v", ErrSelectors, lo, hi)
	}
	ps, ok := message.RangePrefixes(lo, hi, limit)
	if !ok {
		return nil, fmt.Errorf("%w: address range %v-%v needs more than %d prefixes", ErrSelectors, lo, hi, limit)
	}
	return ps, nil
}

// portMasks splits the port range [lo, hi] into port/mask pairs.
func portMasks(lo, hi uint16, limit int) ([]Port, error) {
	if hi < lo {
		return nil, fmt.Errorf("%w: port range %d-%d", ErrSelectors, lo, hi)
	}
	if lo == 0 && hi == 0xffff {
		return []Port{{}}, nil
	}
	var ps []Port
	for l := uint32(lo); l <= uint32(hi); {
		// The largest aligned block at l within the range.
		size := uint32(1) << min(bits.TrailingZeros32(l|1<<16), 16)
		for l+size-1 > uint32(hi) {
			size >>= 1
		}
		if len(ps) == limit {
			return nil, fmt.Errorf("%w: port range %d-%d needs more than %d masks", ErrSelectors, lo, hi, limit)
		}
		ps = append(ps, Port{Port: uint16(l), Mask: ^uint16(size - 1)})
		l += size
	}
	return ps, nil
}

// selectorPairs returns the kernel selectors of the traffic from local
// to remote selectors (outbound view): every pair of one local and one
// remote selector of the same family and compatible protocols.
func selectorPairs(local, remote []message.Selector) ([]Selector, error) {
	var out []Selector
	for i := range local {
		for j := range remote {
			l, r := &local[i], &remote[j]
			if !isAddrRange(l) || !isAddrRange(r) || l.TSType != r.TSType {
				continue
			}
			proto := l.IPProto
			if proto == 0 {
				proto = r.IPProto
			} else if r.IPProto != 0 && r.IPProto != proto {
				continue
			}
			if (proto == 1 || proto == 58) && (!fullPorts(l) || !fullPorts(r)) {
				// ICMP type/code selectors travel in the ports of a
				// TS but the kernel keeps them elsewhere.
				return nil, fmt.Errorf("%w: ICMP type/code selectors", ErrSelectors)
			}
			la, err := rangePrefixes(l.StartAddr, l.EndAddr, maxSelectors)
			if err != nil {
				return nil, err
			}
			ra, err := rangePrefixes(r.StartAddr, r.EndAddr, maxSelectors)
			if err != nil {
				return nil, err
			}
			lp, err := portMasks(l.StartPort, l.EndPort, maxSelectors)
			if err != nil {
				return nil, err
			}
			rp, err := portMasks(r.StartPort, r.EndPort, maxSelectors)
			if err != nil {
				return nil, err
			}
			if len(out)+len(la)*len(ra)*len(lp)*len(rp) > maxSelectors {
				return nil, fmt.Errorf("%w: more than %d kernel selectors", ErrSelectors, maxSelectors)
			}
			for _, sa := range la {
				for _, da := range ra {
					for _, sp := range lp {
						for _, dp := range rp {
							out = append(out, Selector{Src: sa, Dst: da, Proto: proto, SrcPort: sp, DstPort: dp})
						}
					}
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no pair of local and remote selectors of one family", ErrSelectors)
	}
	return out, nil
}

func isAddrRange(s *message.Selector) bool {
	return s.TSType == message.TSIPv4AddrRange || s.TSType == message.TSIPv6AddrRange
}

func fullPorts(s *message.Selector) bool { return s.StartPort == 0 && s.EndPort == 0xffff }

// reverse returns s with source and destination swapped (inbound view).
func (s Selector) reverse() Selector {
	s.Src, s.Dst = s.Dst, s.Src
	s.SrcPort, s.DstPort = s.DstPort, s.SrcPort
	return s
}

// String returns s as "src[port] > dst[port] proto N".
func (s Selector) String() string {
	port := func(p Port) string {
		if p.Mask == 0 {
			return ""
		}
		if p.Mask == 0xffff {
			return fmt.Sprintf("[%d]", p.Port)
		}
		return fmt.Sprintf("[%d/%#x]", p.Port, p.Mask)
	}
	return fmt.Sprintf("%v%s > %v%s proto %d", s.Src, port(s.SrcPort), s.Dst, port(s.DstPort), s.Proto)
}
