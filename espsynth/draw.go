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
// sessions are a few packets long, a few carry most of the traffic.
func DrawFlows(r *rand.Rand, numFlows, packets int) ([]Flow, error) {
	if numFlows < 1 {
		return nil, fmt.Errorf("espsynth: need at least one flow, got %d", numFlows)
	}
	if packets < numFlows {
		return nil, fmt.Errorf("espsynth: %d packets cannot fill %d flows", packets, numFlows)
	}
	flows := make([]Flow, (numFlows+1)/2)
	for i := range flows {
		flows[i] = drawFlow(r)
		flows[i].Packets = flows[i].sas()
	}
	if numFlows%2 == 1 {
		flows[len(flows)-1].OneWay = true
		flows[len(flows)-1].Packets = 1
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
		f.Inner = IPv4
		if r.IntN(10) < 4 {
			f.Inner = IPv6
		}
	}
	if r.IntN(2) == 0 {
		f.Cipher = []Cipher{CipherNULL, CipherNullAuthAESGMAC}[weighted(r, 8, 2)]
		// RFC 4303 forbids NULL encryption without integrity, but peers
		// misconfigured that way exist, so a few are drawn.
		f.Auth = Auth(weighted(r, 1, 4, 4, 1, 1))
	} else {
		f.Cipher = []Cipher{CipherAESCBC, CipherAESCTR, CipherAESGCM, CipherChaCha20Poly1305, Cipher3DES}[weighted(r, 6, 2, 5, 2, 1)]
		f.Auth = Auth(1 + weighted(r, 4, 4, 1, 1))
		if f.Cipher == CipherAESGCM {
			f.ICVLen = []int{16, 12, 8}[weighted(r, 7, 2, 1)]
		}
	}
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
