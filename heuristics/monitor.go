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
// after one this high cannot be reordering. spiReuseConfirm restarted
// sequence numbers, increasing (and, on a null flow, parsing under its
// verdict), confirm a new SA on the same SPI: one spoofed packet cannot.
// Near the top of the 32-bit space a small number is an extended sequence
// number (RFC 4303 section 2.2.1) wrapping, not a restart.
const (
	spiReuseSeq     = 15
	spiReuseHigh    = 1 << 12
	spiReuseConfirm = 4
	esnWrapFrom     = 0xffff0000
)

// rememberEvery spaces the rekey-table writes of a null flow's packets: one
// in this many good packets, so a busy flow does not write a shared cache
// line per packet.
const rememberEvery = 16

// Monitor is the per-flow state that watches a decided flow. It is kept to
// 20 bytes because every decided flow has one: the fast window starts at a
// millisecond time modulo 2^32, compared by difference; the slow window is
// counted in fast windows; counters saturate.
type Monitor struct {
	highSeq   uint32
	fastStart uint32
	fastTotal uint16
	fastBad   uint16
	slowTotal uint16
	slowBad   uint16
	slowAge   uint8 // fast windows since the slow window began
	restart   uint8 // restarted sequence numbers seen: count<<4 | the last one
}

func sat16(x uint16) uint16 {
	if x == 0xffff {
		return x
	}
	return x + 1
}

// Watch checks packet p, seen at now (Unix nanoseconds), against the
// decided verdict v of its flow and reports whether the verdict must be
// withdrawn. Encrypted flows are only watched for SPI reuse; known SAs,
// whose owner tells espy when they change, are not watched.
func (e *Engine) Watch(m *Monitor, v *Verdict, p *packet.Packet, now int64) Withdrawal {
	if v.Source == SourceKnown {
		return KeepVerdict
	}
	seq := p.Seq()
	if seq <= spiReuseSeq && m.highSeq >= spiReuseHigh {
		if m.highSeq >= esnWrapFrom {
			m.highSeq = seq // the low half of an extended sequence number wrapped
		} else {
			return m.restarted(e, v, p, seq)
		}
	}
	if v.Class != Null {
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
	fast := uint32(r.FastWindow.Milliseconds())
	if elapsed := ms - m.fastStart; elapsed > fast {
		age := uint32(m.slowAge) + elapsed/max(fast, 1)
		m.fastStart, m.fastTotal, m.fastBad = ms, 0, 0
		if age >= uint32(r.SlowWindow/r.FastWindow) {
			m.slowTotal, m.slowBad, age = 0, 0, 0
		}
		m.slowAge = uint8(min(age, 0xff))
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

// restarted counts a restarted sequence number and reports SPIReuse once
// spiReuseConfirm of them came in increasing order. On a null flow only
// packets that parse under the verdict count; a new SA with other
// algorithms fails the parse and is withdrawn as garbage instead.
func (m *Monitor) restarted(e *Engine, v *Verdict, p *packet.Packet, seq uint32) Withdrawal {
	if v.Class == Null && !e.goodNull(v, p, 0) {
		return KeepVerdict
	}
	n, last := m.restart>>4, m.restart&0x0f
	switch {
	case n == 0 || uint8(seq) > last:
		n++
	case uint8(seq) < last:
		n = 1 // out of order: start the run again
	default:
		return KeepVerdict // a duplicate
	}
	if n >= spiReuseConfirm {
		*m = Monitor{}
		return SPIReuse
	}
	m.restart = n<<4 | uint8(seq)
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
	var t trailer
	if !readNull(v, p.ESP, &t) {
		return false
	}
	if e.rekey != nil && seq%rememberEvery == 1 {
		e.remember(v, p, &t)
	}
	return true
}

// Remember records the inner flow of p, a packet of a null flow with
// verdict v, so that a rekeyed SA carrying it is decided at once.
func (e *Engine) Remember(v *Verdict, p *packet.Packet) {
	if e.rekey == nil || v.Class != Null {
		return
	}
	var t trailer
	if readNull(v, p.ESP, &t) {
		e.remember(v, p, &t)
	}
}

// remember records the inner flow of p, parsed into t under v.
func (e *Engine) remember(v *Verdict, p *packet.Packet, t *trailer) {
	if tuple := innerTuple(t.nh, t.payload); tuple != 0 {
		e.rekey.remember(p, tuple, candidate{v.IVLen, v.ICVLen})
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
