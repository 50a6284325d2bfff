package espsynth

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// weighted picks an index with probability proportional to its weight.
func weighted(r *rand.Rand, w ...int) int {
	t := 0
	for _, x := range w {
		t += x
	}
	n := r.IntN(t)
	for i, x := range w {
		if n < x {
			return i
		}
		n -= x
	}
	return len(w) - 1
}

// DrawFlows draws sessions that together make numFlows ESP flows (SAs) and
// packets ESP packets: about half with cleartext payloads (NULL or
// ENCR_NULL_AUTH_AES_GMAC) and half encrypted, over every combination of
// outer IP version, encapsulation, mode, transform, padding and inner
// traffic the package offers. Flow sizes are heavy-tailed: a fifth of the
// sessions are a few packets long, a few carry most of the traffic. Some
// sessions rekey, some share their address pair with a session of the other
// kind (tag "mixed-pair"), and some reuse an SPI value another address pair
// uses (tag "spi-shared"), since a classifier must key flows by addresses
// and SPI, not by SPI alone.
func DrawFlows(r *rand.Rand, numFlows, packets int) ([]Flow, error) {
	if numFlows < 1 {
		return nil, fmt.Errorf("espsynth: need at least one flow, got %d", numFlows)
	}
	if packets < numFlows {
		return nil, fmt.Errorf("espsynth: %d packets cannot fill %d flows", packets, numFlows)
	}
	var flows []Flow
	taken := map[flowKey]bool{}
	for need := numFlows; need > 0; {
		f := drawFlow(r)
		f.OneWay = need == 1
		if r.IntN(20) == 0 && need >= 2*f.sas() {
			f.Rekeys = 1
			if need >= 3*f.sas() && r.IntN(2) == 0 {
				f.Rekeys = 2
			}
		}
		f.Initiator = randAddr(r, f.Outer)
		f.Responder = randAddr(r, f.Outer)
		if n := len(flows); n > 0 && r.IntN(25) == 0 {
			// Same address pair as the previous session, other verdict.
			prev := &flows[n-1]
			f.Outer, f.Initiator, f.Responder = prev.Outer, prev.Initiator, prev.Responder
			for f.Cipher.Cleartext() == prev.Cipher.Cleartext() {
				f.Cipher, f.Auth, f.ICVLen = drawTransform(r)
			}
			f.Tags = append(f.Tags, "mixed-pair")
			prev.Tags = append(prev.Tags, "mixed-pair")
		}
		for f.Responder == f.Initiator {
			f.Responder = randAddr(r, f.Outer)
		}
		for side := range f.sas() {
			src, dst := f.Initiator, f.Responder
			if side == 1 {
				src, dst = dst, src
			}
			for f.SPI[side] == 0 || taken[flowKey{src, dst, f.SPI[side]}] {
				f.SPI[side] = 256 + r.Uint32N(1<<32-256)
			}
			taken[flowKey{src, dst, f.SPI[side]}] = true
		}
		if n := len(flows); n > 0 && r.IntN(25) == 0 {
			// The SPI value of an earlier flow between other addresses.
			other := &flows[r.IntN(n)]
			k := flowKey{f.Initiator, f.Responder, other.SPI[0]}
			if (other.Initiator != f.Initiator || other.Responder != f.Responder) && !taken[k] {
				delete(taken, flowKey{f.Initiator, f.Responder, f.SPI[0]})
				f.SPI[0], taken[k] = other.SPI[0], true
				f.Tags = append(f.Tags, "spi-shared")
				other.Tags = append(other.Tags, "spi-shared")
			}
		}
		f.Packets = f.Flows()
		need -= f.Flows()
		flows = append(flows, f)
	}
	left := packets
	for _, f := range flows {
		left -= f.Packets
	}
	// Short sessions first, then the rest by log-normal weights.
	weights := make([]float64, len(flows))
	total := 0.0
	for i := range flows {
		if r.IntN(5) == 0 {
			n := min(r.IntN(5), left)
			flows[i].Packets += n
			left -= n
			continue
		}
		weights[i] = math.Exp(1.5 * r.NormFloat64())
		total += weights[i]
	}
	if total == 0 {
		weights[0], total = 1, 1
	}
	spread, big := left, 0
	for i, w := range weights {
		n := int(float64(spread) * w / total)
		flows[i].Packets += n
		left -= n
		if w > weights[big] {
			big = i
		}
	}
	flows[big].Packets += left // rounding leftovers
	return flows, nil
}

// drawFlow draws one session's parameters.
func drawFlow(r *rand.Rand) Flow {
	var f Flow
	f.Outer = IPv4
	if r.IntN(10) < 4 {
		f.Outer = IPv6
	}
	if r.IntN(10) < 4 {
		f.Encap = EncapUDP
		f.NAT = r.IntN(2) == 0
	}
	if r.IntN(2) == 0 {
		f.Mode = Tunnel
		f.Inner = []IPVersion{IPv4, IPv6, Dual}[weighted(r, 12, 7, 1)]
	}
	f.Cipher, f.Auth, f.ICVLen = drawTransform(r)
	f.Padding = Padding(weighted(r, 7, 2, 1))
	if f.Padding == PaddingTFC {
		if f.Mode != Tunnel {
			f.Padding = PaddingExtra
		} else {
			f.Dummy = r.IntN(2) == 0
		}
	}
	f.Traffic = Traffic(r.IntN(int(numTraffic)))
	return f
}

// drawTransform draws a cipher, an integrity algorithm and (for AES-GCM) an
// ICV length: cleartext and encrypted transforms equally often.
func drawTransform(r *rand.Rand) (c Cipher, a Auth, icv int) {
	if r.IntN(2) == 0 {
		c = []Cipher{CipherNULL, CipherNullAuthAESGMAC}[weighted(r, 8, 2)]
		// RFC 4303 forbids NULL encryption without integrity, but peers
		// misconfigured that way exist, so a few are drawn.
		return c, Auth(weighted(r, 1, 4, 4, 1, 1)), 0
	}
	c = []Cipher{CipherAESCBC, CipherAESCTR, CipherAESGCM, CipherChaCha20Poly1305, Cipher3DES}[weighted(r, 6, 2, 5, 2, 1)]
	a = Auth(1 + weighted(r, 4, 4, 1, 1))
	if c == CipherAESGCM {
		icv = []int{16, 12, 8}[weighted(r, 7, 2, 1)]
	}
	return c, a, icv
}
