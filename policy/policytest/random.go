// Package policytest generates random policies and packets for property
// tests of the SPD classifiers: small address universes and few port ranges,
// so that rules overlap, nest and shadow each other often.
package policytest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/espy-dpi/espy/policy"
)

var (
	v4Base = [2]netip.Addr{netip.MustParseAddr("192.0.2.0"), netip.MustParseAddr("198.51.100.0")}
	v6Base = netip.MustParseAddr("2001:db8::")
	ports  = []policy.Interval{policy.Span(0, 65535), policy.Span(80, 80), policy.Span(443, 443),
		policy.Span(0, 1023), policy.Span(1024, 65535), policy.Span(500, 4500), policy.Span(4500, 4500)}
	protos = []int{-1, policy.ProtoTCP, policy.ProtoUDP, policy.ProtoICMP, policy.ProtoESP}
)

// Rules returns n random rules in precedence order (precedence 10*i),
// mixing IPv4 and IPv6 (when v6 is set), prefixes and ranges, protocols,
// ports, ICMP types, labels 1..2 and every action.
func Rules(rng *rand.Rand, n int, v6 bool) []policy.Rule {
	rules := make([]policy.Rule, n)
	for i := range rules {
		b := policy.FullBox()
		fam := uint8(4)
		if v6 && rng.IntN(3) == 0 {
			fam = 6
		}
		if rng.IntN(12) != 0 { // a few rules stay family-agnostic
			b[policy.DimFamily] = policy.Span(uint64(fam), uint64(fam))
			b[policy.DimSrc] = addrSel(rng, fam)
			b[policy.DimDst] = addrSel(rng, fam)
		}
		proto := protos[rng.IntN(len(protos))]
		if proto >= 0 {
			if proto == policy.ProtoICMP && fam == 6 {
				proto = policy.ProtoICMPv6
			}
			b[policy.DimProto] = policy.Span(uint64(proto), uint64(proto))
		}
		switch proto {
		case policy.ProtoTCP, policy.ProtoUDP:
			b[policy.DimSPort] = ports[rng.IntN(len(ports))]
			b[policy.DimDPort] = ports[rng.IntN(len(ports))]
		case policy.ProtoICMP, policy.ProtoICMPv6:
			t := uint64(rng.IntN(4) + 8)
			iv, _ := policy.ICMPRange(policy.Span(t, t), policy.Span(0, 255))
			b[policy.DimSPort] = iv
			b[policy.DimDPort] = policy.Span(0, 0)
		}
		if rng.IntN(8) == 0 {
			l := uint64(rng.IntN(2) + 1)
			b[policy.DimLabel] = policy.Span(l, l)
		}
		a := policy.Action(rng.IntN(6) + 1)
		r := policy.Rule{Name: fmt.Sprintf("rule%d", i), Precedence: 10 * i, Box: b, Action: a}
		if a == policy.ActionProtect {
			r.SA = fmt.Sprintf("sa%d", rng.IntN(3))
		}
		rules[i] = r
	}
	return rules
}

// V4Rules returns n random rules like Rules without IPv6, labels or
// family-agnostic rules: every rule is IPv4-only and unlabelled, the form
// the classifier's compact items and IPv4 lookup loop serve.
func V4Rules(rng *rand.Rand, n int) []policy.Rule {
	rules := Rules(rng, n, false)
	for i := range rules {
		b := &rules[i].Box
		if b[policy.DimFamily] != policy.Span(4, 4) {
			b[policy.DimFamily] = policy.Span(4, 4)
			b[policy.DimSrc] = addrSel(rng, 4)
			b[policy.DimDst] = addrSel(rng, 4)
		}
		b[policy.DimLabel] = policy.FullBox()[policy.DimLabel]
	}
	return rules
}

// addrSel returns a random prefix or range inside a small universe.
func addrSel(rng *rand.Rand, fam uint8) policy.Interval {
	var base netip.Addr
	if fam == 4 {
		base = v4Base[rng.IntN(2)]
	} else {
		base = v6Base
	}
	if rng.IntN(8) == 0 {
		full := 32
		if fam == 6 {
			full = 128
		}
		return policy.PrefixInterval(netip.PrefixFrom(base, full-8))
	}
	lo := policy.AddrU128(base)
	if rng.IntN(4) == 0 { // a range
		a, b := uint64(rng.IntN(256)), uint64(rng.IntN(256))
		if a > b {
			a, b = b, a
		}
		return policy.Interval{Lo: add(lo, a), Hi: add(lo, b)}
	}
	bits := 24 + rng.IntN(9)
	host := uint64(rng.IntN(256))
	size := uint64(1) << (32 - bits)
	host -= host % size
	return policy.Interval{Lo: add(lo, host), Hi: add(lo, host+size-1)}
}

func add(a policy.U128, n uint64) policy.U128 {
	for ; n > 0; n-- {
		a = a.Inc()
	}
	return a
}

// Packets returns n packets: half drawn inside random rules, half anywhere
// in the universe the rules live in.
func Packets(rng *rand.Rand, rules []policy.Rule, n int) []policy.Packet {
	out := make([]policy.Packet, 0, n)
	for len(out) < n {
		if len(rules) > 0 && rng.IntN(2) == 0 {
			if p, ok := policy.PointIn(&rules[rng.IntN(len(rules))].Box, rng, rng.IntN(4) == 0); ok {
				out = append(out, p)
			}
			continue
		}
		fam := uint8(4)
		if rng.IntN(3) == 0 {
			fam = 6
		}
		b := policy.FullBox()
		b[policy.DimFamily] = policy.Span(uint64(fam), uint64(fam))
		b[policy.DimSrc] = addrSel(rng, fam)
		b[policy.DimDst] = addrSel(rng, fam)
		b[policy.DimLabel] = policy.Span(0, 3)
		p, _ := policy.PointIn(&b, rng, false)
		p.Proto = []uint8{1, 6, 17, 50, 58, 132}[rng.IntN(6)]
		if rng.IntN(2) == 0 {
			p.SPort = []uint16{80, 443, 500, 4500, 1023, 1024, 0, 65535}[rng.IntN(8)]
			p.DPort = []uint16{80, 443, 500, 4500, 1023, 1024, 0, 65535}[rng.IntN(8)]
		}
		if p.Proto == 1 || p.Proto == 58 {
			p.DPort = 0
		}
		out = append(out, p)
	}
	return out
}
