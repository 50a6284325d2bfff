package heuristics

import (
	"github.com/espy-dpi/espy/packet"
)

// Withdrawal says why a decided verdict was withdrawn.
type Withdrawal uint8

// Reasons for withdrawing a verdict.
const (
	KeepVerdict Withdrawal = iota // nothing withdrawn
	Garbage                       // too many packets fail the null parse (RFC 5879 section 4.3)
	SPIReuse                      // the sequence numbers restarted: a new SA reuses the SPI
)

var withdrawalNames = [...]string{"none", "garbage", "spi-reuse"}

func (w Withdrawal) String() string {
	if int(w) < len(withdrawalNames) {
		return withdrawalNames[w]
	}
	return "invalid"
}

// spiReuseSeq and spiReuseHigh define a restart: a sequence number this low
// after one this high cannot be reordering.
const (
	spiReuseSeq  = 16
	spiReuseHigh = 1 << 12
)

// rememberEvery spaces the rekey-table writes of a null flow's packets: one
// in this many good packets, so a busy flow does not write a shared cache
// line per packet.
const rememberEvery = 16

// Monitor is the per-flow state that watches a decided flow. It is kept
// small (20 bytes) because every decided flow has one; window starts are
// milliseconds modulo 2^32, compared by difference, and the counters
// saturate.
type Monitor struct {
	highSeq   uint32
	fastStart uint32
	slowStart uint32
	fastTotal uint16
	fastBad   uint16
	slowTotal uint16
	slowBad   uint16
}

func sat16(x uint16) uint16 {
	if x == 0xffff {
		return x
	}
	return x + 1
}

// Watch checks packet p, seen at now (Unix nanoseconds), against the
// decided verdict v of its flow and reports whether the verdict must be
// withdrawn. Encrypted and unknown flows are only watched for SPI reuse.
func (e *Engine) Watch(m *Monitor, v *Verdict, p *packet.Packet, now int64) Withdrawal {
	seq := p.Seq()
	if seq <= spiReuseSeq && m.highSeq >= spiReuseHigh {
		*m = Monitor{}
		return SPIReuse
	}
	if v.Class != Null || v.Source == SourceKnown {
		m.highSeq = max(m.highSeq, seq)
		return KeepVerdict
	}
	r := &e.cfg.Revocation
	if m.highSeq > r.ReplayWindow && seq <= m.highSeq-r.ReplayWindow {
		return KeepVerdict // the receiver drops it as a replay: no evidence
	}
	good := e.goodNull(v, p, seq)
	if good {
		m.highSeq = max(m.highSeq, seq)
	}
	ms := uint32(now / 1e6)
	if int64(ms-m.fastStart) > r.FastWindow.Milliseconds() {
		m.fastStart, m.fastTotal, m.fastBad = ms, 0, 0
	}
	if int64(ms-m.slowStart) > r.SlowWindow.Milliseconds() {
		m.slowStart, m.slowTotal, m.slowBad = ms, 0, 0
	}
	m.fastTotal = sat16(m.fastTotal)
	m.slowTotal = sat16(m.slowTotal)
	if good {
		return KeepVerdict
	}
	m.fastBad = sat16(m.fastBad)
	m.slowBad = sat16(m.slowBad)
	minBad := uint16(min(r.MinBad, 0xffff))
	if m.fastBad >= minBad && float64(m.fastBad) >= r.FastRate*float64(m.fastTotal) {
		return Garbage
	}
	if m.slowBad >= minBad && float64(m.slowBad) > r.SlowRate*float64(m.slowTotal) {
		return Garbage
	}
	return KeepVerdict
}

// goodNull reports whether p parses under v's candidate, and feeds the
// rekey table with the inner flows of some good packets.
func (e *Engine) goodNull(v *Verdict, p *packet.Packet, seq uint32) bool {
	if p.Kind == packet.KindWESP {
		w := p.WESP
		if w.Encrypted() || w.TrlLen != v.ICVLen || w.IVLen() != int(v.IVLen) {
			return false
		}
	}
	c := candidate{v.IVLen, v.ICVLen}
	var t trailer
	if !readTrailer(p.ESP, c, &t) || !knownNextHeader(t.nh) || len(t.payload) < minInner(t.nh) {
		return false
	}
	if e.rekey != nil && seq%rememberEvery == 1 {
		if tuple := innerTuple(t.nh, t.payload); tuple != 0 {
			e.rekey.remember(p, tuple, c)
		}
	}
	return true
}

// Remember records the inner flow of p, a packet of a null flow with
// verdict v, so that a rekeyed SA carrying it is decided at once.
func (e *Engine) Remember(v *Verdict, p *packet.Packet) {
	if e.rekey == nil || v.Class != Null {
		return
	}
	c := candidate{v.IVLen, v.ICVLen}
	var t trailer
	if readTrailer(p.ESP, c, &t) && knownNextHeader(t.nh) && len(t.payload) >= minInner(t.nh) {
		if tuple := innerTuple(t.nh, t.payload); tuple != 0 {
			e.rekey.remember(p, tuple, c)
		}
	}
}

// innerTuple hashes the inner flow of payload the way checkInner does,
// without the checks.
func innerTuple(nh uint8, b []byte) uint32 {
	var h uint32
	switch nh {
	case 4:
		ihl := int(b[0]&0x0f) * 4
		if b[0]>>4 != 4 || ihl < 20 || len(b) < ihl {
			return 0
		}
		h, nh, b = hashBytes(b[12:20], uint32(b[9])), b[9], b[ihl:]
	case 41:
		if b[0]>>4 != 6 {
			return 0
		}
		h, nh, b = hashBytes(b[8:40], uint32(b[6])), b[6], b[40:]
	}
	switch nh {
	case 6, 17, 132:
		if len(b) < 4 {
			return 0
		}
		return hashBytes(b[:4], h^uint32(nh))
	case 1, 58:
		if len(b) < 2 {
			return 0
		}
		return hashBytes(b[:2], h^uint32(nh))
	}
	return 0
}
